#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A security and privacy review: hostile input, authorisation edges, idempotency across
//! people, erasure edges and what the audit log keeps. Four of these found bugs (codes outliving
//! a password change, unthrottled password-change guessing, registration undoing a pending
//! erasure, requests outliving an erasure); the others pin down properties nothing else tests.

mod common;

use common::{challenge, raw};
use examplebank_testkit::{Backend, TestApp, TestResponse, Tokens};
use http::{Method, StatusCode};
use serde_json::{json, Value};

// ---------- helpers ----------

/// Asserts a 4xx problem document (never 5xx), whatever the exact status.
fn assert_client_problem(response: &TestResponse, case: &str) {
    assert!(
        response.status.is_client_error(),
        "{case}: expected a 4xx, got {}: {}",
        response.status,
        response.text()
    );
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json"),
        "{case}: {}",
        response.text()
    );
}

/// Signs up and logs in without registering in the bank (an identity account only).
async fn identity_only(app: &TestApp) -> (String, String, String, Tokens) {
    let username = format!("r{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let id = app
        .signup(&username, &password)
        .await
        .expect(StatusCode::CREATED)
        .json()["userId"]
        .as_str()
        .unwrap()
        .to_owned();
    let tokens = app.login(&username, &password).await;
    (id, username, password, tokens)
}

async fn post_json(app: &TestApp, path: &str, token: Option<&str>, body: &str) -> TestResponse {
    raw(
        app,
        Method::POST,
        path,
        token,
        Some("application/json"),
        body.to_owned(),
        &[("idempotency-key", "review-key")],
    )
    .await
}

async fn put_json(app: &TestApp, path: &str, token: Option<&str>, body: &str) -> TestResponse {
    raw(
        app,
        Method::PUT,
        path,
        token,
        Some("application/json"),
        body.to_owned(),
        &[],
    )
    .await
}

async fn first_transaction_id(app: &TestApp, token: &str) -> String {
    let list = app
        .get("/bank/v1/transactions", token)
        .await
        .expect(StatusCode::OK)
        .json();
    list[0]["transactionId"].as_str().unwrap().to_owned()
}

// ---------- JSON edge cases ----------

async fn json_edge_cases_are_4xx_problems(app: TestApp) {
    let person = app.person().await;
    let token = Some(person.token());
    let service = app.service_token().await;
    app.charge(person.token(), "Shop", "other", json!("1.00"))
        .await
        .expect(StatusCode::NO_CONTENT);
    let tx = first_transaction_id(&app, person.token()).await;
    let reward_path = format!("/bank/v1/transactions/reward/{tx}");

    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let deep_object = format!("{}1{}", r#"{"a":"#.repeat(3000), "}".repeat(3000));
    let bodies_everywhere = [
        deep.as_str(),
        deep_object.as_str(),
        "[]",
        "null",
        "\"text\"",
        "1",
        "true",
        "{}",
        r#"{"a": "\ud800"}"#,
        r#"{"a": "\x"}"#,
        "\u{feff}{}",
    ];
    for path in [
        "/bank/v1/transactions",
        "/bank/v1/users",
        "/bank/v1/points/redemptions",
        "/identity/v1/signup",
        "/identity/v1/password",
    ] {
        for body in bodies_everywhere {
            let response = post_json(&app, path, token, body).await;
            assert_client_problem(&response, &format!("POST {path} {:.40}", body));
        }
    }
    for body in bodies_everywhere {
        let response = put_json(&app, &reward_path, Some(&service), body).await;
        assert_client_problem(&response, &format!("PUT reward {:.40}", body));
        if body != "{}" {
            let response = put_json(&app, "/bank/v1/users/self", token, body).await;
            assert_client_problem(&response, &format!("PUT self {:.40}", body));
        }
    }

    // Huge and odd numbers for integer fields.
    for number in [
        "1e30",
        "99999999999999999999",
        "-99999999999999999999",
        "9223372036854775808",
        "1.5",
        "-1",
        "1e3",
        "NaN",
        "Infinity",
        "0x10",
        "\"5\"",
        "null",
    ] {
        let response = put_json(
            &app,
            &reward_path,
            Some(&service),
            &format!(r#"{{"pointsEarned": {number}}}"#),
        )
        .await;
        assert_client_problem(&response, &format!("pointsEarned {number}"));
        let response = post_json(
            &app,
            "/bank/v1/points/redemptions",
            token,
            &format!(r#"{{"points": {number}}}"#),
        )
        .await;
        assert_client_problem(&response, &format!("points {number}"));
    }
    // Nothing was rewarded by any of that.
    let body = app
        .get(&format!("/bank/v1/transactions/{tx}"), person.token())
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(body["processed"], false, "{body}");

    // NUL and other control characters inside strings are refused, not stored.
    for name in ["a\u{0}b", "\u{0}", "x\u{7}", "x\u{1b}[31m"] {
        let response = app
            .charge(person.token(), name, "other", json!("1.00"))
            .await;
        assert_eq!(
            response.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{name:?}"
        );
    }
    let response = app
        .call(
            Method::PUT,
            "/bank/v1/users/self",
            token,
            Some(json!({ "givenName": "Ann\u{0}", "email": "a\u{0}@example.org" })),
        )
        .await;
    assert_client_problem(&response, "NUL in names");
    let response = app.signup("nul\u{0}user", "a-good-password-1").await;
    assert_client_problem(&response, "NUL in username");
    assert_eq!(
        app.get("/bank/v1/transactions", person.token())
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

// ---------- path parameters ----------

async fn odd_path_parameters_are_4xx(app: TestApp) {
    let app = &app;
    let person = app.person().await;
    let admin = app.admin_token().await;
    let service = app.service_token().await;
    let odd = [
        "%00",
        "a%00b",
        "%FF",
        "%C3%28",
        "..%2F..%2Fadmin",
        "%2e%2e",
        "%0d%0aX-Injected:%201",
        "%27%20OR%201%3D1--",
        &"x".repeat(5000),
    ];
    for segment in odd {
        let cases: [(Method, String, &str, Option<&str>); 6] = [
            (
                Method::GET,
                format!("/bank/v1/transactions/{segment}"),
                person.token(),
                None,
            ),
            (
                Method::PUT,
                format!("/bank/v1/transactions/reward/{segment}"),
                service.as_str(),
                Some(r#"{"pointsEarned": 1}"#),
            ),
            (
                Method::PUT,
                format!("/admin/v1/accounts/{segment}/status"),
                admin.as_str(),
                Some(r#"{"status": "disabled"}"#),
            ),
            (
                Method::PUT,
                format!("/admin/v1/reward-rules/{segment}"),
                admin.as_str(),
                Some(r#"{"pointsPerUnit": 1}"#),
            ),
            (
                Method::PUT,
                format!("/bank/v1/users/self/consents/{segment}"),
                person.token(),
                Some(r#"{"granted": true}"#),
            ),
            (
                Method::GET,
                format!("/bank/v1/transactions?cursor={segment}&limit={segment}"),
                person.token(),
                None,
            ),
        ];
        for (method, path, token, body) in cases {
            let response = raw(
                app,
                method.clone(),
                &path,
                Some(token),
                body.map(|_| "application/json"),
                body.unwrap_or("").to_owned(),
                &[],
            )
            .await;
            let case = format!("{method} {:.80}", path);
            assert_client_problem(&response, &case);
            assert!(
                response.header("x-injected").is_none(),
                "{case}: header injected"
            );
        }
    }
}

// ---------- idempotency across people and endpoints ----------

async fn idempotency_keys_belong_to_one_person_and_one_endpoint(app: TestApp) {
    let alice = app.person().await;
    let bob = app.person().await;
    let key = [("idempotency-key", "shared-key-1")];
    let charge = |name: &str, amount: &str| json!({ "transactionName": name, "category": "groceries", "amount": amount });
    common::json_with(
        &app,
        Method::POST,
        "/bank/v1/transactions",
        alice.token(),
        &charge("Alice shop", "10.00"),
        &key,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    // Bob's different charge with the same key is his own, new charge.
    common::json_with(
        &app,
        Method::POST,
        "/bank/v1/transactions",
        bob.token(),
        &charge("Bob shop", "20.00"),
        &key,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    // Bob's identical repeat of Alice's charge is also his own.
    common::json_with(
        &app,
        Method::POST,
        "/bank/v1/transactions",
        bob.token(),
        &charge("Alice shop", "10.00"),
        &[("idempotency-key", "other-key")],
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let bobs = app.get("/bank/v1/transactions", bob.token()).await.json();
    assert_eq!(bobs.as_array().unwrap().len(), 2, "{bobs}");
    let alices = app.get("/bank/v1/transactions", alice.token()).await.json();
    assert_eq!(alices.as_array().unwrap().len(), 1, "{alices}");

    app.drain_rewards().await;
    // The same key on the redemption endpoint is a different namespace.
    let redeemed = common::json_with(
        &app,
        Method::POST,
        "/bank/v1/points/redemptions",
        alice.token(),
        &json!({ "points": 5 }),
        &key,
    )
    .await
    .expect(StatusCode::CREATED)
    .json();
    // Bob replaying Alice's key and body must not see Alice's answer.
    let bob_answer = common::json_with(
        &app,
        Method::POST,
        "/bank/v1/points/redemptions",
        bob.token(),
        &json!({ "points": 5 }),
        &key,
    )
    .await;
    assert_eq!(
        bob_answer.status,
        StatusCode::CREATED,
        "{}",
        bob_answer.text()
    );
    let bob_answer = bob_answer.json();
    assert_ne!(
        bob_answer["redemptionId"], redeemed["redemptionId"],
        "Bob got Alice's redemption"
    );
    assert_eq!(
        app.get("/bank/v1/points", alice.token()).await.json()["balance"],
        15
    );
    assert_eq!(
        app.get("/bank/v1/points", bob.token()).await.json()["balance"],
        55
    );
}

// ---------- tokens on the wrong routes ----------

async fn admin_and_service_tokens_do_not_act_as_people(app: TestApp) {
    let admin = app.admin_token().await;
    let service = app.service_token().await;
    let person_routes: [(Method, &str, Option<Value>); 8] = [
        (Method::GET, "/bank/v1/users/self", None),
        (
            Method::POST,
            "/bank/v1/users",
            Some(json!({ "consentGiven": true })),
        ),
        (Method::GET, "/bank/v1/users/self/export", None),
        (Method::DELETE, "/bank/v1/users/self", None),
        (Method::POST, "/bank/v1/users/self/erasure", None),
        (
            Method::POST,
            "/bank/v1/transactions",
            Some(json!({ "transactionName": "x", "category": "other", "amount": "1" })),
        ),
        (Method::GET, "/bank/v1/points", None),
        (
            Method::POST,
            "/bank/v1/points/redemptions",
            Some(json!({ "points": 1 })),
        ),
    ];
    for (method, path, body) in person_routes {
        for (who, token) in [("admin", &admin), ("service", &service)] {
            let response = app
                .call(method.clone(), path, Some(token), body.clone())
                .await;
            assert_eq!(
                response.status,
                StatusCode::FORBIDDEN,
                "{who} {method} {path}: {}",
                response.text()
            );
        }
    }
    for method in [Method::GET, Method::POST] {
        let response = app
            .call(
                method.clone(),
                "/identity/v1/userinfo",
                Some(&service),
                None,
            )
            .await;
        assert!(
            matches!(
                response.status,
                StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED
            ),
            "service {method} userinfo: {} {}",
            response.status,
            response.text()
        );
    }
    let response = app
        .call(
            Method::POST,
            "/identity/v1/password",
            Some(&service),
            Some(json!({ "currentPassword": "whatever-1", "newPassword": "whatever-2-long" })),
        )
        .await;
    assert_eq!(
        response.status,
        StatusCode::FORBIDDEN,
        "{}",
        response.text()
    );
}

// ---------- tokens after a password change, on every person route ----------

async fn old_tokens_die_on_every_route_after_a_password_change(app: TestApp) {
    let person = app.person().await;
    let second = app.login(&person.username, &person.password).await;
    app.call(
        Method::POST,
        "/identity/v1/password",
        Some(person.token()),
        Some(
            json!({ "currentPassword": person.password, "newPassword": "a-brand-new-password-7" }),
        ),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let routes: [(Method, &str, Option<Value>); 12] = [
        (Method::GET, "/identity/v1/userinfo", None),
        (Method::GET, "/bank/v1/users/self", None),
        (
            Method::PUT,
            "/bank/v1/users/self",
            Some(json!({ "givenName": "X" })),
        ),
        (Method::GET, "/bank/v1/users/self/consents", None),
        (
            Method::PUT,
            "/bank/v1/users/self/consents/analytics",
            Some(json!({ "granted": true })),
        ),
        (Method::GET, "/bank/v1/users/self/export", None),
        (Method::PUT, "/bank/v1/users/self/restriction", None),
        (Method::GET, "/bank/v1/users/self/requests", None),
        (Method::GET, "/bank/v1/transactions", None),
        (
            Method::POST,
            "/bank/v1/transactions",
            Some(json!({ "transactionName": "x", "category": "other", "amount": "1" })),
        ),
        (Method::GET, "/bank/v1/points", None),
        (Method::DELETE, "/bank/v1/users/self", None),
    ];
    for token in [person.token(), second.access.as_str()] {
        for (method, path, body) in routes.clone() {
            let response = app.call(method.clone(), path, Some(token), body).await;
            assert_eq!(
                response.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path}: {}",
                response.text()
            );
        }
    }
    for refresh in [&person.tokens.refresh, &second.refresh] {
        assert_eq!(app.refresh(refresh).await.status, StatusCode::BAD_REQUEST);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_issued_before_a_password_change_is_dead_after_it() {
    let app = TestApp::new(Backend::Sqlite).await.unwrap();
    let person = app.person().await;
    // An attacker who knows the old password signs in and holds the code.
    let verifier = crypto::secrets::random_token();
    let redirect = app
        .authorize(&person.username, &person.password, &verifier, "s")
        .await;
    let code = TestApp::code_from(&redirect);
    // The owner notices and changes the password: "every earlier session is revoked".
    app.call(
        Method::POST,
        "/identity/v1/password",
        Some(person.token()),
        Some(
            json!({ "currentPassword": person.password, "newPassword": "a-brand-new-password-7" }),
        ),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let exchanged = app.exchange(&code, &verifier).await;
    if exchanged.status == StatusCode::OK {
        let access = exchanged.json()["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let profile = app.get("/bank/v1/users/self", &access).await;
        panic!(
            "the pre-change code gave a session; profile with it: {} {}",
            profile.status,
            profile.text()
        );
    }
    assert_eq!(exchanged.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_the_current_password_is_throttled() {
    let app = TestApp::new(Backend::Sqlite).await.unwrap();
    let person = app.person().await;
    let mut statuses = Vec::new();
    for attempt in 0..12 {
        let response = app
            .call(
                Method::POST,
                "/identity/v1/password",
                Some(person.token()),
                Some(json!({
                    "currentPassword": format!("guess-number-{attempt}"),
                    "newPassword": "attacker-chosen-password-1",
                })),
            )
            .await;
        statuses.push(response.status);
    }
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "12 wrong current passwords in a row, never throttled: {statuses:?}"
    );
}

// ---------- login, sign-up and what they reveal ----------

async fn usernames_that_normalise_the_same_are_one_account(app: TestApp) {
    let person = app.person().await;
    let upper = person.username.to_uppercase();
    // Sign-up with another letter case is a duplicate, also while logged in.
    let response = app.signup(&upper, "another-password-99").await;
    assert_eq!(response.status, StatusCode::CONFLICT, "{}", response.text());
    let response = app
        .call(
            Method::POST,
            "/identity/v1/signup",
            Some(person.token()),
            Some(json!({
                "username": upper, "password": "another-password-99",
                "givenName": "A", "familyName": "B", "email": "a@example.org"
            })),
        )
        .await;
    assert_eq!(response.status, StatusCode::CONFLICT, "{}", response.text());
    // Login works in any letter case and reaches the same person.
    let tokens = app.login(&upper, &person.password).await;
    let me = app
        .get("/bank/v1/users/self", &tokens.access)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(me["userId"], person.id);
    assert_eq!(me["username"], person.username);
    // Non-ASCII look-alikes are not the same name and do not log in.
    for lookalike in [
        person.username.replacen('p', "\u{0440}", 1),
        format!("{}\u{200b}", person.username),
        format!(" {}", person.username),
    ] {
        let verifier = crypto::secrets::random_token();
        let response = app
            .authorize(&lookalike, &person.password, &verifier, "s")
            .await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{lookalike:?}");
    }
}

async fn failed_logins_leave_no_username_in_the_audit_log(app: TestApp) {
    let person = app.person().await;
    let unknown = format!(
        "canaryname{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let verifier = crypto::secrets::random_token();
    let missing = app
        .authorize(&unknown, "canary-password-1", &verifier, "s")
        .await;
    let wrong = app
        .authorize(&person.username, "canary-password-1", &verifier, "s")
        .await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    // Same page whether the user exists or not (apart from the request id).
    assert_eq!(missing.text(), wrong.text());
    assert!(!missing.text().contains(&unknown));
    assert!(!missing.text().contains("canary-password"));
    let entries = app.store().audit_entries(0, 10_000).await.unwrap();
    for entry in &entries {
        let line = format!(
            "{} {} {} {} {}",
            entry.actor, entry.action, entry.target, entry.outcome, entry.request_id
        )
        .to_lowercase();
        for needle in [
            unknown.as_str(),
            person.username.as_str(),
            "canary-password",
        ] {
            assert!(!line.contains(needle), "audit entry holds {needle}: {line}");
        }
    }
    assert!(entries
        .iter()
        .any(|e| e.action == "login.failed" && e.target == "unknown-account"));
}

async fn login_and_signup_pages_escape_everything_they_reflect(app: TestApp) {
    let payload = "\"><script>alert(1)</script><img src=x onerror=alert(2)>";
    let verifier = crypto::secrets::random_token();
    let code_challenge = challenge(&verifier);
    let query = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", "simulator"),
        ("redirect_uri", examplebank_testkit_redirect()),
        ("scope", "openid bank"),
        ("state", payload),
        ("nonce", payload),
        ("code_challenge", code_challenge.as_str()),
        ("code_challenge_method", "S256"),
    ])
    .unwrap();
    let page = app
        .send(
            http::Request::builder()
                .uri(format!("/identity/v1/authorize?{query}"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let html = page.text();
    assert!(!html.contains("<script>"), "{html}");
    assert!(!html.contains("<img"), "{html}");
    // A failed login shows the form again with the same hidden fields, still escaped.
    let fields = [
        ("response_type", "code"),
        ("client_id", "simulator"),
        ("redirect_uri", examplebank_testkit_redirect()),
        ("scope", "openid bank"),
        ("state", payload),
        ("nonce", "n"),
        ("code_challenge", code_challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("username", payload),
        ("password", payload),
    ];
    let failed = app.post_form("/identity/v1/authorize", &fields, &[]).await;
    assert_eq!(failed.status, StatusCode::UNAUTHORIZED);
    let html = failed.text();
    assert!(!html.contains("<script>"), "{html}");
    assert!(!html.contains("<img"), "{html}");
    // The HTML sign-up form does not echo what was typed.
    let signup = app
        .post_form(
            "/identity/v1/signup",
            &[
                ("username", payload),
                ("password", payload),
                ("givenName", payload),
                ("familyName", payload),
                ("email", payload),
            ],
            &[],
        )
        .await;
    assert!(signup.status.is_client_error(), "{}", signup.text());
    assert!(!signup.text().contains("<script>"), "{}", signup.text());
    assert!(!signup.text().contains("<img"), "{}", signup.text());
    // An unregistered redirect is never followed, and not echoed.
    let evil = format!(
        "{}&state=x",
        query.replace(
            "redirect_uri=http%3A%2F%2Fexamplebank.test%2Fcallback",
            "redirect_uri=http%3A%2F%2Fexamplebank.test%2Fcallback%2F..%2F..%2Fevil.example"
        )
    );
    let response = app
        .send(
            http::Request::builder()
                .uri(format!("/identity/v1/authorize?{evil}"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert!(response.header("location").is_none());
    assert!(!response.text().contains("evil.example"));
}

fn examplebank_testkit_redirect() -> &'static str {
    "http://examplebank.test/callback"
}

// ---------- methods ----------

async fn odd_methods_are_problems(app: TestApp) {
    let person = app.person().await;
    for method in ["TRACE", "OPTIONS", "PATCH", "CONNECT", "PROPFIND", "HEAD"] {
        for path in [
            "/bank/v1/transactions",
            "/bank/v1/users/self",
            "/identity/v1/token",
        ] {
            let response = raw(
                &app,
                Method::from_bytes(method.as_bytes()).unwrap(),
                path,
                Some(person.token()),
                None,
                "",
                &[],
            )
            .await;
            assert!(
                !response.status.is_server_error(),
                "{method} {path}: {}",
                response.status
            );
            if method == "TRACE" {
                assert_ne!(response.status, StatusCode::OK, "TRACE {path} answered");
                assert!(!response.text().contains(person.token()));
            }
        }
    }
}

// ---------- pages and cursors ----------

async fn another_persons_cursor_reveals_nothing(app: TestApp) {
    let alice = app.person().await;
    let bob = app.person().await;
    for i in 0..3 {
        app.charge(
            alice.token(),
            &format!("Alice secret {i}"),
            "other",
            json!("1.00"),
        )
        .await
        .expect(StatusCode::NO_CONTENT);
    }
    let page = app
        .get("/bank/v1/transactions?limit=1", alice.token())
        .await
        .expect(StatusCode::OK);
    let next = common::next_link(&page).expect("a next link");
    let response = app.get(&next, bob.token()).await.expect(StatusCode::OK);
    assert_eq!(response.json(), json!([]));
    let response = app
        .get(
            &format!("/bank/v1/transactions?userId={}", alice.id),
            bob.token(),
        )
        .await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    assert!(!response.text().contains("Alice secret"));
}

// ---------- erasure edges ----------

async fn erasure_of_an_identity_only_account_erases_it(app: TestApp) {
    let (id, username, password, tokens) = identity_only(&app).await;
    app.call(
        Method::DELETE,
        "/bank/v1/users/self",
        Some(&tokens.access),
        None,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    assert_eq!(app.run_erasure().await, 1);
    assert!(app.store().account(&id).await.unwrap().is_none());
    assert!(app.services.vault.person_key(&id).unwrap().is_none());
    common::assert_unauthorized(
        app.get("/identity/v1/userinfo", &tokens.access).await,
        "userinfo after erasure",
    );
    let verifier = crypto::secrets::random_token();
    assert_eq!(
        app.authorize(&username, &password, &verifier, "s")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.refresh(&tokens.refresh).await.status,
        StatusCode::BAD_REQUEST
    );
    // The name is free again.
    app.signup(&username, &password)
        .await
        .expect(StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_after_an_erasure_request_does_not_undo_it() {
    let app = TestApp::new(Backend::Sqlite).await.unwrap();
    let (_id, _username, _password, tokens) = identity_only(&app).await;
    let token = tokens.access.as_str();
    app.call(
        Method::POST,
        "/bank/v1/users/self/erasure",
        Some(token),
        None,
    )
    .await
    .expect(StatusCode::ACCEPTED);
    // Erasure is pending (not run yet): registering should be refused, or at least leave the
    // person marked as leaving.
    let register = app
        .call(
            Method::POST,
            "/bank/v1/users",
            Some(token),
            Some(json!({ "consentGiven": true })),
        )
        .await;
    if register.status == StatusCode::NO_CONTENT {
        let me = app.get("/bank/v1/users/self", token).await.json();
        let charge = app
            .charge(token, "During erasure", "other", json!("9.99"))
            .await;
        let consent = app
            .call(
                Method::PUT,
                "/bank/v1/users/self/consents/analytics",
                Some(token),
                Some(json!({ "granted": true })),
            )
            .await;
        assert_eq!(
            (me["deleteRequested"].clone(), charge.status, consent.status),
            (json!(true), StatusCode::CONFLICT, StatusCode::CONFLICT),
            "registered during a pending erasure: profile {me}, charge {}, consent {}",
            charge.text(),
            consent.text()
        );
    } else {
        assert_eq!(register.status, StatusCode::CONFLICT, "{}", register.text());
    }
}

async fn requests_during_a_pending_erasure_are_refused(app: TestApp) {
    let person = app.person().await;
    let token = person.token();
    app.charge(token, "Before", "other", json!("5.00"))
        .await
        .expect(StatusCode::NO_CONTENT);
    app.call(
        Method::POST,
        "/bank/v1/users/self/erasure",
        Some(token),
        None,
    )
    .await
    .expect(StatusCode::ACCEPTED);
    let charge = app.charge(token, "After", "other", json!("5.00")).await;
    assert_eq!(
        charge.expect_problem(StatusCode::CONFLICT)["type"],
        "urn:examplebank:problem:erasure-pending"
    );
    for (method, path, body) in [
        (
            Method::PUT,
            "/bank/v1/users/self/consents/rewards",
            Some(json!({ "granted": true })),
        ),
        (
            Method::PUT,
            "/bank/v1/users/self",
            Some(json!({ "email": "new@example.org" })),
        ),
        (Method::PUT, "/bank/v1/users/self/restriction", None),
        (Method::DELETE, "/bank/v1/users/self/objection", None),
    ] {
        let response = app.call(method.clone(), path, Some(token), body).await;
        assert_eq!(
            response.status,
            StatusCode::CONFLICT,
            "{method} {path}: {}",
            response.text()
        );
    }
    // A second request answers with the pending one.
    let again = app
        .call(
            Method::POST,
            "/bank/v1/users/self/erasure",
            Some(token),
            None,
        )
        .await
        .expect(StatusCode::ACCEPTED)
        .json();
    assert_eq!(again["alreadyPending"], true);
    let tx = app.get("/bank/v1/transactions", token).await.json()[0]["transactionId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.run_erasure().await, 1);
    // The reward endpoint with the erased person's transaction finds nothing.
    let service = app.service_token().await;
    let response = app
        .call(
            Method::PUT,
            &format!("/bank/v1/transactions/reward/{tx}"),
            Some(&service),
            Some(json!({ "pointsEarned": 1000 })),
        )
        .await;
    assert_eq!(
        response.status,
        StatusCode::NOT_FOUND,
        "{}",
        response.text()
    );
    assert_eq!(
        app.store().points(&person.id).await.unwrap(),
        store::PointsSummary::default()
    );
    // A redemption replayed with the dead token is refused.
    let response = common::json_with(
        &app,
        Method::POST,
        "/bank/v1/points/redemptions",
        token,
        &json!({ "points": 1 }),
        &[("idempotency-key", "after-erasure")],
    )
    .await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_keeps_only_the_erasure_request() {
    let app = TestApp::new(Backend::Sqlite).await.unwrap();
    let person = app.person().await;
    let token = person.token();
    app.get("/bank/v1/users/self/export", token)
        .await
        .expect(StatusCode::OK);
    app.call(
        Method::PUT,
        "/bank/v1/users/self/restriction",
        Some(token),
        None,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    app.call(
        Method::PUT,
        "/bank/v1/users/self",
        Some(token),
        Some(json!({ "givenName": "Renamed" })),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    app.call(Method::DELETE, "/bank/v1/users/self", Some(token), None)
        .await
        .expect(StatusCode::NO_CONTENT);
    assert_eq!(app.run_erasure().await, 1);
    let left = app.store().privacy_requests(&person.id).await.unwrap();
    let kinds: Vec<&str> = left.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["erasure"], "rows left under the erased pseudonym");
}

async fn a_restricted_person_can_still_export(app: TestApp) {
    let person = app.person().await;
    app.charge(person.token(), "Kept", "other", json!("3.00"))
        .await
        .expect(StatusCode::NO_CONTENT);
    app.call(
        Method::PUT,
        "/bank/v1/users/self/restriction",
        Some(person.token()),
        None,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let export = app
        .get("/bank/v1/users/self/export", person.token())
        .await
        .expect(StatusCode::OK)
        .json();
    assert!(export["profile"]["restrictedSince"].is_string(), "{export}");
    assert_eq!(export["transactions"][0]["transactionName"], "Kept");
}

// ---------- concurrency ----------

async fn concurrent_signups_with_one_name_make_one_account(app: TestApp) {
    let name = format!("race{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let app = std::sync::Arc::new(app);
    let mut handles = Vec::new();
    for i in 0..6 {
        let app = app.clone();
        let name = if i % 2 == 0 {
            name.clone()
        } else {
            name.to_uppercase()
        };
        handles.push(tokio::spawn(async move {
            app.signup(&name, "a-decent-password-4").await.status
        }));
    }
    let mut statuses = Vec::new();
    for handle in handles {
        statuses.push(handle.await.unwrap());
    }
    // 429 is the hashing bound's answer; anything else but one 201 must be a 409.
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| matches!(
            *s,
            StatusCode::CREATED | StatusCode::CONFLICT | StatusCode::TOO_MANY_REQUESTS
        )),
        "{statuses:?}"
    );
}

async fn concurrent_registrations_answer_409_not_500(app: TestApp) {
    let (_id, _u, _p, tokens) = identity_only(&app).await;
    let app = std::sync::Arc::new(app);
    let mut handles = Vec::new();
    for _ in 0..6 {
        let app = app.clone();
        let token = tokens.access.clone();
        handles.push(tokio::spawn(async move {
            app.call(
                Method::POST,
                "/bank/v1/users",
                Some(&token),
                Some(json!({ "consentGiven": true })),
            )
            .await
            .status
        }));
    }
    let mut statuses = Vec::new();
    for handle in handles {
        statuses.push(handle.await.unwrap());
    }
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::NO_CONTENT)
        .count();
    let conflicts = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((created, conflicts), (1, 5), "{statuses:?}");
    let consents = app
        .get("/bank/v1/users/self/consents", &tokens.access)
        .await
        .json();
    assert_eq!(
        consents["history"].as_array().unwrap().len(),
        3,
        "{consents}"
    );
}

examplebank_testkit::both_backends!(
    json_edge_cases_are_4xx_problems,
    odd_path_parameters_are_4xx,
    idempotency_keys_belong_to_one_person_and_one_endpoint,
    admin_and_service_tokens_do_not_act_as_people,
    old_tokens_die_on_every_route_after_a_password_change,
    usernames_that_normalise_the_same_are_one_account,
    failed_logins_leave_no_username_in_the_audit_log,
    login_and_signup_pages_escape_everything_they_reflect,
    odd_methods_are_problems,
    another_persons_cursor_reveals_nothing,
    erasure_of_an_identity_only_account_erases_it,
    requests_during_a_pending_erasure_are_refused,
    a_restricted_person_can_still_export,
    concurrent_signups_with_one_name_make_one_account,
    concurrent_registrations_answer_409_not_500,
);
