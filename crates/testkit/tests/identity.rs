#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The built-in identity provider: sign-up, login, codes with PKCE, refresh rotation, password
//! change, revocation, userinfo, token shape and JWKS, on both backends.

mod common;

use axum::body::Body;
use common::{challenge, claims_of, header_of, location_params};
use examplebank_testkit::{TestApp, TestResponse, Tokens};
use http::{Method, Request, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;

const BASE_URL: &str = "http://examplebank.test";
const REDIRECT_URI: &str = "http://examplebank.test/callback";
const REWARDS_SECRET: &str = "test-rewards-client-secret";
/// Fields of the login form to replace (`Some`) or remove (`None`).
type Changes<'a> = Vec<(&'a str, Option<&'a str>)>;

const LOGIN_FAILED: &str = "The username or password is incorrect.";

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

fn signup_body(username: &str, password: &str) -> Value {
    json!({
        "username": username,
        "password": password,
        "givenName": "Test",
        "familyName": "Person",
        "email": format!("{username}@example.org"),
    })
}

/// Signs up a person and returns (username, password).
async fn account(app: &TestApp) -> (String, String) {
    let username = unique("u");
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    app.signup(&username, &password)
        .await
        .expect(StatusCode::CREATED);
    (username, password)
}

/// The standard login form fields, with some replaced (`Some`) or removed (`None`).
fn login_form(
    username: &str,
    password: &str,
    verifier: &str,
    changes: &[(&str, Option<&str>)],
) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = [
        ("response_type", "code".to_owned()),
        ("client_id", "simulator".to_owned()),
        ("redirect_uri", REDIRECT_URI.to_owned()),
        ("scope", "openid bank".to_owned()),
        ("state", "state-42".to_owned()),
        ("code_challenge", challenge(verifier)),
        ("code_challenge_method", "S256".to_owned()),
        ("username", username.to_owned()),
        ("password", password.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (name, value) in changes {
        fields.retain(|(k, _)| k != name);
        if let Some(value) = value {
            fields.push(((*name).to_owned(), (*value).to_owned()));
        }
    }
    fields
}

async fn post_login(app: &TestApp, fields: &[(String, String)]) -> TestResponse {
    let borrowed: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    app.post_form("/identity/v1/authorize", &borrowed, &[])
        .await
}

async fn get_login(app: &TestApp, fields: &[(String, String)]) -> TestResponse {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(
            fields
                .iter()
                .filter(|(k, _)| k != "username" && k != "password"),
        )
        .finish();
    let request = Request::builder()
        .method(Method::GET)
        .uri(format!("/identity/v1/authorize?{query}"))
        .body(Body::empty())
        .unwrap();
    app.send(request).await
}

fn tokens_from(body: &Value) -> Tokens {
    Tokens {
        access: body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned(),
        refresh: body["refresh_token"]
            .as_str()
            .expect("refresh_token")
            .to_owned(),
        id_token: body["id_token"].as_str().map(str::to_owned),
    }
}

async fn token_form(app: &TestApp, fields: &[(&str, &str)]) -> TestResponse {
    app.post_form("/identity/v1/token", fields, &[]).await
}

fn assert_oauth_error(response: TestResponse, status: StatusCode, error: &str, case: &str) {
    assert_eq!(response.status, status, "{case}: {}", response.text());
    let body = response.expect_problem(status);
    assert_eq!(body["error"], error, "{case}: {body}");
}

async fn userinfo_status(app: &TestApp, token: &str) -> StatusCode {
    app.get("/identity/v1/userinfo", token).await.status
}

async fn signup_creates_an_account_and_the_signup_page_is_html(app: TestApp) {
    let username = unique("new");
    let body = app
        .call(
            Method::POST,
            "/identity/v1/signup",
            None,
            Some(signup_body(&username, "violet-tangent-harbour")),
        )
        .await
        .expect(StatusCode::CREATED)
        .json();
    let id = body["userId"].as_str().expect("userId");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "userId {id}");
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(1),
        "only the id comes back: {body}"
    );
    // The new account can sign in, and its subject is the returned id.
    let tokens = app.login(&username, "violet-tangent-harbour").await;
    assert_eq!(claims_of(&tokens.access)["sub"], id);

    let page = app
        .send(
            Request::builder()
                .uri("/identity/v1/signup")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .expect(StatusCode::OK);
    assert!(page
        .header("content-type")
        .unwrap_or_default()
        .starts_with("text/html"));
    let html = page.text();
    assert!(
        html.contains("<form method=\"post\" action=\"/identity/v1/signup\""),
        "{html}"
    );
    for field in ["username", "password", "givenName", "familyName", "email"] {
        assert!(
            html.contains(&format!("name=\"{field}\"")),
            "field {field} missing"
        );
    }
}

async fn c24_unknown_signup_fields_are_refused_and_grant_no_admin(app: TestApp) {
    let username = unique("mallory");
    let password = "violet-tangent-harbour";
    for (name, value) in [
        ("role", json!("admin")),
        ("scope", json!("admin")),
        ("scope", json!("openid bank admin")),
    ] {
        let mut body = signup_body(&username, password);
        body[name] = value;
        let problem = app
            .call(Method::POST, "/identity/v1/signup", None, Some(body))
            .await
            .expect_problem(StatusCode::BAD_REQUEST);
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("unknown field"), "{name}: {problem}");
    }
    // The browser form refuses the smuggled field as well.
    let form = [
        ("username", username.as_str()),
        ("password", password),
        ("givenName", "M"),
        ("familyName", "X"),
        ("email", "m@example.org"),
        ("role", "admin"),
    ];
    let page = app.post_form("/identity/v1/signup", &form, &[]).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.text());

    // None of the refused requests created the account: the username is still free.
    let refused = post_login(
        &app,
        &login_form(&username, password, &crypto::secrets::random_token(), &[]),
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    app.call(
        Method::POST,
        "/identity/v1/signup",
        None,
        Some(signup_body(&username, password)),
    )
    .await
    .expect(StatusCode::CREATED);

    // Asking for admin at login does not grant it to a person.
    let verifier = crypto::secrets::random_token();
    let redirect = post_login(
        &app,
        &login_form(
            &username,
            password,
            &verifier,
            &[("scope", Some("openid bank admin"))],
        ),
    )
    .await;
    let code = TestApp::code_from(&redirect);
    let body = app
        .exchange(&code, &verifier)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(body["scope"], "openid bank");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let scope = claims_of(&token)["scope"].as_str().unwrap().to_owned();
    assert!(!scope.split(' ').any(|s| s == "admin"), "scope {scope}");

    // And the person's token cannot use the rewards write-back.
    app.call(
        Method::POST,
        "/bank/v1/users",
        Some(&token),
        Some(json!({ "consentGiven": true })),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    app.charge(&token, "Corner Shop", "groceries", json!("10.00"))
        .await
        .expect(StatusCode::NO_CONTENT);
    let list = app
        .get("/bank/v1/transactions", &token)
        .await
        .expect(StatusCode::OK)
        .json();
    let id = list[0]["transactionId"].as_str().unwrap().to_owned();
    let path = format!("/bank/v1/transactions/reward/{id}");
    let forbidden = app
        .call(
            Method::PUT,
            &path,
            Some(&token),
            Some(json!({ "pointsEarned": 1000 })),
        )
        .await;
    forbidden.expect_problem(StatusCode::FORBIDDEN);
    let row = app.store().transaction(&id).await.unwrap().unwrap();
    assert!(!row.processed && row.points_earned.is_none());
}

async fn weak_short_and_overlong_passwords_are_refused(app: TestApp) {
    let username = unique("pw");
    let too_long = "é".repeat(257);
    for bad in [
        "Zq8!mN2",
        too_long.as_str(),
        "password1",
        "12345678",
        "PASSWORD",
        "qwerty123",
    ] {
        let problem = app
            .call(
                Method::POST,
                "/identity/v1/signup",
                None,
                Some(signup_body(&username, bad)),
            )
            .await
            .expect_problem(StatusCode::UNPROCESSABLE_ENTITY);
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.starts_with("password"), "{problem}");
        assert!(
            !detail.contains(bad),
            "the password must not be echoed: {detail}"
        );
    }
    // The boundaries are accepted: 8 characters and 256 characters.
    app.signup(&username, "Zq8!mN2#")
        .await
        .expect(StatusCode::CREATED);
    app.signup(&unique("pw"), &"é".repeat(256))
        .await
        .expect(StatusCode::CREATED);
}

