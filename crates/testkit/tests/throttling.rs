//! Login throttling and the per-person rate limit, in process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use examplebank_testkit::TestApp;
use http::StatusCode;

async fn failed_logins_are_throttled_without_locking_anyone_out_for_good(app: TestApp) {
    let victim = app.person().await;
    let bystander = app.person().await;
    let verifier = crypto::secrets::random_token();
    // The default: five failures per account and address in 15 minutes.
    for _ in 0..5 {
        app.authorize(&victim.username, "not the password", &verifier, "s").await.expect(StatusCode::UNAUTHORIZED);
    }
    let throttled = app.authorize(&victim.username, &victim.password, &verifier, "s").await.expect(StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = throttled.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    assert!(throttled.text().contains("Too many failed sign-ins"));
    // Other accounts are unaffected.
    let other = app.authorize(&bystander.username, &bystander.password, &verifier, "s").await;
    assert_eq!(other.status, StatusCode::SEE_OTHER);
    // Unknown accounts are throttled just the same (no enumeration through the throttle).
    for _ in 0..5 {
        app.authorize("nobody-here", "whatever pw", &verifier, "s").await.expect(StatusCode::UNAUTHORIZED);
    }
    app.authorize("nobody-here", "whatever pw", &verifier, "s").await.expect(StatusCode::TOO_MANY_REQUESTS);
    let entries = app.store().audit_entries(0, 1000).await.unwrap();
    assert!(entries.iter().any(|e| e.action == "login.throttled"));
}

examplebank_testkit::both_backends!(failed_logins_are_throttled_without_locking_anyone_out_for_good);

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
    assert!(limiter.check_at("k", start + std::time::Duration::from_secs(901)).is_ok());
}
