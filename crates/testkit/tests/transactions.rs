#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Charges, history pages, spending, the reward write-back and points, on both backends.

mod common;

use common::{json_with, next_link, raw};
use examplebank_testkit::{Person, TestApp, TestResponse};
use http::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;

const TRANSACTIONS: &str = "/bank/v1/transactions";
const POINTS: &str = "/bank/v1/points";
const REDEEM: &str = "/bank/v1/points/redemptions";

/// A charge whose `amount` is the given raw JSON text (which may not be valid JSON).
async fn charge_raw_amount(app: &TestApp, token: &str, amount: &str) -> TestResponse {
    let body =
        format!(r#"{{"transactionName":"Corner Shop","category":"groceries","amount":{amount}}}"#);
    raw(
        app,
        Method::POST,
        TRANSACTIONS,
        Some(token),
        Some("application/json"),
        body,
        &[],
    )
    .await
}

async fn list(app: &TestApp, token: &str) -> Vec<Value> {
    let body = app
        .get(&format!("{TRANSACTIONS}?limit=100"), token)
        .await
        .expect(StatusCode::OK)
        .json();
    body.as_array().expect("array").clone()
}

/// Every transaction of the person, following the `next` links.
async fn all_transactions(app: &TestApp, token: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut path = Some(format!("{TRANSACTIONS}?limit=100"));
    while let Some(p) = path {
        let response = app.get(&p, token).await.expect(StatusCode::OK);
        path = next_link(&response);
        out.extend(response.json().as_array().unwrap().iter().cloned());
    }
    out
}

async fn spending(app: &TestApp, token: &str) -> Value {
    app.get(&format!("{TRANSACTIONS}/spending"), token)
        .await
        .expect(StatusCode::OK)
        .json()
}

async fn points(app: &TestApp, token: &str) -> Value {
    app.get(POINTS, token).await.expect(StatusCode::OK).json()
}

async fn redeem(app: &TestApp, person: &Person, points: i64, key: &str) -> TestResponse {
    json_with(
        app,
        Method::POST,
        REDEEM,
        person.token(),
        &json!({ "points": points }),
        &[("idempotency-key", key)],
    )
    .await
}

/// A person with `points` points earned through one rewarded fuel charge (3 per unit).
async fn person_with_points(app: &TestApp, units: i64) -> Person {
    let person = app.person().await;
    app.charge(
        person.token(),
        "Fuel Station",
        "fuel",
        json!(format!("{units}.00")),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    app.drain_rewards().await;
    assert_eq!(points(app, person.token()).await["balance"], units * 3);
    person
}

async fn a_charge_is_listed_and_then_rewarded(app: TestApp) {
    let person = app.person().await;
    app.charge(person.token(), "Corner Shop", "groceries", json!(12.34))
        .await
        .expect(StatusCode::NO_CONTENT);
    app.charge(person.token(), "Fuel Station", "FUEL", json!("7.5"))
        .await
        .expect(StatusCode::NO_CONTENT);

    let items = list(&app, person.token()).await;
    assert_eq!(items.len(), 2);
    let (fuel, shop) = (&items[0], &items[1]);
    assert_eq!(shop["transactionName"], "Corner Shop");
    assert_eq!(shop["amount"], "12.34");
    assert_eq!(shop["category"], "groceries");
    assert_eq!(shop["processed"], false);
    assert_eq!(shop["pointsEarned"], 0);
    assert_eq!(shop["userId"], person.id.as_str());
    assert!(shop["date"].as_str().unwrap().ends_with('Z'), "{shop}");
    assert_eq!(fuel["amount"], "7.50");
    assert_eq!(fuel["category"], "fuel");
    assert_eq!(points(&app, person.token()).await["balance"], 0);

    app.drain_rewards().await;
    let items = list(&app, person.token()).await;
    let (fuel, shop) = (&items[0], &items[1]);
    assert_eq!(shop["processed"], true);
    assert_eq!(shop["pointsEarned"], 24, "floor(1234 * 2 / 100)");
    assert_eq!(fuel["processed"], true);
    assert_eq!(fuel["pointsEarned"], 22, "floor(750 * 3 / 100)");

    let id = shop["transactionId"].as_str().unwrap();
    let one = app
        .get(&format!("{TRANSACTIONS}/{id}"), person.token())
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(&one, shop);
    let summary = points(&app, person.token()).await;
    assert_eq!(
        (
            summary["balance"].as_i64(),
            summary["earned"].as_i64(),
            summary["redeemed"].as_i64()
        ),
        (Some(46), Some(46), Some(0))
    );
    assert_eq!(
        spending(&app, person.token()).await,
        json!([{ "category": "fuel", "amount": "7.50" }, { "category": "groceries", "amount": "12.34" }])
    );
    // A second drain finds nothing and rewards nothing twice.
    app.drain_rewards().await;
    assert_eq!(points(&app, person.token()).await["balance"], 46);
}

async fn charges_need_registration_and_consent(app: TestApp) {
    let username = format!("u{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    app.signup(&username, "violet-tangent-harbour")
        .await
        .expect(StatusCode::CREATED);
    let tokens = app.login(&username, "violet-tangent-harbour").await;
    app.charge(&tokens.access, "Shop", "groceries", json!("1.00"))
        .await
        .expect_problem(StatusCode::NOT_FOUND);

    let without = app.person_with_consent(false).await;
    let problem = app
        .charge(without.token(), "Shop", "groceries", json!("1.00"))
        .await
        .expect_problem(StatusCode::CONFLICT);
    assert_eq!(problem["type"], "urn:examplebank:problem:no-consent");
    assert!(list(&app, without.token()).await.is_empty());
    let anonymous = app
        .call(
            Method::POST,
            TRANSACTIONS,
            None,
            Some(json!({ "transactionName": "x", "category": "other", "amount": "1" })),
        )
        .await;
    common::assert_unauthorized(anonymous, "charge without a token");
}

async fn c21_malformed_amounts_are_refused_and_nothing_stored(app: TestApp) {
    let person = app.person().await;
    let valid_json_but_refused = [
        "-1",
        "0",
        "0.00",
        "-0",
        r#""-5""#,
        r#""0""#,
        r#""NaN""#,
        r#""Infinity""#,
        r#""-Infinity""#,
        "1e309",
        "1E2",
        "1.5e1",
        r#""1e3""#,
        "12.345",
        r#""0.001""#,
        "50000.01",
        r#""50000.01""#,
        "1000000000",
        "99999999999999999999999",
        r#"" 12""#,
        r#""12 ""#,
        r#""1,000""#,
        r#""1 000""#,
        r#""1_000""#,
        r#""+5""#,
        r#"".5""#,
        r#""5.""#,
        r#""""#,
        r#""\u0031""#,
        r#""١٢""#,
        "null",
        "true",
        "false",
        "[]",
        "[12]",
        "{}",
        r#"{"value":"12.00"}"#,
    ];
    for amount in valid_json_but_refused {
        let response = charge_raw_amount(&app, person.token(), amount).await;
        let problem = response.expect_problem(StatusCode::UNPROCESSABLE_ENTITY);
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.starts_with("amount"), "{amount}: {problem}");
    }
    let not_json = [
        "NaN",
        "Infinity",
        "-Infinity",
        "+5",
        ".5",
        "01",
        "00012.30",
        "0x10",
        "12,34",
        "'12'",
    ];
    for amount in not_json {
        charge_raw_amount(&app, person.token(), amount)
            .await
            .expect_problem(StatusCode::BAD_REQUEST);
    }
    // No charge was stored, none will be rewarded, nothing was spent.
    assert!(list(&app, person.token()).await.is_empty());
    assert_eq!(spending(&app, person.token()).await, json!([]));
    app.drain_rewards().await;
    assert_eq!(points(&app, person.token()).await["balance"], 0);
    // The same request with a good amount is accepted, so the refusals were about the amount.
    charge_raw_amount(&app, person.token(), "12.00")
        .await
        .expect(StatusCode::NO_CONTENT);
    assert_eq!(list(&app, person.token()).await.len(), 1);
}

async fn amounts_at_the_limits_are_accepted_exactly(app: TestApp) {
    let person = app.person().await;
    for (amount, shown) in [
        ("0.01", "0.01"),
        (r#""50000.00""#, "50000.00"),
        ("50000", "50000.00"),
        (r#""7.5""#, "7.50"),
        ("0.1", "0.10"),
    ] {
        let body =
            format!(r#"{{"transactionName":"Limits","category":"other","amount":{amount}}}"#);
        let response = raw(
            &app,
            Method::POST,
            TRANSACTIONS,
            Some(person.token()),
            Some("application/json"),
            body,
            &[],
        )
        .await;
        response.expect(StatusCode::NO_CONTENT);
        let newest = list(&app, person.token()).await.remove(0);
        assert_eq!(newest["amount"], shown, "{amount}");
    }
}

async fn unknown_categories_and_bad_names_are_refused(app: TestApp) {
    let person = app.person().await;
    for category in ["casino", "", "groceries ", "food", "groceries\u{0000}"] {
        app.charge(person.token(), "Shop", category, json!("1.00"))
            .await
            .expect_problem(StatusCode::UNPROCESSABLE_ENTITY);
    }
    let long = "m".repeat(101);
    for name in ["", "   ", long.as_str(), "bell\u{0007}shop", "new\nline"] {
        app.charge(person.token(), name, "other", json!("1.00"))
            .await
            .expect_problem(StatusCode::UNPROCESSABLE_ENTITY);
    }
    for body in [
        json!({ "transactionName": "Shop", "category": "other" }),
        json!({ "transactionName": "Shop", "category": "other", "amount": "1.00", "userId": "someone" }),
        json!({ "transactionName": 5, "category": "other", "amount": "1.00" }),
        json!([]),
    ] {
        app.call(Method::POST, TRANSACTIONS, Some(person.token()), Some(body))
            .await
            .expect_problem(StatusCode::BAD_REQUEST);
    }
    assert!(list(&app, person.token()).await.is_empty());
    // The boundary name length is fine.
    app.charge(person.token(), &"m".repeat(100), "other", json!("1.00"))
        .await
        .expect(StatusCode::NO_CONTENT);
}

async fn c22_page_sizes_out_of_range_are_refused(app: TestApp) {
    let person = app.person().await;
    app.charge(person.token(), "Shop", "other", json!("1.00"))
        .await
        .expect(StatusCode::NO_CONTENT);
    for limit in [
        "2147483647",
        "0",
        "-1",
        "abc",
        "101",
        "",
        "1.5",
        "%201",
        "99999999999999999999",
    ] {
        let response = app
            .get(&format!("{TRANSACTIONS}?limit={limit}"), person.token())
            .await;
        let problem = response.expect_problem(StatusCode::BAD_REQUEST);
        assert!(
            problem["detail"].as_str().unwrap().contains("limit"),
            "{limit}: {problem}"
        );
    }
    for limit in ["100", "1"] {
        let body = app
            .get(&format!("{TRANSACTIONS}?limit={limit}"), person.token())
            .await
            .expect(StatusCode::OK)
            .json();
        assert_eq!(body.as_array().unwrap().len(), 1, "limit {limit}");
    }
}

async fn pagination_returns_every_charge_once_newest_first(app: TestApp) {
    let person = app.person().await;
    let other = app.person().await;
    for i in 0..7 {
        app.charge(
            person.token(),
            &format!("shop-{i}"),
            "other",
            json!(format!("{}.00", i + 1)),
        )
        .await
        .expect(StatusCode::NO_CONTENT);
        app.charge(other.token(), &format!("other-{i}"), "other", json!("1.00"))
            .await
            .expect(StatusCode::NO_CONTENT);
    }
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut path = Some(format!("{TRANSACTIONS}?limit=3"));
    while let Some(p) = path {
        assert!(sizes.len() < 10, "the pages do not end");
        let response = app.get(&p, person.token()).await.expect(StatusCode::OK);
        path = next_link(&response);
        let page = response.json();
        let page = page.as_array().unwrap();
        sizes.push(page.len());
        seen.extend(
            page.iter()
                .map(|t| t["transactionName"].as_str().unwrap().to_owned()),
        );
    }
    let expected: Vec<String> = (0..7).rev().map(|i| format!("shop-{i}")).collect();
    assert_eq!(seen, expected);
    assert_eq!(sizes, [3, 3, 1]);

    // With a page size that divides the count, the walk still ends after everything.
    let mut seen = 0;
    let mut path = Some(format!("{TRANSACTIONS}?limit=7"));
    let mut pages = 0;
    while let Some(p) = path {
        pages += 1;
        assert!(pages < 5, "the pages do not end");
        let response = app.get(&p, person.token()).await.expect(StatusCode::OK);
        path = next_link(&response);
        seen += response.json().as_array().unwrap().len();
    }
    assert_eq!(seen, 7);
}

async fn bad_cursors_are_refused(app: TestApp) {
    let person = app.person().await;
    let encode = |text: &str| crypto::b64::encode(text.as_bytes());
    let long = "A".repeat(100);
    for cursor in [
        "!!!".to_owned(),
        "abc".to_owned(),
        encode("v1.-1"),
        encode("v1.0"),
        encode("v2.5"),
        encode("v1.5x"),
        encode("v1.99999999999999999999"),
        long,
        "djEuNQ==".to_owned(),
    ] {
        let response = app
            .get(&format!("{TRANSACTIONS}?cursor={cursor}"), person.token())
            .await;
        let problem = response.expect_problem(StatusCode::BAD_REQUEST);
        assert!(
            problem["detail"].as_str().unwrap().contains("cursor"),
            "{cursor}: {problem}"
        );
    }
    // A well-formed cursor is accepted.
    app.get(
        &format!("{TRANSACTIONS}?cursor={}", encode("v1.5")),
        person.token(),
    )
    .await
    .expect(StatusCode::OK);
}

async fn c17_other_peoples_transactions_are_not_found(app: TestApp) {
    let alice = app.person().await;
    let bob = app.person().await;
    let merchant = "Alice-Secret-Clinic-7731";
    app.charge(alice.token(), merchant, "health", json!("42.00"))
        .await
        .expect(StatusCode::NO_CONTENT);
    let id = list(&app, alice.token()).await[0]["transactionId"]
        .as_str()
        .unwrap()
        .to_owned();

    let by_id = app.get(&format!("{TRANSACTIONS}/{id}"), bob.token()).await;
    let by_user = app
        .get(&format!("{TRANSACTIONS}?userId={}", alice.id), bob.token())
        .await;
    let unknown = app
        .get(
            &format!("{TRANSACTIONS}/{}", uuid::Uuid::now_v7()),
            bob.token(),
        )
        .await;
    for (case, response) in [("by id", by_id), ("by userId", by_user)] {
        let text = response.text();
        for secret in [
            merchant,
            id.as_str(),
            alice.id.as_str(),
            alice.username.as_str(),
            "42.00",
        ] {
            assert!(!text.contains(secret), "{case} leaks {secret}: {text}");
        }
        let problem = response.expect_problem(StatusCode::NOT_FOUND);
        assert_eq!(
            problem["type"], "urn:examplebank:problem:not-found",
            "{case}"
        );
    }
    // Someone else's transaction looks exactly like one that does not exist.
    let again = app.get(&format!("{TRANSACTIONS}/{id}"), bob.token()).await;
    assert_eq!(again.body, unknown.body);

    for path in [
        TRANSACTIONS.to_owned(),
        format!("{TRANSACTIONS}/spending"),
        POINTS.to_owned(),
    ] {
        let text = app
            .get(&path, bob.token())
            .await
            .expect(StatusCode::OK)
            .text();
        assert!(
            !text.contains(merchant) && !text.contains(&id),
            "{path}: {text}"
        );
    }
    // Bob naming himself is fine; Alice still sees her own.
    app.get(&format!("{TRANSACTIONS}?userId={}", bob.id), bob.token())
        .await
        .expect(StatusCode::OK);
    app.get(&format!("{TRANSACTIONS}/{id}"), alice.token())
        .await
        .expect(StatusCode::OK);
}

async fn c23_sums_and_points_are_exact(app: TestApp) {
    let person = app.person().await;
    for _ in 0..10 {
        app.charge(person.token(), "Cafe", "dining", json!(0.1))
            .await
            .expect(StatusCode::NO_CONTENT);
        app.charge(person.token(), "Cafe", "dining", json!("0.20"))
            .await
            .expect(StatusCode::NO_CONTENT);
    }
    assert_eq!(
        spending(&app, person.token()).await,
        json!([{ "category": "dining", "amount": "3.00" }])
    );
    app.drain_rewards().await;
    let items = all_transactions(&app, person.token()).await;
    assert_eq!(items.len(), 20);
    for item in &items {
        assert_eq!(item["processed"], true);
        assert_eq!(
            item["pointsEarned"], 0,
            "floor(10 or 20 * 1 / 100) = 0: {item}"
        );
    }
    assert_eq!(points(&app, person.token()).await["balance"], 0);

    for i in 0..100 {
        let amount = if i % 2 == 0 {
            json!(1.10)
        } else {
            json!("1.10")
        };
        app.charge(person.token(), "Grocer", "groceries", amount)
            .await
            .expect(StatusCode::NO_CONTENT);
    }
    assert_eq!(
        spending(&app, person.token()).await,
        json!([{ "category": "dining", "amount": "3.00" }, { "category": "groceries", "amount": "110.00" }])
    );
    app.drain_rewards().await;
    let items = all_transactions(&app, person.token()).await;
    assert_eq!(items.len(), 120);
    for item in items.iter().filter(|t| t["category"] == "groceries") {
        assert_eq!(item["pointsEarned"], 2, "floor(110 * 2 / 100) = 2: {item}");
    }
    let summary = points(&app, person.token()).await;
    assert_eq!(summary["balance"], 200);
    assert_eq!(summary["earned"], 200);
}

async fn an_idempotency_key_makes_a_charge_happen_once(app: TestApp) {
    let person = app.person().await;
    let body = json!({ "transactionName": "Shop", "category": "other", "amount": "9.99" });
    for _ in 0..2 {
        json_with(
            &app,
            Method::POST,
            TRANSACTIONS,
            person.token(),
            &body,
            &[("idempotency-key", "order-1")],
        )
        .await
        .expect(StatusCode::NO_CONTENT);
    }
    assert_eq!(list(&app, person.token()).await.len(), 1);

    let changed = json!({ "transactionName": "Shop", "category": "other", "amount": "10.00" });
    let problem = json_with(
        &app,
        Method::POST,
        TRANSACTIONS,
        person.token(),
        &changed,
        &[("idempotency-key", "order-1")],
    )
    .await
    .expect_problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key"),
        "{problem}"
    );
    assert_eq!(list(&app, person.token()).await.len(), 1);

    json_with(
        &app,
        Method::POST,
        TRANSACTIONS,
        person.token(),
        &body,
        &[("idempotency-key", "order-2")],
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    assert_eq!(list(&app, person.token()).await.len(), 2);
    // Keys belong to their person: another person's "order-1" is their own charge.
    let other = app.person().await;
    json_with(
        &app,
        Method::POST,
        TRANSACTIONS,
        other.token(),
        &changed,
        &[("idempotency-key", "order-1")],
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    assert_eq!(list(&app, other.token()).await.len(), 1);

    let too_long = "k".repeat(256);
    for key in ["", too_long.as_str(), "has space"] {
        json_with(
            &app,
            Method::POST,
            TRANSACTIONS,
            person.token(),
            &body,
            &[("idempotency-key", key)],
        )
        .await
        .expect_problem(StatusCode::BAD_REQUEST);
    }
    assert_eq!(list(&app, person.token()).await.len(), 2);
    app.drain_rewards().await;
    assert_eq!(
        points(&app, person.token()).await["balance"],
        18,
        "two charges of 9.99 earn 9 each"
    );
}

async fn concurrent_charges_with_one_key_store_one(app: TestApp) {
    let person = app.person().await;
    let app = Arc::new(app);
    let body = json!({ "transactionName": "Shop", "category": "other", "amount": "5.00" });
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (app, token, body) = (Arc::clone(&app), person.token().to_owned(), body.clone());
        tasks.push(tokio::spawn(async move {
            json_with(
                &app,
                Method::POST,
                TRANSACTIONS,
                &token,
                &body,
                &[("idempotency-key", "same-key")],
            )
            .await
        }));
    }
    for task in tasks {
        task.await.unwrap().expect(StatusCode::NO_CONTENT);
    }
    assert_eq!(list(&app, person.token()).await.len(), 1);
}

async fn the_reward_endpoint_is_for_the_rewards_service_only(app: TestApp) {
    let person = app.person().await;
    app.charge(person.token(), "One", "other", json!("10.00"))
        .await
        .expect(StatusCode::NO_CONTENT);
    app.charge(person.token(), "Two", "other", json!("10.00"))
        .await
        .expect(StatusCode::NO_CONTENT);
    let items = list(&app, person.token()).await;
    let (two, one) = (
        items[0]["transactionId"].as_str().unwrap().to_owned(),
        items[1]["transactionId"].as_str().unwrap().to_owned(),
    );
    let reward = |id: &str| format!("{TRANSACTIONS}/reward/{id}");
    let service = app.service_token().await;

    let forbidden = app
        .call(
            Method::PUT,
            &reward(&one),
            Some(person.token()),
            Some(json!({ "pointsEarned": 500 })),
        )
        .await;
    let challenge = forbidden
        .header("www-authenticate")
        .unwrap_or_default()
        .to_owned();
    assert!(challenge.contains("insufficient_scope"), "{challenge}");
    forbidden.expect_problem(StatusCode::FORBIDDEN);
    assert_eq!(points(&app, person.token()).await["balance"], 0);
    common::assert_unauthorized(
        app.call(
            Method::PUT,
            &reward(&one),
            None,
            Some(json!({ "pointsEarned": 5 })),
        )
        .await,
        "no token",
    );

    app.call(
        Method::PUT,
        &reward(&one),
        Some(&service),
        Some(json!({ "pointsEarned": 7 })),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let shown = app
        .get(&format!("{TRANSACTIONS}/{one}"), person.token())
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        (shown["processed"].as_bool(), shown["pointsEarned"].as_i64()),
        (Some(true), Some(7))
    );
    assert_eq!(points(&app, person.token()).await["balance"], 7);

    app.call(
        Method::PUT,
        &reward(&one),
        Some(&service),
        Some(json!({ "pointsEarned": 9 })),
    )
    .await
    .expect_problem(StatusCode::BAD_REQUEST);
    app.call(
        Method::PUT,
        &reward(&uuid::Uuid::now_v7().to_string()),
        Some(&service),
        Some(json!({ "pointsEarned": 1 })),
    )
    .await
    .expect_problem(StatusCode::NOT_FOUND);
    for bad in [
        json!({ "pointsEarned": -1 }),
        json!({ "pointsEarned": 1_000_000_001i64 }),
    ] {
        app.call(Method::PUT, &reward(&two), Some(&service), Some(bad))
            .await
            .expect_problem(StatusCode::UNPROCESSABLE_ENTITY);
    }
    app.call(
        Method::PUT,
        &reward(&two),
        Some(&service),
        Some(json!({ "pointsEarned": "5" })),
    )
    .await
    .expect_problem(StatusCode::BAD_REQUEST);
    assert_eq!(
        points(&app, person.token()).await["balance"],
        7,
        "refusals wrote nothing"
    );

    // The worker then rewards only the one left, by the rule (10.00 × 1).
    app.drain_rewards().await;
    assert_eq!(points(&app, person.token()).await["balance"], 17);
    // A service is not a person: it has no history of its own.
    app.get(TRANSACTIONS, &service)
        .await
        .expect_problem(StatusCode::FORBIDDEN);
}

async fn concurrent_reward_writes_count_once(app: TestApp) {
    let person = app.person().await;
    app.charge(person.token(), "Shop", "other", json!("10.00"))
        .await
        .expect(StatusCode::NO_CONTENT);
    let id = list(&app, person.token()).await[0]["transactionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let service = app.service_token().await;
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for points in 1..=5 {
        let (app, service, path) = (
            Arc::clone(&app),
            service.clone(),
            format!("{TRANSACTIONS}/reward/{id}"),
        );
        tasks.push(tokio::spawn(async move {
            let response = app
                .call(
                    Method::PUT,
                    &path,
                    Some(&service),
                    Some(json!({ "pointsEarned": points })),
                )
                .await;
            (points, response)
        }));
    }
    let mut written = Vec::new();
    for task in tasks {
        let (points, response) = task.await.unwrap();
        match response.status {
            StatusCode::NO_CONTENT => written.push(points),
            StatusCode::BAD_REQUEST => {
                response.expect_problem(StatusCode::BAD_REQUEST);
            }
            other => panic!("unexpected {other}: {}", response.text()),
        }
    }
    assert_eq!(written.len(), 1, "a transaction is rewarded once");
    let summary = points(&app, person.token()).await;
    assert_eq!(summary["balance"], written[0]);
    assert_eq!(summary["earned"], written[0]);
    app.drain_rewards().await;
    assert_eq!(points(&app, person.token()).await["balance"], written[0]);
}

async fn points_are_redeemed_once_per_key(app: TestApp) {
    let person = person_with_points(&app, 50).await; // 150 points
    let first = redeem(&app, &person, 100, "redeem-1")
        .await
        .expect(StatusCode::CREATED)
        .json();
    assert!(first["redemptionId"].is_string(), "{first}");
    assert_eq!(
        (first["points"].as_i64(), first["balance"].as_i64()),
        (Some(100), Some(50))
    );

    let replay = redeem(&app, &person, 100, "redeem-1")
        .await
        .expect(StatusCode::CREATED)
        .json();
    assert_eq!(replay, first, "the same key and body answer the same");
    let summary = points(&app, person.token()).await;
    assert_eq!(
        (
            summary["balance"].as_i64(),
            summary["redeemed"].as_i64(),
            summary["earned"].as_i64()
        ),
        (Some(50), Some(100), Some(150))
    );

    redeem(&app, &person, 10, "redeem-1")
        .await
        .expect_problem(StatusCode::UNPROCESSABLE_ENTITY);
    let short = redeem(&app, &person, 60, "redeem-2")
        .await
        .expect_problem(StatusCode::CONFLICT);
    assert_eq!(short["balance"], 50);
    let missing = app
        .call(
            Method::POST,
            REDEEM,
            Some(person.token()),
            Some(json!({ "points": 1 })),
        )
        .await;
    missing.expect_problem(StatusCode::BAD_REQUEST);
    for bad in [0, -5] {
        redeem(&app, &person, bad, &format!("bad-{bad}"))
            .await
            .expect_problem(StatusCode::UNPROCESSABLE_ENTITY);
    }
    assert_eq!(
        points(&app, person.token()).await["balance"],
        50,
        "refusals took nothing"
    );
    // A refused key may be used again once the request can succeed.
    let last = redeem(&app, &person, 50, "redeem-2")
        .await
        .expect(StatusCode::CREATED)
        .json();
    assert_eq!(last["balance"], 0);
    redeem(&app, &person, 1, "redeem-3")
        .await
        .expect_problem(StatusCode::CONFLICT);
    assert_eq!(points(&app, person.token()).await["balance"], 0);
}

async fn concurrent_redemptions_never_overdraw(app: TestApp) {
    let person = person_with_points(&app, 50).await; // 150 points
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (app, person) = (Arc::clone(&app), person.clone());
        tasks.push(tokio::spawn(async move {
            redeem(&app, &person, 90, &format!("key-{i}")).await
        }));
    }
    let mut created = 0;
    for task in tasks {
        let response = task.await.unwrap();
        match response.status {
            StatusCode::CREATED => {
                created += 1;
                assert_eq!(response.json()["balance"], 60);
            }
            StatusCode::CONFLICT => {
                response.expect_problem(StatusCode::CONFLICT);
            }
            other => panic!("unexpected {other}: {}", response.text()),
        }
    }
    assert_eq!(created, 1, "exactly one redemption of 60% fits");
    let summary = points(&app, person.token()).await;
    assert_eq!(
        (summary["balance"].as_i64(), summary["redeemed"].as_i64()),
        (Some(60), Some(90))
    );
}

async fn concurrent_redemptions_with_one_key_take_points_once(app: TestApp) {
    let person = person_with_points(&app, 50).await; // 150 points
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (app, person) = (Arc::clone(&app), person.clone());
        tasks.push(tokio::spawn(async move {
            redeem(&app, &person, 40, "one-key").await
        }));
    }
    let mut bodies = Vec::new();
    for task in tasks {
        bodies.push(task.await.unwrap().expect(StatusCode::CREATED).json());
    }
    for body in &bodies {
        assert_eq!(body, &bodies[0], "every answer is the first one");
    }
    assert_eq!(bodies[0]["balance"], 110);
    assert_eq!(points(&app, person.token()).await["balance"], 110);
}

/// `POST /bank/v1/transactions/rewards`: the rewards service's batch write-back in split mode.
async fn the_batch_reward_endpoint_writes_each_once_and_holds_back_restricted_people(app: TestApp) {
    const BATCH: &str = "/bank/v1/transactions/rewards";
    let person = app.person().await;
    let other = app.person().await;
    for (who, name, amount) in [
        (&person, "One", "10.00"),
        (&person, "Two", "20.00"),
        (&other, "Three", "5.00"),
    ] {
        app.charge(who.token(), name, "other", json!(amount))
            .await
            .expect(StatusCode::NO_CONTENT);
    }
    let id_of = |items: &[Value], i: usize| items[i]["transactionId"].as_str().unwrap().to_owned();
    let mine = list(&app, person.token()).await;
    let (two, one) = (id_of(&mine, 0), id_of(&mine, 1));
    let three = id_of(&list(&app, other.token()).await, 0);
    let missing = uuid::Uuid::now_v7().to_string();
    let service = app.service_token().await;
    let batch = |token: String, rewards: Value| {
        let app = &app;
        async move {
            app.call(
                Method::POST,
                BATCH,
                Some(&token),
                Some(json!({ "rewards": rewards })),
            )
            .await
        }
    };
    let item = |id: &str, points: i64| json!({ "transactionId": id, "pointsEarned": points });

    batch(person.token().to_owned(), json!([item(&one, 1)]))
        .await
        .expect_problem(StatusCode::FORBIDDEN);
    app.call(
        Method::PUT,
        "/bank/v1/users/self/restriction",
        Some(other.token()),
        None,
    )
    .await
    .expect(StatusCode::NO_CONTENT);

    let sorted = |value: &Value| {
        let mut ids: Vec<String> = value
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let answer = batch(
        service.clone(),
        json!([
            item(&one, 10),
            item(&two, 20),
            item(&three, 5),
            item(&missing, 1)
        ]),
    )
    .await
    .expect(StatusCode::OK)
    .json();
    let mut both = vec![one.clone(), two.clone()];
    both.sort();
    assert_eq!(sorted(&answer["rewarded"]), both, "{answer}");
    assert_eq!(
        sorted(&answer["notWritten"]),
        std::slice::from_ref(&missing),
        "{answer}"
    );
    assert_eq!(
        sorted(&answer["restricted"]),
        std::slice::from_ref(&three),
        "{answer}"
    );
    assert_eq!(points(&app, person.token()).await["balance"], 30);
    let held = app
        .get(&format!("{TRANSACTIONS}/{three}"), other.token())
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(held["processed"], false, "{held}");

    // A second delivery writes nothing twice.
    let again = batch(service.clone(), json!([item(&one, 99), item(&two, 99)]))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(sorted(&again["rewarded"]), Vec::<String>::new(), "{again}");
    assert_eq!(sorted(&again["notWritten"]), both, "{again}");
    assert_eq!(points(&app, person.token()).await["balance"], 30);

    // Bad batches are refused whole, and write nothing.
    let too_many: Vec<Value> = (0..101)
        .map(|_| item(&uuid::Uuid::now_v7().to_string(), 1))
        .collect();
    for bad in [
        json!([]),
        Value::Array(too_many),
        json!([item(&three, 1), item(&three, 2)]),
        json!([item("not-an-id", 1)]),
        json!([item(&three, -1)]),
        json!([item(&three, 1_000_000_001)]),
    ] {
        batch(service.clone(), bad)
            .await
            .expect_problem(StatusCode::UNPROCESSABLE_ENTITY);
    }
    assert_eq!(points(&app, other.token()).await["balance"], 0);
}

/// A worker that falls behind catches up in a few rounds: while its claims come back full it
/// claims twice as many each round (up to its most), and once a claim is not full it goes back
/// to its usual batch. Every transaction is rewarded once, at any claim size.
async fn a_backlog_is_drained_in_growing_claims_and_rewarded_once(app: TestApp) {
    let people = [app.person().await, app.person().await, app.person().await];
    charge_groceries(&app, &people.iter().collect::<Vec<_>>(), 350, "Shop").await;
    // The worker as the server runs it (claims of 32, up to 512).
    let worker = app.rewards_worker();
    let mut rounds = Vec::new();
    loop {
        let handled = worker.run_once().await.unwrap();
        rounds.push(handled);
        if handled == 0 {
            break;
        }
    }
    // 1,050 events: claims double while full, the largest (512) in one database transaction,
    // then the 58 left (not full: back to 32).
    assert_eq!(rounds, [32, 64, 128, 256, 512, 58, 0]);
    for person in &people {
        let summary = points(&app, person.token()).await;
        assert_eq!(
            summary["balance"],
            350 * 5,
            "2.50 x 2 points, 350 times, once each"
        );
        assert_eq!(summary["earned"], 350 * 5);
    }
    // Back at its usual batch: a new small backlog is claimed 32 at a time again.
    charge_groceries(&app, &[&people[0]], 40, "Again").await;
    assert_eq!(worker.run_once().await.unwrap(), 32);
    assert_eq!(worker.run_once().await.unwrap(), 8);
    assert_eq!(worker.run_once().await.unwrap(), 0);
    assert_eq!(points(&app, people[0].token()).await["balance"], 390 * 5);
}

examplebank_testkit::both_backends!(
    a_charge_is_listed_and_then_rewarded,
    charges_need_registration_and_consent,
    c21_malformed_amounts_are_refused_and_nothing_stored,
    amounts_at_the_limits_are_accepted_exactly,
    unknown_categories_and_bad_names_are_refused,
    c22_page_sizes_out_of_range_are_refused,
    pagination_returns_every_charge_once_newest_first,
    bad_cursors_are_refused,
    c17_other_peoples_transactions_are_not_found,
    c23_sums_and_points_are_exact,
    an_idempotency_key_makes_a_charge_happen_once,
    concurrent_charges_with_one_key_store_one,
    the_reward_endpoint_is_for_the_rewards_service_only,
    the_batch_reward_endpoint_writes_each_once_and_holds_back_restricted_people,
    concurrent_reward_writes_count_once,
    points_are_redeemed_once_per_key,
    concurrent_redemptions_never_overdraw,
    concurrent_redemptions_with_one_key_take_points_once,
    a_backlog_is_drained_in_growing_claims_and_rewarded_once,
);

/// Against a transactions service without the batch route (an older version during a rolling
/// upgrade) the rewards process writes one call per event: several at a time (not one after the
/// other), each written once, and all events completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_back_keeps_several_calls_in_flight_and_writes_each_once() {
    use axum::extract::{Path, State};
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Seen {
        in_flight: AtomicUsize,
        most: AtomicUsize,
        written: std::sync::Mutex<Vec<(String, i64)>>,
    }

    let (app, person) = charged_app(16).await;

    // A stand-in transactions service (and token endpoint) that holds each write for 50 ms.
    let seen = Arc::new(Seen::default());
    let service = axum::Router::new()
        .route(
            "/bank/v1/transactions/reward/{id}",
            axum::routing::put(
                |State(seen): State<Arc<Seen>>,
                 Path(id): Path<String>,
                 axum::Json(body): axum::Json<Value>| async move {
                    let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    seen.most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    let points = body["pointsEarned"].as_i64().unwrap_or(-1);
                    seen.written.lock().unwrap().push((id, points));
                    seen.in_flight.fetch_sub(1, Ordering::SeqCst);
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state(Arc::clone(&seen));
    let worker = remote_worker(&app, service).await;
    assert_eq!(
        worker.run_once().await.unwrap(),
        16,
        "one batch of 16 events"
    );
    assert_eq!(worker.run_once().await.unwrap(), 0, "every event completed");

    let most = seen.most.load(Ordering::SeqCst);
    assert!((2..=8).contains(&most), "{most} writes in flight at most");
    let mut written = seen.written.lock().unwrap().clone();
    written.sort();
    let mut expected: Vec<(String, i64)> = list(&app, person.token())
        .await
        .iter()
        .map(|t| (t["transactionId"].as_str().unwrap().to_owned(), 5))
        .collect();
    expected.sort();
    assert_eq!(
        written, expected,
        "each transaction written once, 2.50 x 2 points"
    );
}

/// In split mode the rewards process sends a claimed batch's points to the transactions service
/// in one call, then completes the events it was told were written or had nothing to write,
/// and puts off the ones held back for a restriction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_back_sends_a_batch_in_one_call_and_settles_each_event() {
    use axum::extract::State;

    #[derive(Default)]
    struct Seen {
        calls: std::sync::Mutex<Vec<Vec<(String, i64)>>>,
    }

    let (app, person) = charged_app(12).await;
    let items = list(&app, person.token()).await;
    let held = items[0]["transactionId"].as_str().unwrap().to_owned();

    // A stand-in transactions service: writes all but `held`, which it holds back.
    let seen = Arc::new(Seen::default());
    let service = axum::Router::new()
        .route(
            "/bank/v1/transactions/rewards",
            axum::routing::post({
                let held = held.clone();
                move |State(seen): State<Arc<Seen>>, axum::Json(body): axum::Json<Value>| async move {
                    let batch: Vec<(String, i64)> = body["rewards"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| {
                            (
                                r["transactionId"].as_str().unwrap().to_owned(),
                                r["pointsEarned"].as_i64().unwrap(),
                            )
                        })
                        .collect();
                    let written: Vec<&String> =
                        batch.iter().map(|(id, _)| id).filter(|id| **id != held).collect();
                    let answer =
                        json!({ "rewarded": written, "notWritten": [], "restricted": [held] });
                    seen.calls.lock().unwrap().push(batch);
                    axum::Json(answer)
                }
            }),
        )
        .with_state(Arc::clone(&seen));
    let worker = remote_worker(&app, service).await;
    assert_eq!(worker.run_once().await.unwrap(), 12);
    assert_eq!(worker.run_once().await.unwrap(), 0, "the held event waits");

    let calls = seen.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "one call for the batch");
    let mut sent: Vec<(String, i64)> = calls[0].clone();
    sent.sort();
    let mut expected: Vec<(String, i64)> = items
        .iter()
        .map(|t| (t["transactionId"].as_str().unwrap().to_owned(), 5))
        .collect();
    expected.sort();
    assert_eq!(sent, expected, "every transaction once, 2.50 x 2 points");
    let stats = app.services.store.outbox_stats().await.unwrap();
    assert_eq!(
        (stats.pending, stats.parked),
        (1, 0),
        "only the held-back event is left, put off, not parked"
    );
}

/// When a large claim's batch write fails, only the usual batch's worth is handled one by one
/// (so the fall-back cannot outlast the claim's lease); the rest goes straight back to the
/// outbox, the next claim is the usual size, and nothing is rewarded twice or lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_large_batch_falls_back_for_one_batch_and_gives_the_rest_back() {
    use sqlx::Connection as _;

    let (app, person) = charged_app(200).await;
    let poisoned = all_transactions(&app, person.token())
        .await
        .into_iter()
        .find(|t| t["transactionName"] == "Shop 99")
        .unwrap()["transactionId"]
        .as_str()
        .unwrap()
        .to_owned();
    // The ledger refuses the 100th charge's entry: its batch write fails as a whole.
    let file = app.dir.path().join("test.sqlite");
    let mut db = sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    sqlx::query(&format!(
        "CREATE TRIGGER poison BEFORE INSERT ON points_ledger WHEN NEW.reference = '{poisoned}' \
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
    ))
    .execute(&mut db)
    .await
    .unwrap();
    let worker = app.rewards_worker();
    assert_eq!(worker.run_once().await.unwrap(), 32);
    assert_eq!(worker.run_once().await.unwrap(), 64);
    // Claimed: the 104 left, the poisoned one among them; the batch fails.
    assert_eq!(worker.run_once().await.unwrap(), 104);
    assert_eq!(
        points(&app, person.token()).await["balance"],
        (96 + 31) * 5,
        "the first 32 of the failed claim one by one (all but the poisoned one), no more"
    );
    let stats = app.services.store.outbox_stats().await.unwrap();
    assert_eq!(
        (stats.pending, stats.parked),
        (73, 0),
        "72 given back, 1 to retry"
    );
    // The rest comes back at once, in claims that start again at the usual size.
    assert_eq!(worker.run_once().await.unwrap(), 32);
    assert_eq!(worker.run_once().await.unwrap(), 40);
    assert_eq!(
        worker.run_once().await.unwrap(),
        0,
        "the poisoned one waits"
    );
    assert_eq!(points(&app, person.token()).await["balance"], 199 * 5);
    db.close().await.unwrap();
}

/// In split mode a worker catching up claims no more than the transactions service's batch
/// route takes in one call (`MAX_REWARD_BATCH`): a stand-in that refuses larger batches, as
/// the real route does, gets every point, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_catch_up_never_sends_more_than_the_route_takes() {
    use axum::extract::State;

    let (app, person) = charged_app(0).await;
    let others = [app.person().await, app.person().await];
    charge_groceries(&app, &[&person, &others[0], &others[1]], 80, "Shop").await;
    let seen: Arc<std::sync::Mutex<Vec<usize>>> = Arc::default();
    let service = axum::Router::new()
        .route(
            "/bank/v1/transactions/rewards",
            axum::routing::post(
                |State(seen): State<Arc<std::sync::Mutex<Vec<usize>>>>,
                 axum::Json(body): axum::Json<Value>| async move {
                    let ids: Vec<String> = body["rewards"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| r["transactionId"].as_str().unwrap().to_owned())
                        .collect();
                    seen.lock().unwrap().push(ids.len());
                    if ids.len() > domain::MAX_REWARD_BATCH {
                        return (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(json!({})));
                    }
                    let answer = json!({ "rewarded": ids, "notWritten": [], "restricted": [] });
                    (StatusCode::OK, axum::Json(answer))
                },
            ),
        )
        .with_state(Arc::clone(&seen));
    let worker = remote_worker(&app, service).await;
    let mut handled = 0;
    for _ in 0..20 {
        match worker.run_once().await.unwrap() {
            0 => break,
            n => handled += n,
        }
    }
    assert_eq!(handled, 240);
    let calls = seen.lock().unwrap().clone();
    assert_eq!(
        calls,
        [32, 64, 100, 44],
        "claims grew, capped at the route's most"
    );
    let stats = app.services.store.outbox_stats().await.unwrap();
    assert_eq!(
        (stats.pending, stats.parked),
        (0, 0),
        "every event completed"
    );
}

/// A rewards worker that writes through `service`, a stand-in transactions service served on
/// a local port (with a token endpoint added), over this app's database.
async fn remote_worker(app: &TestApp, service: axum::Router) -> rewards_for_testkit::RewardWorker {
    let service = service.route(
        "/token",
        axum::routing::post(|| async {
            axum::Json(json!({ "access_token": "t", "token_type": "Bearer", "expires_in": 300 }))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
    let client = web::client::ServiceClient::new(web::client::ServiceCredentials {
        token_url: format!("{base}/token"),
        client_id: "rewards".into(),
        client_secret: "secret".into(),
        scope: "rewards".into(),
    })
    .unwrap();
    app.rewards_worker()
        .with_remote(Arc::new(rewards_for_testkit::RemoteWriter {
            client,
            transactions_url: base,
        }))
}

/// An app (SQLite) where one person made `charges` charges of 2.50 for groceries (5 points
/// each), with their reward events waiting in the outbox.
async fn charged_app(charges: usize) -> (TestApp, Person) {
    let app = TestApp::new(examplebank_testkit::Backend::Sqlite)
        .await
        .expect("sqlite app");
    let person = app.person().await;
    charge_groceries(&app, &[&person], charges, "Shop").await;
    (app, person)
}

/// Each of `people`, in turn, `rounds` times: a charge of 2.50 for groceries (5 points), named
/// `<prefix> <round>`.
async fn charge_groceries(app: &TestApp, people: &[&Person], rounds: usize, prefix: &str) {
    for i in 0..rounds {
        for person in people {
            app.charge(
                person.token(),
                &format!("{prefix} {i}"),
                "groceries",
                json!("2.50"),
            )
            .await
            .expect(StatusCode::NO_CONTENT);
        }
    }
}