async fn usernames_are_unique_in_any_letter_case(app: TestApp) {
    let username = unique("Case.");
    app.signup(&username, "violet-tangent-harbour")
        .await
        .expect(StatusCode::CREATED);
    let problem = app
        .signup(&username.to_uppercase(), "another-fine-passphrase")
        .await
        .expect_problem(StatusCode::CONFLICT);
    assert_eq!(problem["type"], "urn:examplebank:problem:username-taken");
    app.signup(&username.to_lowercase(), "another-fine-passphrase")
        .await
        .expect_problem(StatusCode::CONFLICT);
    // The first password still works, typed in any letter case of the username.
    app.login(&username.to_lowercase(), "violet-tangent-harbour")
        .await;
}

async fn concurrent_signups_with_one_username_create_one_account(app: TestApp) {
    let username = unique("race");
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for i in 0..4 {
        let (app, username) = (Arc::clone(&app), username.clone());
        tasks.push(tokio::spawn(async move {
            let password = format!("violet-tangent-harbour-{i}");
            let response = app.signup(&username, &password).await;
            (password, response)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (password, response) = task.await.expect("task");
        match response.status {
            StatusCode::CREATED => winners.push(password),
            StatusCode::CONFLICT => {
                response.expect_problem(StatusCode::CONFLICT);
            }
            other => panic!("unexpected {other}: {}", response.text()),
        }
    }
    assert_eq!(winners.len(), 1, "one account per username");
    app.login(&username, &winners[0]).await;
}

async fn login_redirects_with_code_state_and_issuer(app: TestApp) {
    let (username, password) = account(&app).await;
    let verifier = crypto::secrets::random_token();
    let response = post_login(
        &app,
        &login_form(
            &username,
            &password,
            &verifier,
            &[("state", Some("s-Üé 1&2"))],
        ),
    )
    .await;
    let (base, params) = location_params(&response);
    assert_eq!(base, REDIRECT_URI);
    assert_eq!(params.get("state").map(String::as_str), Some("s-Üé 1&2"));
    assert_eq!(params.get("iss").map(String::as_str), Some(BASE_URL));
    assert!(!params.contains_key("error"), "{params:?}");
    let code = params.get("code").expect("code");
    assert!(code.len() >= 32, "code {code}");
    app.exchange(code, &verifier).await.expect(StatusCode::OK);

    // The login page itself (GET) shows a form carrying the request.
    let page = get_login(&app, &login_form("", "", &verifier, &[]))
        .await
        .expect(StatusCode::OK);
    assert!(page
        .header("content-type")
        .unwrap_or_default()
        .starts_with("text/html"));
    assert!(page.text().contains("name=\"code_challenge\""));
}

async fn wrong_password_and_unknown_user_look_the_same(app: TestApp) {
    let (username, _) = account(&app).await;
    let verifier = crypto::secrets::random_token();
    let wrong_password = post_login(
        &app,
        &login_form(&username, "not-the-password-1", &verifier, &[]),
    )
    .await;
    let unknown_user = post_login(
        &app,
        &login_form(&unique("ghost"), "not-the-password-1", &verifier, &[]),
    )
    .await;
    let malformed_user = post_login(
        &app,
        &login_form("a b", "not-the-password-1", &verifier, &[]),
    )
    .await;
    for (case, response) in [
        ("wrong password", &wrong_password),
        ("unknown user", &unknown_user),
        ("malformed user", &malformed_user),
    ] {
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{case}");
        assert!(response.header("location").is_none(), "{case}");
        assert!(
            response.text().contains(LOGIN_FAILED),
            "{case}: {}",
            response.text()
        );
        assert!(
            response
                .header("content-type")
                .unwrap_or_default()
                .starts_with("text/html"),
            "{case}"
        );
    }
    assert_eq!(wrong_password.text(), unknown_user.text());
    assert_eq!(wrong_password.text(), malformed_user.text());
}

async fn unknown_clients_and_unregistered_redirects_are_never_redirected(app: TestApp) {
    let (username, password) = account(&app).await;
    let verifier = crypto::secrets::random_token();
    let evil_dotdot = format!("{REDIRECT_URI}/../evil");
    let evil_suffix = format!("{REDIRECT_URI}/");
    let evil_query = format!("{REDIRECT_URI}?next=http://evil.example");
    let cases: Vec<(&str, Changes)> = vec![
        ("unknown client", vec![("client_id", Some("evil-app"))]),
        ("service client", vec![("client_id", Some("rewards"))]),
        ("missing client", vec![("client_id", None)]),
        (
            "foreign redirect",
            vec![("redirect_uri", Some("http://evil.example/callback"))],
        ),
        (
            "dot-dot redirect",
            vec![("redirect_uri", Some(evil_dotdot.as_str()))],
        ),
        (
            "host-extended redirect",
            vec![(
                "redirect_uri",
                Some("http://examplebank.test/callback.evil.com"),
            )],
        ),
        (
            "userinfo redirect",
            vec![(
                "redirect_uri",
                Some("http://examplebank.test@evil.example/callback"),
            )],
        ),
        (
            "trailing slash",
            vec![("redirect_uri", Some(evil_suffix.as_str()))],
        ),
        (
            "extra query",
            vec![("redirect_uri", Some(evil_query.as_str()))],
        ),
        ("missing redirect", vec![("redirect_uri", None)]),
    ];
    for (case, changes) in cases {
        let fields = login_form(&username, &password, &verifier, &changes);
        for (method, response) in [
            ("POST", post_login(&app, &fields).await),
            ("GET", get_login(&app, &fields).await),
        ] {
            assert_eq!(
                response.status,
                StatusCode::BAD_REQUEST,
                "{case} ({method}): {}",
                response.text()
            );
            assert!(
                response.header("location").is_none(),
                "{case} ({method}) must not redirect"
            );
            assert!(!response.text().contains("code="), "{case} ({method})");
        }
    }
}

async fn pkce_s256_is_required(app: TestApp) {
    let (username, password) = account(&app).await;
    let verifier = crypto::secrets::random_token();
    let cases: Vec<(&str, Changes)> = vec![
        (
            "no PKCE",
            vec![("code_challenge", None), ("code_challenge_method", None)],
        ),
        (
            "plain",
            vec![
                ("code_challenge", Some(verifier.as_str())),
                ("code_challenge_method", Some("plain")),
            ],
        ),
        ("method missing", vec![("code_challenge_method", None)]),
        ("challenge missing", vec![("code_challenge", None)]),
        ("short challenge", vec![("code_challenge", Some("abc"))]),
    ];
    for (case, changes) in cases {
        let response =
            post_login(&app, &login_form(&username, &password, &verifier, &changes)).await;
        let (base, params) = location_params(&response);
        assert_eq!(base, REDIRECT_URI, "{case}");
        assert_eq!(
            params.get("error").map(String::as_str),
            Some("invalid_request"),
            "{case}"
        );
        assert_eq!(
            params.get("state").map(String::as_str),
            Some("state-42"),
            "{case}"
        );
        assert!(
            !params.contains_key("code"),
            "{case}: no code may be issued"
        );
    }
}

async fn an_authorization_code_works_once_and_its_replay_revokes_the_session(app: TestApp) {
    let (username, password) = account(&app).await;
    let verifier = crypto::secrets::random_token();
    let code = TestApp::code_from(&app.authorize(&username, &password, &verifier, "s").await);
    let tokens = tokens_from(
        &app.exchange(&code, &verifier)
            .await
            .expect(StatusCode::OK)
            .json(),
    );
    assert_eq!(userinfo_status(&app, &tokens.access).await, StatusCode::OK);

    assert_oauth_error(
        app.exchange(&code, &verifier).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "replay",
    );
    // The replay ended the session the first exchange started.
    common::assert_unauthorized(
        app.get("/identity/v1/userinfo", &tokens.access).await,
        "access after replay",
    );
    assert_oauth_error(
        app.refresh(&tokens.refresh).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "refresh after replay",
    );
}

async fn a_code_is_bound_to_its_verifier_and_redirect(app: TestApp) {
    let (username, password) = account(&app).await;
    let login = |verifier: String| {
        let app = &app;
        let (username, password) = (username.clone(), password.clone());
        async move { TestApp::code_from(&app.authorize(&username, &password, &verifier, "s").await) }
    };
    let verifier = crypto::secrets::random_token();

    let code = login(verifier.clone()).await;
    let other = crypto::secrets::random_token();
    assert_oauth_error(
        app.exchange(&code, &other).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "wrong verifier",
    );
    // The failed attempt used the code up.
    assert_oauth_error(
        app.exchange(&code, &verifier).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "after failure",
    );

    let code = login(verifier.clone()).await;
    let fields = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT_URI),
        ("client_id", "simulator"),
    ];
    assert_oauth_error(
        token_form(&app, &fields).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "no verifier",
    );

    let code = login(verifier.clone()).await;
    let fields = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "http://examplebank.test/other"),
        ("client_id", "simulator"),
        ("code_verifier", verifier.as_str()),
    ];
    assert_oauth_error(
        token_form(&app, &fields).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "other redirect",
    );

    let unknown = crypto::secrets::random_token();
    assert_oauth_error(
        app.exchange(&unknown, &verifier).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "unknown code",
    );
}

