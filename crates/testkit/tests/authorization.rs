//! Elevation of privilege: every route in the route table, called with no token, a person's
//! token, an administrator's token, the rewards service's token, and another person's token.
//! Deny by default: what the table does not open is refused; nobody reaches another's data.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use examplebank::routes::{Access, ROUTES};
use examplebank_testkit::TestApp;
use http::{Method, StatusCode};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Nobody,
    Owner,
    Admin,
    Service,
    OtherPerson,
}

fn allowed(access: Access, caller: Caller) -> bool {
    match (access, caller) {
        (Access::Public, _) => true,
        (_, Caller::Nobody) => false,
        (Access::Person, Caller::Owner | Caller::OtherPerson) => true,
        (Access::Person, _) => false,
        (Access::Account, Caller::Service) => false,
        (Access::Account, _) => true,
        (Access::Admin, Caller::Admin) => true,
        (Access::Admin, _) => false,
        (Access::RewardsOrAdmin, Caller::Admin | Caller::Service) => true,
        (Access::RewardsOrAdmin, _) => false,
        // The matrix's service token is the rewards client's; the internal routes need the
        // `standing` or `forget` client, which tests/split.rs uses against real processes.
        (Access::ServiceStanding | Access::ServiceForget, _) => false,
    }
}

/// A body that passes each route's input checks, so an allowed call is judged on access.
fn body_for(method: &str, path: &str) -> Option<Value> {
    match (method, path) {
        ("POST", "/bank/v1/users") => Some(json!({"consentGiven": true})),
        ("PUT", "/bank/v1/users/self") => Some(json!({"consentGiven": true})),
        ("PUT", "/bank/v1/users/self/consents/{purpose}") => Some(json!({"granted": true})),
        ("POST", "/bank/v1/transactions") => {
            Some(json!({"transactionName": "Shop", "category": "other", "amount": "1.00"}))
        }
        ("POST", "/bank/v1/points/redemptions") => Some(json!({"points": 1})),
        ("PUT", "/bank/v1/transactions/reward/{id}") => Some(json!({"pointsEarned": 1})),
        ("POST", "/bank/v1/transactions/rewards") => Some(json!({"rewards": [
            {"transactionId": "00000000-0000-7000-8000-000000000000", "pointsEarned": 1}
        ]})),
        ("PUT", "/admin/v1/reward-rules/{category}") => Some(json!({"pointsPerUnit": 1})),
        ("PUT", "/admin/v1/accounts/{id}/status") => Some(json!({"status": "active"})),
        ("POST", "/identity/v1/password") => {
            Some(json!({"currentPassword": "x", "newPassword": "y"}))
        }
        ("POST", "/identity/v1/signup") => Some(json!({})),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_kind_of_caller_as_the_table_says() {
    let app = TestApp::new(examplebank_testkit::Backend::Sqlite)
        .await
        .unwrap();
    let owner = app.person().await;
    let other = app.person().await;
    let bystander = app.person().await;
    app.charge(owner.token(), "Owner Secret Shop", "fuel", json!("12.00"))
        .await
        .expect(StatusCode::NO_CONTENT);
    let owner_tx = app.get("/bank/v1/transactions", owner.token()).await.json()[0]["transactionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let admin = app.admin_token().await;
    let service = app.service_token().await;
    let mut checked = 0;
    let mut bodies_refused = 0;
    for route in ROUTES {
        let path = route
            .path
            .replace("{purpose}", "analytics")
            .replace("{category}", "fuel")
            .replace("{file}", "app.css")
            .replace("/reward/{id}", &format!("/reward/{owner_tx}"))
            .replace("/transactions/{id}", &format!("/transactions/{owner_tx}"))
            .replace("/accounts/{id}", &format!("/accounts/{}", bystander.id))
            .replace("/users/{id}", &format!("/users/{}", owner.id))
            .replace("/people/{id}", &format!("/people/{}", owner.id));
        for caller in [
            Caller::Nobody,
            Caller::Service,
            Caller::Admin,
            Caller::OtherPerson,
            Caller::Owner,
        ] {
            let token = match caller {
                Caller::Nobody => None,
                Caller::Owner => Some(owner.token()),
                Caller::OtherPerson => Some(other.token()),
                Caller::Admin => Some(admin.as_str()),
                Caller::Service => Some(service.as_str()),
            };
            let method = Method::from_bytes(route.method.as_bytes()).unwrap();
            let response = app
                .call(method, &path, token, body_for(route.method, route.path))
                .await;
            let refused = matches!(
                response.status,
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
            );
            let expected = allowed(route.access, caller);
            assert_eq!(
                !refused,
                expected,
                "{} {} as {caller:?}: got {} {}",
                route.method,
                route.path,
                response.status,
                response.text()
            );
            assert!(
                !response.status.is_server_error(),
                "{} {path} as {caller:?}: {}",
                route.method,
                response.status
            );
            if refused {
                assert_eq!(
                    response.header("content-type"),
                    Some("application/problem+json")
                );
            }
            // A caller without the right learns nothing about the route's input checks: a body
            // that every check would refuse (not JSON, and malformed) gets the same refusal.
            if refused && body_for(route.method, route.path).is_some() {
                let mut request = http::Request::builder()
                    .method(route.method)
                    .uri(&path)
                    .header(http::header::CONTENT_TYPE, "text/plain");
                if let Some(token) = token {
                    request =
                        request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
                }
                let bad = app
                    .send(
                        request
                            .body(axum::body::Body::from("{\"points\": tru"))
                            .unwrap(),
                    )
                    .await;
                assert_eq!(
                    bad.status,
                    response.status,
                    "{} {path} as {caller:?} with a bad body: {}",
                    route.method,
                    bad.text()
                );
                bodies_refused += 1;
            }
            if response.status == StatusCode::UNAUTHORIZED {
                assert!(
                    response.header("www-authenticate").is_some(),
                    "{} {path}",
                    route.method
                );
            }
            // Nobody but the owner ever sees the owner's data.
            if caller != Caller::Owner {
                let text = response.text();
                assert!(
                    !text.contains("Owner Secret Shop"),
                    "{} {path} as {caller:?} leaked the merchant",
                    route.method
                );
                assert!(
                    !text.contains(&owner.username),
                    "{} {path} as {caller:?} leaked the username",
                    route.method
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, ROUTES.len() * 5);
    assert!(
        bodies_refused >= 20,
        "{bodies_refused} refusals checked with a bad body"
    );
    // Another person's transaction is simply not there for them (C17).
    app.get(&format!("/bank/v1/transactions/{owner_tx}"), other.token())
        .await
        .expect_problem(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_unknown_route_is_not_found_for_everyone() {
    let app = TestApp::new(examplebank_testkit::Backend::Sqlite)
        .await
        .unwrap();
    let admin = app.admin_token().await;
    for path in [
        "/bank/v1/admin",
        "/admin/v1/users",
        "/bank/v2/transactions",
        "/identity/v1/admin",
    ] {
        app.call(Method::GET, path, Some(&admin), None)
            .await
            .expect_problem(StatusCode::NOT_FOUND);
    }
}

/// PostgreSQL cannot store a NUL byte in text: such input must be refused as bad input (404 for
/// an id that names nothing, an OAuth error for a parameter), never reach the database as a 500.
async fn nul_bytes_in_paths_and_parameters_are_refused_not_500(app: TestApp) {
    let person = app.person().await;
    let admin = app.admin_token().await;
    app.get("/bank/v1/transactions/%00", person.token())
        .await
        .expect_problem(StatusCode::NOT_FOUND);
    app.get("/bank/v1/transactions/a%00b", person.token())
        .await
        .expect_problem(StatusCode::NOT_FOUND);
    app.call(
        Method::PUT,
        "/bank/v1/transactions/reward/%00",
        Some(&admin),
        Some(json!({"pointsEarned": 1})),
    )
    .await
    .expect_problem(StatusCode::NOT_FOUND);
    app.call(
        Method::PUT,
        "/admin/v1/accounts/%00/status",
        Some(&admin),
        Some(json!({"status": "active"})),
    )
    .await
    .expect_problem(StatusCode::NOT_FOUND);
    let verifier = crypto::secrets::random_token();
    let challenge = crypto::b64::encode(&crypto::secrets::sha256(verifier.as_bytes()));
    let fields = [
        ("response_type", "code"),
        ("client_id", "simulator"),
        ("redirect_uri", "http://examplebank.test/callback"),
        ("scope", "openid bank"),
        ("state", "s"),
        ("nonce", "a\0b"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("username", person.username.as_str()),
        ("password", person.password.as_str()),
    ];
    let response = app.post_form("/identity/v1/authorize", &fields, &[]).await;
    assert_eq!(
        response.status,
        StatusCode::SEE_OTHER,
        "{}",
        response.text()
    );
    assert!(response
        .header("location")
        .unwrap()
        .contains("error=invalid_request"));
}

examplebank_testkit::both_backends!(nul_bytes_in_paths_and_parameters_are_refused_not_500);
