#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The users role: registration, profile and consent, rectification, and erasure from the
//! request to the unlinked transactions, on both backends.

mod common;

use examplebank_testkit::{Person, TestApp, TestResponse};
use http::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;

const SELF: &str = "/bank/v1/users/self";

async fn put_self(app: &TestApp, person: &Person, body: Value) -> TestResponse {
    app.call(Method::PUT, SELF, Some(person.token()), Some(body))
        .await
}

async fn profile(app: &TestApp, person: &Person) -> Value {
    app.get(SELF, person.token())
        .await
        .expect(StatusCode::OK)
        .json()
}

/// A signed-up, logged-in person who is not registered with the bank yet.
async fn unregistered(app: &TestApp) -> (String, String) {
    let username = format!("u{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    app.signup(&username, "violet-tangent-harbour")
        .await
        .expect(StatusCode::CREATED);
    let tokens = app.login(&username, "violet-tangent-harbour").await;
    (username, tokens.access)
}

async fn registration_succeeds_once(app: TestApp) {
    let (_, token) = unregistered(&app).await;
    let not_yet = app
        .get(SELF, &token)
        .await
        .expect_problem(StatusCode::NOT_FOUND);
    assert_eq!(not_yet["type"], "urn:examplebank:problem:not-found");

    let smuggled = json!({ "consentGiven": true, "userId": "someone-else" });
    app.call(Method::POST, "/bank/v1/users", Some(&token), Some(smuggled))
        .await
        .expect_problem(StatusCode::BAD_REQUEST);
    app.call(
        Method::POST,
        "/bank/v1/users",
        Some(&token),
        Some(json!({ "consentGiven": "yes" })),
    )
    .await
    .expect_problem(StatusCode::BAD_REQUEST);
    app.call(
        Method::POST,
        "/bank/v1/users",
        Some(&token),
        Some(json!({})),
    )
    .await
    .expect_problem(StatusCode::BAD_REQUEST);

    app.call(
        Method::POST,
        "/bank/v1/users",
        Some(&token),
        Some(json!({ "consentGiven": true })),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let again = app
        .call(
            Method::POST,
            "/bank/v1/users",
            Some(&token),
            Some(json!({ "consentGiven": false })),
        )
        .await
        .expect_problem(StatusCode::CONFLICT);
    assert_eq!(again["type"], "urn:examplebank:problem:already-registered");
    // The second attempt did not change the first choice.
    assert_eq!(
        app.get(SELF, &token).await.expect(StatusCode::OK).json()["consentGiven"],
        true
    );

    let anonymous = app
        .call(
            Method::POST,
            "/bank/v1/users",
            None,
            Some(json!({ "consentGiven": true })),
        )
        .await;
    common::assert_unauthorized(anonymous, "register without a token");
}

async fn the_profile_shows_names_and_consent(app: TestApp) {
    let yes = app.person_with_consent(true).await;
    let no = app.person_with_consent(false).await;
    let body = profile(&app, &yes).await;
    assert_eq!(body["userId"], yes.id.as_str());
    assert_eq!(body["username"], yes.username.as_str());
    assert_eq!(body["givenName"], "Test");
    assert_eq!(body["familyName"], "Person");
    assert_eq!(body["email"], format!("{}@example.org", yes.username));
    assert_eq!(body["consentGiven"], true);
    assert_eq!(body["consents"]["rewards"], true);
    assert_eq!(body["deleteRequested"], false);
    let body = profile(&app, &no).await;
    assert_eq!(body["consentGiven"], false);
    assert_eq!(body["consents"]["rewards"], false);
    assert_eq!(body["userId"], no.id.as_str());
}

async fn withdrawn_consent_blocks_new_charges(app: TestApp) {
    let person = app.person().await;
    app.charge(person.token(), "Before", "coffee", json!("3.50"))
        .await
        .expect(StatusCode::NO_CONTENT);

    put_self(&app, &person, json!({ "consentGiven": false }))
        .await
        .expect(StatusCode::NO_CONTENT);
    assert_eq!(profile(&app, &person).await["consentGiven"], false);
    let refused = app
        .charge(person.token(), "During", "coffee", json!("4.50"))
        .await;
    let problem = refused.expect_problem(StatusCode::CONFLICT);
    assert_eq!(problem["type"], "urn:examplebank:problem:no-consent");

    put_self(&app, &person, json!({ "consentGiven": true }))
        .await
        .expect(StatusCode::NO_CONTENT);
    assert_eq!(profile(&app, &person).await["consentGiven"], true);
    app.charge(person.token(), "After", "coffee", json!("5.50"))
        .await
        .expect(StatusCode::NO_CONTENT);

    let list = app
        .get("/bank/v1/transactions", person.token())
        .await
        .expect(StatusCode::OK)
        .json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["transactionName"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["After", "Before"],
        "the refused charge was not stored"
    );
}

async fn rectified_names_and_email_show_in_the_profile(app: TestApp) {
    let person = app.person().await;
    put_self(
        &app,
        &person,
        json!({ "givenName": "Ada", "familyName": "Lovelace", "email": "ada@example.org" }),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let body = profile(&app, &person).await;
    assert_eq!(body["givenName"], "Ada");
    assert_eq!(body["familyName"], "Lovelace");
    assert_eq!(body["email"], "ada@example.org");
    assert_eq!(
        body["consentGiven"], true,
        "rectification leaves consent alone"
    );
    let info = app
        .get("/identity/v1/userinfo", person.token())
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(info["given_name"], "Ada");
    assert_eq!(info["email"], "ada@example.org");

    // One field at a time keeps the others.
    put_self(&app, &person, json!({ "familyName": "King" }))
        .await
        .expect(StatusCode::NO_CONTENT);
    let body = profile(&app, &person).await;
    assert_eq!(
        (body["givenName"].as_str(), body["familyName"].as_str()),
        (Some("Ada"), Some("King"))
    );

    for bad in [
        json!({ "email": "not-an-email" }),
        json!({ "email": "a b@example.org" }),
        json!({ "givenName": "" }),
        json!({ "givenName": "x".repeat(101) }),
        json!({ "familyName": "bad\u{0007}name" }),
        json!({ "email": "new@example.org", "givenName": "   " }),
    ] {
        let problem = put_self(&app, &person, bad.clone())
            .await
            .expect_problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            !problem["detail"].as_str().unwrap().contains("not-an-email"),
            "{problem}"
        );
    }
    put_self(&app, &person, json!({ "role": "admin" }))
        .await
        .expect_problem(StatusCode::BAD_REQUEST);
    // Nothing of the refused requests was applied.
    let body = profile(&app, &person).await;
    assert_eq!(body["email"], "ada@example.org");
    assert_eq!(body["givenName"], "Ada");
}

async fn erasure_blocks_changes_then_removes_the_person(app: TestApp) {
    let person = app.person().await;
    let other = app.person().await;
    app.charge(person.token(), "Secret Pharmacy", "health", json!("19.99"))
        .await
        .expect(StatusCode::NO_CONTENT);
    app.charge(other.token(), "Other Shop", "health", json!("5.00"))
        .await
        .expect(StatusCode::NO_CONTENT);
    let list = app
        .get("/bank/v1/transactions", person.token())
        .await
        .expect(StatusCode::OK)
        .json();
    let transaction_id = list[0]["transactionId"].as_str().unwrap().to_owned();
    let other_list = app
        .get("/bank/v1/transactions", other.token())
        .await
        .expect(StatusCode::OK)
        .json();
    let other_transaction = other_list[0]["transactionId"].as_str().unwrap().to_owned();

    app.call(Method::DELETE, SELF, Some(person.token()), None)
        .await
        .expect(StatusCode::NO_CONTENT);
    // Pending: nothing can be changed and no new charge is accepted.
    assert_eq!(profile(&app, &person).await["deleteRequested"], true);
    let problem = put_self(&app, &person, json!({ "consentGiven": true }))
        .await
        .expect_problem(StatusCode::CONFLICT);
    assert_eq!(problem["type"], "urn:examplebank:problem:erasure-pending");
    put_self(&app, &person, json!({ "givenName": "Changed" }))
        .await
        .expect_problem(StatusCode::CONFLICT);
    app.charge(person.token(), "Late", "health", json!("1.00"))
        .await
        .expect_problem(StatusCode::CONFLICT);
    assert_eq!(profile(&app, &person).await["givenName"], "Test");

    assert_eq!(app.run_erasure().await, 1);
    // The charge's pending reward event finds nobody to reward, and fails nothing.
    app.drain_rewards().await;
    common::assert_unauthorized(app.get(SELF, person.token()).await, "token after erasure");
    common::assert_unauthorized(
        app.get("/identity/v1/userinfo", person.token()).await,
        "userinfo after erasure",
    );
    let refresh = app.refresh(&person.tokens.refresh).await;
    assert_eq!(
        refresh.status,
        StatusCode::BAD_REQUEST,
        "{}",
        refresh.text()
    );
    let login = app
        .authorize(
            &person.username,
            &person.password,
            &crypto::secrets::random_token(),
            "s",
        )
        .await;
    assert_eq!(
        login.status,
        StatusCode::UNAUTHORIZED,
        "login after erasure"
    );

    // The booking keeps no link to the person: either the row is gone, or it stays for the
    // bank's books without the person's id and merchant text.
    if let Some(row) = app.store().transaction(&transaction_id).await.unwrap() {
        assert_eq!(row.user_id, None);
        assert_eq!(row.name_enc, None);
    }
    assert!(app.store().bank_user(&person.id).await.unwrap().is_none());
    assert!(app.store().account(&person.id).await.unwrap().is_none());

    // Someone else is untouched.
    let row = app
        .store()
        .transaction(&other_transaction)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.user_id.as_deref(), Some(other.id.as_str()));
    assert!(row.name_enc.is_some());
    assert_eq!(profile(&app, &other).await["givenName"], "Test");
    // A second pass finds nothing more to do.
    assert_eq!(app.run_erasure().await, 0);
}

async fn the_erasure_request_endpoint_accepts_and_repeats_calmly(app: TestApp) {
    let person = app.person().await;
    let response = app
        .call(
            Method::POST,
            "/bank/v1/users/self/erasure",
            Some(person.token()),
            None,
        )
        .await
        .expect(StatusCode::ACCEPTED);
    let first = response.json();
    assert!(first["requestId"].is_string(), "{first}");
    assert_eq!(first["alreadyPending"], false);
    let second = app
        .call(
            Method::POST,
            "/bank/v1/users/self/erasure",
            Some(person.token()),
            None,
        )
        .await
        .expect(StatusCode::ACCEPTED)
        .json();
    assert_eq!(second["alreadyPending"], true, "{second}");
    app.call(Method::DELETE, SELF, Some(person.token()), None)
        .await
        .expect(StatusCode::NO_CONTENT);
    // Three asks, one erasure.
    assert_eq!(app.run_erasure().await, 1);
    common::assert_unauthorized(app.get(SELF, person.token()).await, "after erasure");
}

async fn concurrent_registrations_register_once(app: TestApp) {
    let (_, token) = unregistered(&app).await;
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for i in 0..5 {
        let (app, token) = (Arc::clone(&app), token.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({ "consentGiven": i % 2 == 0 });
            app.call(Method::POST, "/bank/v1/users", Some(&token), Some(body))
                .await
        }));
    }
    let mut registered = 0;
    for task in tasks {
        let response = task.await.unwrap();
        match response.status {
            StatusCode::NO_CONTENT => registered += 1,
            StatusCode::CONFLICT => {
                response.expect_problem(StatusCode::CONFLICT);
            }
            other => panic!("unexpected {other}: {}", response.text()),
        }
    }
    assert_eq!(registered, 1);
    app.get(SELF, &token).await.expect(StatusCode::OK);
}