async fn a_code_expires_after_five_minutes(app: TestApp) {
    let (username, password) = account(&app).await;
    let verifier = crypto::secrets::random_token();
    let code = TestApp::code_from(&app.authorize(&username, &password, &verifier, "s").await);
    app.clock.advance_secs(290);
    app.exchange(&code, &verifier).await.expect(StatusCode::OK);

    let code = TestApp::code_from(&app.authorize(&username, &password, &verifier, "s").await);
    app.clock.advance_secs(301);
    assert_oauth_error(
        app.exchange(&code, &verifier).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "expired code",
    );
}

async fn refresh_tokens_rotate_and_the_old_one_is_refused(app: TestApp) {
    let (username, password) = account(&app).await;
    let first = app.login(&username, &password).await;
    let second = tokens_from(
        &app.refresh(&first.refresh)
            .await
            .expect(StatusCode::OK)
            .json(),
    );
    assert_ne!(second.refresh, first.refresh);
    assert_ne!(second.access, first.access);
    assert_eq!(
        claims_of(&second.access)["sid"],
        claims_of(&first.access)["sid"],
        "same session"
    );
    assert_eq!(userinfo_status(&app, &second.access).await, StatusCode::OK);
    let third = tokens_from(
        &app.refresh(&second.refresh)
            .await
            .expect(StatusCode::OK)
            .json(),
    );
    assert_eq!(userinfo_status(&app, &third.access).await, StatusCode::OK);

    assert_oauth_error(
        app.refresh(&first.refresh).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "old token",
    );
    assert_oauth_error(
        app.refresh("not-a-refresh-token").await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "unknown",
    );
}

