//! Spoofing and denial-of-service defences in process: login throttling, signing-key
//! rotation with an overlap window, disabled accounts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use examplebank_testkit::TestApp;
use http::StatusCode;

async fn failed_logins_are_throttled_without_locking_anyone_out_for_good(app: TestApp) {
    let victim = app.person().await;
    let bystander = app.person().await;
    let verifier = crypto::secrets::random_token();
    // The default: five failures per account and address in 15 minutes.
    for _ in 0..5 {
        app.authorize(&victim.username, "not the password", &verifier, "s")
            .await
            .expect(StatusCode::UNAUTHORIZED);
    }
    let throttled = app
        .authorize(&victim.username, &victim.password, &verifier, "s")
        .await
        .expect(StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = throttled.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    assert!(throttled.text().contains("Too many failed sign-ins"));
    // Other accounts are unaffected.
    let other = app
        .authorize(&bystander.username, &bystander.password, &verifier, "s")
        .await;
    assert_eq!(other.status, StatusCode::SEE_OTHER);
    // Unknown accounts are throttled just the same (no enumeration through the throttle).
    for _ in 0..5 {
        app.authorize("nobody-here", "whatever pw", &verifier, "s")
            .await
            .expect(StatusCode::UNAUTHORIZED);
    }
    app.authorize("nobody-here", "whatever pw", &verifier, "s")
        .await
        .expect(StatusCode::TOO_MANY_REQUESTS);
    let entries = app.store().audit_entries(0, 1000).await.unwrap();
    assert!(entries.iter().any(|e| e.action == "login.throttled"));
}

#[test]
fn the_throttle_lets_the_owner_in_again_after_the_window() {
    // The limiter's arithmetic over time is covered by web::ratelimit and identity::throttle
    // unit tests; this checks the window used by default is finite (no permanent lockout).
    let limiter = web::ratelimit::RateLimiter::new(5, std::time::Duration::from_secs(900));
    let start = std::time::Instant::now();
    for _ in 0..5 {
        limiter.check_at("k", start).unwrap();
    }
    assert!(limiter.check_at("k", start).is_err());
    assert!(limiter
        .check_at("k", start + std::time::Duration::from_secs(901))
        .is_ok());
}

/// `examplebank keys rotate-signing` beside a running server: old tokens keep verifying, new
/// tokens carry the new key, and the JWKS publishes both.
async fn signing_key_rotation_has_an_overlap_window(app: TestApp) {
    let person = app.person().await;
    let old_kid = app.services.signing.current().active().kid().to_owned();
    let new_kid = crypto::keyring::SigningKeyRing::rotate(
        &app.keys_dir().join("signing"),
        app.clock_now() / 1_000_000,
    )
    .unwrap();
    assert!(app.services.reload_signing_keys());
    app.get("/bank/v1/users/self", person.token())
        .await
        .expect(StatusCode::OK);
    let fresh = app.login(&person.username, &person.password).await;
    let header: serde_json::Value = serde_json::from_slice(
        &crypto::b64::decode(fresh.access.split('.').next().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], new_kid.as_str());
    app.get("/bank/v1/users/self", &fresh.access)
        .await
        .expect(StatusCode::OK);
    let jwks = app
        .call(http::Method::GET, "/identity/v1/jwks", None, None)
        .await
        .json();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(
        kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()),
        "{kids:?}"
    );
}

/// A disabled account's tokens are refused at once, and re-enabling lets the person back in.
async fn tokens_of_disabled_accounts_are_refused_at_once(app: TestApp) {
    let person = app.person().await;
    let admin = app.admin_token().await;
    let path = format!("/admin/v1/accounts/{}/status", person.id);
    app.call(
        http::Method::PUT,
        &path,
        Some(person.token()),
        Some(serde_json::json!({"status": "disabled"})),
    )
    .await
    .expect_problem(StatusCode::FORBIDDEN);
    // A login that got its code before the account was disabled, exchanged after.
    let pending_verifier = crypto::secrets::random_token();
    let pending_code = TestApp::code_from(
        &app.authorize(&person.username, &person.password, &pending_verifier, "s")
            .await,
    );
    app.call(
        http::Method::PUT,
        &path,
        Some(&admin),
        Some(serde_json::json!({"status": "disabled"})),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let refused = app
        .exchange(&pending_code, &pending_verifier)
        .await
        .expect_problem(StatusCode::BAD_REQUEST);
    assert_eq!(refused["error"], "invalid_grant");
    assert!(refused.get("access_token").is_none());
    app.get("/bank/v1/users/self", person.token())
        .await
        .expect_problem(StatusCode::UNAUTHORIZED);
    app.refresh(&person.tokens.refresh)
        .await
        .expect_problem(StatusCode::BAD_REQUEST);
    let verifier = crypto::secrets::random_token();
    app.authorize(&person.username, &person.password, &verifier, "s")
        .await
        .expect(StatusCode::UNAUTHORIZED);
    app.call(
        http::Method::PUT,
        &path,
        Some(&admin),
        Some(serde_json::json!({"status": "active"})),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    app.login(&person.username, &person.password).await;
    // The refused code was used up with the refusal; re-enabling does not revive it.
    app.exchange(&pending_code, &pending_verifier)
        .await
        .expect_problem(StatusCode::BAD_REQUEST);
    let audit = app
        .get("/admin/v1/audit", &admin)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(audit["intact"], true);
}

examplebank_testkit::both_backends!(
    failed_logins_are_throttled_without_locking_anyone_out_for_good,
    signing_key_rotation_has_an_overlap_window,
    tokens_of_disabled_accounts_are_refused_at_once,
);

#[tokio::test]
async fn per_person_rate_limit_answers_429_with_retry_after() {
    let app = TestApp::with_person_limit(examplebank_testkit::Backend::Sqlite, 5)
        .await
        .unwrap();
    let person = app.person().await;
    let other = app.person().await;
    // Registration in `person()` spent one request of each person's allowance.
    for _ in 0..4 {
        app.get("/bank/v1/users/self", person.token())
            .await
            .expect(StatusCode::OK);
    }
    let refused = app.get("/bank/v1/users/self", person.token()).await;
    let retry = refused.header("retry-after").map(str::to_owned);
    let limit = refused.header("ratelimit-limit").map(str::to_owned);
    let body = refused.expect_problem(StatusCode::TOO_MANY_REQUESTS);
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("too many requests"));
    assert!(retry.unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(limit.as_deref(), Some("5"));
    // Someone else is not affected.
    app.get("/bank/v1/users/self", other.token())
        .await
        .expect(StatusCode::OK);
}