async fn concurrent_erasure_requests_make_one_request(app: TestApp) {
    let person = app.person().await;
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for _ in 0..30 {
        let (app, token) = (Arc::clone(&app), person.token().to_owned());
        tasks.push(tokio::spawn(async move {
            app.call(
                Method::POST,
                "/bank/v1/users/self/erasure",
                Some(&token),
                None,
            )
            .await
        }));
    }
    let mut ids = Vec::new();
    let mut new_requests = 0;
    for task in tasks {
        let body = task.await.unwrap().expect(StatusCode::ACCEPTED).json();
        if body["alreadyPending"] == false {
            new_requests += 1;
        }
        ids.push(body["requestId"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        new_requests, 1,
        "one request is new, the others find it pending"
    );
    assert!(
        ids.iter().all(|id| id == &ids[0]),
        "every answer names the same request: {ids:?}"
    );
    let requests = app.store().privacy_requests(&person.id).await.unwrap();
    assert_eq!(requests.iter().filter(|r| r.kind == "erasure").count(), 1);
    assert_eq!(app.run_erasure().await, 1);
}

examplebank_testkit::both_backends!(
    registration_succeeds_once,
    the_profile_shows_names_and_consent,
    withdrawn_consent_blocks_new_charges,
    rectified_names_and_email_show_in_the_profile,
    erasure_blocks_changes_then_removes_the_person,
    the_erasure_request_endpoint_accepts_and_repeats_calmly,
    concurrent_registrations_register_once,
);

/// One pending erasure request per person, even when the request is sent several times at
/// once: a partial unique index admits one pending erasure per person.
mod erasure_race {
    use examplebank_testkit::{Backend, TestApp};

    mod sqlite {
        use super::*;

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn concurrent_erasure_requests_make_one_request() {
            let app = TestApp::new(Backend::Sqlite).await.expect("sqlite app");
            super::super::concurrent_erasure_requests_make_one_request(app).await;
        }
    }

    mod postgres {
        use super::*;

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn concurrent_erasure_requests_make_one_request() {
            if let Some(app) = TestApp::new(Backend::Postgres).await {
                super::super::concurrent_erasure_requests_make_one_request(app).await;
            }
        }
    }
}