async fn reusing_a_rotated_refresh_token_revokes_its_family_only(app: TestApp) {
    let (username, password) = account(&app).await;
    let other_session = app.login(&username, &password).await;
    let first = app.login(&username, &password).await;
    let second = tokens_from(
        &app.refresh(&first.refresh)
            .await
            .expect(StatusCode::OK)
            .json(),
    );

    assert_oauth_error(
        app.refresh(&first.refresh).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "reuse",
    );
    assert_oauth_error(
        app.refresh(&second.refresh).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "successor",
    );
    common::assert_unauthorized(
        app.get("/identity/v1/userinfo", &second.access).await,
        "successor access",
    );
    common::assert_unauthorized(
        app.get("/identity/v1/userinfo", &first.access).await,
        "first access",
    );
    // Another login of the same person is a different family and lives on.
    assert_eq!(
        userinfo_status(&app, &other_session.access).await,
        StatusCode::OK
    );
    app.refresh(&other_session.refresh)
        .await
        .expect(StatusCode::OK);
}

/// BUG (both backends): a replay that arrives while the first exchange is between
/// `consume_auth_code` and `start_session` finds no `family_id` on the code yet, so it revokes
/// nothing and the session of the replayed code lives on. Declared in `mod bugs` below.
async fn one_code_exchanged_five_times_at_once_succeeds_once_and_its_session_is_revoked(
    app: TestApp,
) {
    let (username, password) = account(&app).await;
    let verifier = crypto::secrets::random_token();
    let code = TestApp::code_from(&app.authorize(&username, &password, &verifier, "s").await);
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let (app, code, verifier) = (Arc::clone(&app), code.clone(), verifier.clone());
        tasks.push(tokio::spawn(
            async move { app.exchange(&code, &verifier).await },
        ));
    }
    let mut successes = Vec::new();
    for task in tasks {
        let response = task.await.expect("task");
        match response.status {
            StatusCode::OK => successes.push(tokens_from(&response.json())),
            StatusCode::BAD_REQUEST => {
                assert_oauth_error(response, StatusCode::BAD_REQUEST, "invalid_grant", "replay");
            }
            other => panic!("unexpected {other}: {}", response.text()),
        }
    }
    assert_eq!(successes.len(), 1, "a code works once");
    // The code was replayed, so the session its first use started must be over, however the
    // requests interleaved.
    let won = &successes[0];
    common::assert_unauthorized(
        app.get("/identity/v1/userinfo", &won.access).await,
        "access of a replayed code",
    );
    assert_oauth_error(
        app.refresh(&won.refresh).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "refresh of a replayed code",
    );
}

