#![allow(clippy::unwrap_used, clippy::expect_used)]
//! One error format from every layer (malformed JSON, content types, unknown routes and
//! methods, oversized bodies), the protective headers and request ids, on both backends.

mod common;

use axum::body::Body;
use common::{assert_security_headers, raw};
use examplebank_testkit::TestApp;
use http::{Method, Request, StatusCode};
use serde_json::json;

async fn malformed_json_is_a_400_problem(app: TestApp) {
    let person = app.person().await;
    let token = Some(person.token());
    let cases: [(&str, &str, Option<&str>); 7] = [
        ("/bank/v1/users", r#"{"consentGiven": tru"#, token),
        (
            "/bank/v1/users",
            r#"{"consentGiven": true, "consentGiven": false}"#,
            token,
        ),
        (
            "/bank/v1/transactions",
            r#"{"transactionName":"canary-secret","category":"other","amount":"1"} trailing"#,
            token,
        ),
        ("/bank/v1/transactions", "", token),
        (
            "/bank/v1/transactions",
            r#"{"transactionName":"canary-secret","#,
            token,
        ),
        (
            "/identity/v1/signup",
            r#"{"username": "canary-secret""#,
            None,
        ),
        ("/bank/v1/points/redemptions", "[1,", token),
    ];
    for (path, body, token) in cases {
        let response = raw(
            &app,
            Method::POST,
            path,
            token,
            Some("application/json"),
            body.to_owned(),
            &[("idempotency-key", "k1")],
        )
        .await;
        let text = response.text();
        assert!(
            !text.contains("canary-secret"),
            "{path}: the input is echoed: {text}"
        );
        let problem = response.expect_problem(StatusCode::BAD_REQUEST);
        assert_eq!(
            problem["type"], "urn:examplebank:problem:bad-request",
            "{path}: {problem}"
        );
    }
    assert!(
        app.get("/bank/v1/transactions", person.token())
            .await
            .expect(StatusCode::OK)
            .json()
            == json!([])
    );
}

async fn wrong_content_types_are_415_problems(app: TestApp) {
    let person = app.person().await;
    let token = Some(person.token());
    let json_text =
        json!({ "transactionName": "Shop", "category": "other", "amount": "1.00" }).to_string();
    let cases: [(&str, Option<&str>, Option<&str>); 7] = [
        ("/bank/v1/transactions", token, Some("text/plain")),
        ("/bank/v1/transactions", token, None),
        (
            "/bank/v1/transactions",
            token,
            Some("application/x-www-form-urlencoded"),
        ),
        ("/bank/v1/users", token, Some("text/plain")),
        ("/identity/v1/signup", None, Some("text/plain")),
        ("/identity/v1/password", token, Some("text/plain")),
        ("/identity/v1/token", None, Some("application/json")),
    ];
    for (path, token, content_type) in cases {
        let response = raw(
            &app,
            Method::POST,
            path,
            token,
            content_type,
            json_text.clone(),
            &[],
        )
        .await;
        let problem = response.expect_problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(
            problem["type"], "urn:examplebank:problem:unsupported-media-type",
            "{path} {content_type:?}"
        );
    }
    assert!(
        app.get("/bank/v1/transactions", person.token())
            .await
            .expect(StatusCode::OK)
            .json()
            == json!([])
    );
    // The same body as JSON goes through.
    raw(
        &app,
        Method::POST,
        "/bank/v1/transactions",
        token,
        Some("application/json; charset=utf-8"),
        json_text,
        &[],
    )
    .await
    .expect(StatusCode::NO_CONTENT);
}

async fn unknown_routes_are_404_problems(app: TestApp) {
    let person = app.person().await;
    for path in [
        "/nope",
        "/bank/v1/nothing",
        "/bank/v2/transactions",
        "/identity/v1/",
        "/bank/v1/users/self/extra/deep",
    ] {
        for token in [None, Some(person.token())] {
            let problem = app
                .call(Method::GET, path, token, None)
                .await
                .expect_problem(StatusCode::NOT_FOUND);
            assert_eq!(
                problem["type"], "urn:examplebank:problem:not-found",
                "{path}"
            );
        }
    }
}

async fn wrong_methods_are_405_problems(app: TestApp) {
    let person = app.person().await;
    for (method, path) in [
        (Method::PATCH, "/bank/v1/users/self"),
        (Method::DELETE, "/bank/v1/transactions"),
        (Method::GET, "/identity/v1/token"),
        (Method::PUT, "/identity/v1/jwks"),
        (Method::GET, "/bank/v1/points/redemptions"),
    ] {
        let response = app
            .call(method.clone(), path, Some(person.token()), Some(json!({})))
            .await;
        assert!(
            response.header("allow").is_some(),
            "{method} {path}: no Allow header"
        );
        let problem = response.expect_problem(StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(
            problem["type"], "urn:examplebank:problem:method-not-allowed",
            "{method} {path}"
        );
    }
}

async fn bodies_over_64_kib_are_413_problems(app: TestApp) {
    let person = app.person().await;
    let big = "x".repeat(70 * 1024);
    let charge =
        json!({ "transactionName": big, "category": "other", "amount": "1.00" }).to_string();
    let signup = json!({ "username": "big", "password": big, "givenName": "A", "familyName": "B", "email": "a@b.co" }).to_string();
    let form = format!("grant_type=refresh_token&client_id=simulator&refresh_token={big}");
    let length = charge.len().to_string();
    let cases: [(&str, Option<&str>, &str, &str, bool); 5] = [
        (
            "/bank/v1/transactions",
            Some(person.token()),
            "application/json",
            &charge,
            true,
        ),
        (
            "/bank/v1/transactions",
            Some(person.token()),
            "application/json",
            &charge,
            false,
        ),
        (
            "/bank/v1/users",
            Some(person.token()),
            "application/json",
            &charge,
            false,
        ),
        (
            "/identity/v1/signup",
            None,
            "application/json",
            &signup,
            false,
        ),
        (
            "/identity/v1/token",
            None,
            "application/x-www-form-urlencoded",
            &form,
            false,
        ),
    ];
    for (path, token, content_type, body, with_length) in cases {
        let mut extra = Vec::new();
        if with_length {
            extra.push(("content-length", length.as_str()));
        }
        let response = raw(
            &app,
            Method::POST,
            path,
            token,
            Some(content_type),
            body.to_owned(),
            &extra,
        )
        .await;
        assert!(
            !response.text().contains("xxxxxxxx"),
            "{path}: the body is echoed"
        );
        let problem = response.expect_problem(StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            problem["type"], "urn:examplebank:problem:too-large",
            "{path}"
        );
    }
    assert!(
        app.get("/bank/v1/transactions", person.token())
            .await
            .expect(StatusCode::OK)
            .json()
            == json!([])
    );
    // Just under the limit is read (and then judged on its content).
    let near =
        json!({ "transactionName": "y".repeat(60 * 1024), "category": "other", "amount": "1.00" });
    app.call(
        Method::POST,
        "/bank/v1/transactions",
        Some(person.token()),
        Some(near),
    )
    .await
    .expect_problem(StatusCode::UNPROCESSABLE_ENTITY);
}

async fn security_headers_are_on_every_response(app: TestApp) {
    let person = app.person().await;
    let ok = app
        .get("/bank/v1/users/self", person.token())
        .await
        .expect(StatusCode::OK);
    assert_security_headers(&ok, "JSON 200");
    let unauthorized = app
        .call(Method::GET, "/bank/v1/users/self", None, None)
        .await;
    assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED);
    assert_security_headers(&unauthorized, "401 problem");
    let not_found = app.call(Method::GET, "/nope", None, None).await;
    assert_eq!(not_found.status, StatusCode::NOT_FOUND);
    assert_security_headers(&not_found, "404 problem");
    let invalid = app
        .charge(person.token(), "Shop", "casino", json!("1.00"))
        .await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_security_headers(&invalid, "422 problem");
    let page = app
        .send(
            Request::builder()
                .uri("/identity/v1/signup")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .expect(StatusCode::OK);
    assert_security_headers(&page, "HTML page");
    let login_failed = app
        .authorize(
            &person.username,
            "wrong-password-1",
            &crypto::secrets::random_token(),
            "s",
        )
        .await;
    assert_eq!(login_failed.status, StatusCode::UNAUTHORIZED);
    assert_security_headers(&login_failed, "HTML 401");
    let token = app
        .refresh(&person.tokens.refresh)
        .await
        .expect(StatusCode::OK);
    assert_security_headers(&token, "token response");
    assert_eq!(ok.header("x-frame-options"), Some("DENY"));
}

async fn request_ids_are_echoed_or_made(app: TestApp) {
    let send = |id: Option<&str>, path: &str| {
        let mut builder = Request::builder().uri(path);
        if let Some(id) = id {
            builder = builder.header("x-request-id", id);
        }
        app.send(builder.body(Body::empty()).unwrap())
    };
    for path in ["/healthz", "/nope", "/bank/v1/users/self"] {
        let echoed = send(Some("test-request-0123"), path).await;
        assert_eq!(
            echoed.header("x-request-id"),
            Some("test-request-0123"),
            "{path}"
        );
    }
    let first = send(None, "/healthz").await;
    let second = send(None, "/healthz").await;
    let (a, b) = (
        first.header("x-request-id").unwrap(),
        second.header("x-request-id").unwrap(),
    );
    assert!(!a.is_empty() && a != b, "{a} {b}");
    // Ids that could smuggle text into logs are replaced, not echoed.
    let long = "a".repeat(65);
    for bad in ["has space", "semi;colon", long.as_str()] {
        let response = send(Some(bad), "/healthz").await;
        let id = response.header("x-request-id").unwrap();
        assert!(!id.is_empty() && id != bad, "{bad:?} was echoed");
    }
}

examplebank_testkit::both_backends!(
    malformed_json_is_a_400_problem,
    wrong_content_types_are_415_problems,
    unknown_routes_are_404_problems,
    wrong_methods_are_405_problems,
    bodies_over_64_kib_are_413_problems,
    security_headers_are_on_every_response,
    request_ids_are_echoed_or_made,
);