async fn refresh_tokens_expire_after_thirty_days(app: TestApp) {
    let (username, password) = account(&app).await;
    let early = app.login(&username, &password).await;
    let late = app.login(&username, &password).await;
    app.clock.advance_secs(29 * 24 * 3600);
    let renewed = tokens_from(
        &app.refresh(&early.refresh)
            .await
            .expect(StatusCode::OK)
            .json(),
    );
    app.clock.advance_secs(24 * 3600 + 60);
    assert_oauth_error(
        app.refresh(&late.refresh).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "30 days old",
    );
    // A rotated token has a fresh lifetime.
    app.refresh(&renewed.refresh).await.expect(StatusCode::OK);
}

async fn a_refresh_token_works_only_for_its_own_client(app: TestApp) {
    let (username, password) = account(&app).await;
    let tokens = app.login(&username, &password).await;
    let fields = [
        ("grant_type", "refresh_token"),
        ("refresh_token", tokens.refresh.as_str()),
        ("client_id", "rewards"),
        ("client_secret", REWARDS_SECRET),
    ];
    assert_oauth_error(
        token_form(&app, &fields).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "other client",
    );
    // Presenting it elsewhere ended the session: the token is no longer usable by anyone.
    assert_oauth_error(
        app.refresh(&tokens.refresh).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "after misuse",
    );
    common::assert_unauthorized(
        app.get("/identity/v1/userinfo", &tokens.access).await,
        "access after misuse",
    );
}

async fn c9_one_refresh_token_sent_five_times_at_once_succeeds_once_and_revokes_the_family(
    app: TestApp,
) {
    let (username, password) = account(&app).await;
    let other_session = app.login(&username, &password).await;
    let tokens = app.login(&username, &password).await;
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let app = Arc::clone(&app);
        let refresh = tokens.refresh.clone();
        tasks.push(tokio::spawn(async move { app.refresh(&refresh).await }));
    }
    let mut successes = Vec::new();
    for task in tasks {
        let response = task.await.expect("task");
        match response.status {
            StatusCode::OK => successes.push(response.json()),
            StatusCode::BAD_REQUEST => {
                assert_oauth_error(response, StatusCode::BAD_REQUEST, "invalid_grant", "loser");
            }
            other => panic!("unexpected {other}: {}", response.text()),
        }
    }
    assert_eq!(successes.len(), 1, "exactly one refresh may succeed");
    let won = tokens_from(&successes[0]);
    assert_oauth_error(
        app.refresh(&won.refresh).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "winner's token",
    );
    common::assert_unauthorized(
        app.get("/identity/v1/userinfo", &won.access).await,
        "winner's access",
    );
    common::assert_unauthorized(
        app.get("/identity/v1/userinfo", &tokens.access).await,
        "original access",
    );
    assert_eq!(
        userinfo_status(&app, &other_session.access).await,
        StatusCode::OK
    );
}

async fn c11_changing_the_password_ends_every_session(app: TestApp) {
    let (username, password) = account(&app).await;
    let one = app.login(&username, &password).await;
    let two = app.login(&username, &password).await;
    let change =
        |current: &str, new: &str| json!({ "currentPassword": current, "newPassword": new });

    // Refusals change nothing.
    let wrong = app
        .call(
            Method::POST,
            "/identity/v1/password",
            Some(&one.access),
            Some(change("wrong-password-9", "violet-tangent-harbour")),
        )
        .await;
    wrong.expect_problem(StatusCode::FORBIDDEN);
    let weak = app
        .call(
            Method::POST,
            "/identity/v1/password",
            Some(&one.access),
            Some(change(&password, "password1")),
        )
        .await;
    weak.expect_problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(userinfo_status(&app, &one.access).await, StatusCode::OK);

    app.call(
        Method::POST,
        "/identity/v1/password",
        Some(&one.access),
        Some(change(&password, "violet-tangent-harbour")),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    for (case, tokens) in [("session one", &one), ("session two", &two)] {
        common::assert_unauthorized(app.get("/identity/v1/userinfo", &tokens.access).await, case);
        assert_oauth_error(
            app.refresh(&tokens.refresh).await,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            case,
        );
    }
    let verifier = crypto::secrets::random_token();
    let old = app.authorize(&username, &password, &verifier, "s").await;
    assert_eq!(
        old.status,
        StatusCode::UNAUTHORIZED,
        "the old password must fail"
    );
    let fresh = app.login(&username, "violet-tangent-harbour").await;
    assert_eq!(userinfo_status(&app, &fresh.access).await, StatusCode::OK);
}

async fn the_password_grant_is_not_supported(app: TestApp) {
    let (username, password) = account(&app).await;
    let fields = [
        ("grant_type", "password"),
        ("username", username.as_str()),
        ("password", password.as_str()),
        ("client_id", "simulator"),
    ];
    let response = token_form(&app, &fields).await;
    assert!(!response.text().contains("access_token"));
    assert_oauth_error(
        response,
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
        "password grant",
    );
    let fields = [("client_id", "simulator")];
    assert_oauth_error(
        token_form(&app, &fields).await,
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
        "no grant",
    );
    let discovery = app
        .send(
            Request::builder()
                .uri("/.well-known/openid-configuration")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    let grants = discovery["grant_types_supported"].as_array().unwrap();
    assert!(!grants.contains(&json!("password")), "{grants:?}");
}

async fn client_credentials_need_the_right_secret(app: TestApp) {
    let wrong = [
        ("grant_type", "client_credentials"),
        ("client_id", "rewards"),
        ("client_secret", "wrong-secret"),
    ];
    let response = token_form(&app, &wrong).await;
    assert!(response.header("www-authenticate").is_some());
    assert_oauth_error(
        response,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "wrong secret",
    );
    let missing = [
        ("grant_type", "client_credentials"),
        ("client_id", "rewards"),
    ];
    assert_oauth_error(
        token_form(&app, &missing).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "no secret",
    );
    let unknown = [
        ("grant_type", "client_credentials"),
        ("client_id", "nobody"),
        ("client_secret", REWARDS_SECRET),
    ];
    assert_oauth_error(
        token_form(&app, &unknown).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "unknown client",
    );
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode("rewards:wrong-secret");
    let response = app
        .post_form(
            "/identity/v1/token",
            &[("grant_type", "client_credentials")],
            &[("authorization", &format!("Basic {basic}"))],
        )
        .await;
    assert_oauth_error(
        response,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "wrong basic secret",
    );

    // The public app may not use the grant at all.
    let public = [
        ("grant_type", "client_credentials"),
        ("client_id", "simulator"),
    ];
    assert_oauth_error(
        token_form(&app, &public).await,
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
        "public client",
    );
    let too_much = [
        ("grant_type", "client_credentials"),
        ("client_id", "rewards"),
        ("client_secret", REWARDS_SECRET),
        ("scope", "rewards bank"),
    ];
    assert_oauth_error(
        token_form(&app, &too_much).await,
        StatusCode::BAD_REQUEST,
        "invalid_scope",
        "extra scope",
    );

    // The right secret, in the form or by Basic, gets a service token without a session.
    let right = [
        ("grant_type", "client_credentials"),
        ("client_id", "rewards"),
        ("client_secret", REWARDS_SECRET),
    ];
    let body = token_form(&app, &right).await.expect(StatusCode::OK).json();
    assert_eq!(body["scope"], "rewards");
    assert!(body.get("refresh_token").is_none(), "{body}");
    let claims = claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], "rewards");
    assert!(claims.get("sid").is_none(), "{claims}");
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("rewards:{REWARDS_SECRET}"));
    app.post_form(
        "/identity/v1/token",
        &[("grant_type", "client_credentials")],
        &[("authorization", &format!("Basic {basic}"))],
    )
    .await
    .expect(StatusCode::OK);
}

async fn revoking_a_token_ends_its_session(app: TestApp) {
    let (username, password) = account(&app).await;
    let revoke = |token: String| {
        let app = &app;
        async move {
            app.post_form(
                "/identity/v1/revoke",
                &[("token", token.as_str()), ("client_id", "simulator")],
                &[],
            )
            .await
        }
    };
    let by_refresh = app.login(&username, &password).await;
    let by_access = app.login(&username, &password).await;
    let untouched = app.login(&username, &password).await;

    revoke(by_refresh.refresh.clone())
        .await
        .expect(StatusCode::OK);
    assert_oauth_error(
        app.refresh(&by_refresh.refresh).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "revoked refresh",
    );
    common::assert_unauthorized(
        app.get("/identity/v1/userinfo", &by_refresh.access).await,
        "access of revoked refresh",
    );

    revoke(by_access.access.clone())
        .await
        .expect(StatusCode::OK);
    common::assert_unauthorized(
        app.get("/identity/v1/userinfo", &by_access.access).await,
        "revoked access",
    );
    assert_oauth_error(
        app.refresh(&by_access.refresh).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "refresh of revoked access",
    );

    // Unknown tokens are answered the same way (RFC 7009) and nothing else is touched.
    revoke(crypto::secrets::random_token())
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        userinfo_status(&app, &untouched.access).await,
        StatusCode::OK
    );
    app.refresh(&untouched.refresh).await.expect(StatusCode::OK);
}

async fn userinfo_returns_the_persons_names(app: TestApp) {
    let person = app.person().await;
    let body = app
        .get("/identity/v1/userinfo", person.token())
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(body["sub"], person.id.as_str());
    assert_eq!(body["preferred_username"], person.username.as_str());
    assert_eq!(body["given_name"], "Test");
    assert_eq!(body["family_name"], "Person");
    assert_eq!(body["email"], format!("{}@example.org", person.username));
    let anonymous = app
        .call(Method::GET, "/identity/v1/userinfo", None, None)
        .await;
    common::assert_unauthorized(anonymous, "no token");
}

async fn access_tokens_have_the_documented_shape(app: TestApp) {
    let (username, password) = account(&app).await;
    let verifier = crypto::secrets::random_token();
    let code = TestApp::code_from(&app.authorize(&username, &password, &verifier, "s").await);
    let response = app.exchange(&code, &verifier).await.expect(StatusCode::OK);
    assert_eq!(response.header("cache-control"), Some("no-store"));
    let body = response.json();
    assert_eq!(body["token_type"], "Bearer");
    let expires_in = body["expires_in"].as_i64().unwrap();
    assert!((1..=900).contains(&expires_in), "expires_in {expires_in}");
    let access = body["access_token"].as_str().unwrap();

    let header = header_of(access);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["kid"], app.services.signing.current().active().kid());
    for forbidden in ["jwk", "jku", "x5u", "x5c"] {
        assert!(header.get(forbidden).is_none(), "{header}");
    }

    let claims = claims_of(access);
    for name in [
        "iss",
        "aud",
        "sub",
        "scope",
        "client_id",
        "iat",
        "nbf",
        "exp",
        "jti",
        "sid",
    ] {
        assert!(claims.get(name).is_some(), "claim {name} missing: {claims}");
    }
    assert_eq!(claims["iss"], BASE_URL);
    assert_eq!(claims["aud"], "examplebank");
    assert_eq!(claims["client_id"], "simulator");
    assert_eq!(claims["scope"], "openid bank");
    let userinfo = app
        .get("/identity/v1/userinfo", access)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(claims["sub"], userinfo["sub"]);
    let (iat, nbf, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["nbf"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert!(exp > iat && exp - iat <= 900, "lifetime {}", exp - iat);
    assert!(nbf <= iat + 1);
    let now = {
        use domain::Clock as _;
        app.clock.now_secs()
    };
    assert!((iat - now).abs() <= 60, "iat {iat} now {now}");
    // No personal data rides in the token.
    let text = claims.to_string();
    assert!(
        !text.contains(&username) && !text.contains("example.org"),
        "{text}"
    );
    // A second token has a fresh jti.
    let again = app.login(&username, &password).await;
    assert_ne!(claims_of(&again.access)["jti"], claims["jti"]);
}

async fn the_jwks_publishes_the_signing_key(app: TestApp) {
    let response = app
        .send(
            Request::builder()
                .uri("/identity/v1/jwks")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .expect(StatusCode::OK);
    let jwks = response.json();
    assert_eq!(jwks, app.services.signing.current().jwks());
    let active = &app.services.signing.current().active().clone();
    let keys = jwks["keys"].as_array().expect("keys");
    let key = keys
        .iter()
        .find(|k| k["kid"] == active.kid())
        .expect("the active key is published");
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(
        key["x"],
        crypto::b64::encode(active.verifying_key().as_bytes())
    );
    for k in keys {
        assert!(k.get("d").is_none(), "private part published: {k}");
    }
    // A token the server issues verifies with what the JWKS publishes.
    let person = app.person().await;
    let verifier = crypto::jws::Verifier::from_jwks(&jwks).expect("usable JWKS");
    let now = {
        use domain::Clock as _;
        app.clock.now_secs()
    };
    let expectations = crypto::jws::Expectations {
        typ: "at+jwt",
        issuer: BASE_URL,
        audience: "examplebank",
        now,
        leeway: 5,
    };
    verifier
        .verify(person.token(), &expectations)
        .expect("verifies with the JWKS");

    let discovery = app
        .send(
            Request::builder()
                .uri("/.well-known/openid-configuration")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(discovery["issuer"], BASE_URL);
    assert_eq!(
        discovery["jwks_uri"],
        format!("{BASE_URL}/identity/v1/jwks")
    );
    assert_eq!(
        discovery["code_challenge_methods_supported"],
        json!(["S256"])
    );
}

examplebank_testkit::both_backends!(
    signup_creates_an_account_and_the_signup_page_is_html,
    c24_unknown_signup_fields_are_refused_and_grant_no_admin,
    weak_short_and_overlong_passwords_are_refused,
    usernames_are_unique_in_any_letter_case,
    concurrent_signups_with_one_username_create_one_account,
    login_redirects_with_code_state_and_issuer,
    wrong_password_and_unknown_user_look_the_same,
    unknown_clients_and_unregistered_redirects_are_never_redirected,
    pkce_s256_is_required,
    an_authorization_code_works_once_and_its_replay_revokes_the_session,
    a_code_is_bound_to_its_verifier_and_redirect,
    a_code_expires_after_five_minutes,
    refresh_tokens_rotate_and_the_old_one_is_refused,
    reusing_a_rotated_refresh_token_revokes_its_family_only,
    c9_one_refresh_token_sent_five_times_at_once_succeeds_once_and_revokes_the_family,
    refresh_tokens_expire_after_thirty_days,
    a_refresh_token_works_only_for_its_own_client,
    c11_changing_the_password_ends_every_session,
    the_password_grant_is_not_supported,
    client_credentials_need_the_right_secret,
    revoking_a_token_ends_its_session,
    userinfo_returns_the_persons_names,
    access_tokens_have_the_documented_shape,
    the_jwks_publishes_the_signing_key,
);

/// Races that once revealed a bug (a replayed code racing its first exchange), on both backends.
mod bugs {
    use examplebank_testkit::{Backend, TestApp};

    mod sqlite {
        use super::*;

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn one_code_exchanged_five_times_at_once_succeeds_once_and_its_session_is_revoked() {
            let app = TestApp::new(Backend::Sqlite).await.expect("sqlite app");
            super::super::one_code_exchanged_five_times_at_once_succeeds_once_and_its_session_is_revoked(app).await;
        }
    }

    mod postgres {
        use super::*;

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn one_code_exchanged_five_times_at_once_succeeds_once_and_its_session_is_revoked() {
            if let Some(app) = TestApp::new(Backend::Postgres).await {
                super::super::one_code_exchanged_five_times_at_once_succeeds_once_and_its_session_is_revoked(app).await;
            }
        }
    }
}
