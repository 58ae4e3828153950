//! An external identity provider instead of the built-in identity role (issue 6): a second
//! examplebank process plays the outside provider, with its own issuer, keys and database;
//! the bank runs `--roles users,transactions,rewards,erasure,ui` on PostgreSQL with
//! `oidc_issuer`, `oidc_jwks_url`, `oidc_audience` and a scope map, and accepts the
//! provider's tokens. The provider's JWKS is fetched once at start, again when a token names a
//! key id the bank has not seen (a signing-key rotation at the provider), and never more than
//! once per cool-down however many unknown key ids arrive.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::pg::{get_json, get_status, http, register, signed_in_person, with_db, TestDb};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

/// How many times the provider served its JWKS, read from its own /metrics.
async fn jwks_served(http: &reqwest::Client, provider: &str) -> u64 {
    let text = http
        .get(format!("{provider}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("examplebank_http_requests_total{")
                && l.contains("route=\"/identity/v1/jwks\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_of_an_external_provider_are_accepted_with_cached_keys() {
    with_db("extidp", |db| async move { run(&db).await }).await;
}

async fn run(db: &TestDb) {
    let http = http();
    let root = tempfile::tempdir().unwrap();
    // The outside provider: its own SQLite database, keys and issuer (its own URL).
    let provider_dir = root.path().join("provider");
    std::fs::create_dir_all(&provider_dir).unwrap();
    let provider = common::start(
        &provider_dir,
        &["--roles", "all"],
        &[
            ("EXAMPLEBANK_RATE_LIMIT_PER_ADDRESS_PER_MINUTE", "1000000"),
            ("EXAMPLEBANK_LOGIN_FAILURES_PER_ADDRESS", "1000000"),
        ],
    );
    let issuer = provider.url.clone();

    let bank_dir = root.path().join("bank");
    std::fs::create_dir_all(&bank_dir).unwrap();
    let jwks_url = format!("{issuer}/identity/v1/jwks");
    let master = format!("m1:{}", crypto::b64::encode(&[9u8; 32]));
    let bank = common::start(
        &bank_dir,
        &["--roles", "users,transactions,rewards,erasure,ui"],
        &[
            ("EXAMPLEBANK_DATABASE_URL", db.url.as_str()),
            ("EXAMPLEBANK_MASTER_KEY", master.as_str()),
            ("EXAMPLEBANK_OIDC_ISSUER", issuer.as_str()),
            ("EXAMPLEBANK_OIDC_JWKS_URL", jwks_url.as_str()),
            ("EXAMPLEBANK_OIDC_AUDIENCE", "examplebank"),
            // The provider's names map to ours; `openid` is left out on purpose.
            ("EXAMPLEBANK_OIDC_SCOPE_MAP", "bank=bank,admin=admin"),
            ("EXAMPLEBANK_OIDC_JWKS_COOLDOWN_SECONDS", "8"),
        ],
    );
    let base = bank.url.clone();
    let fetched_at_start = Instant::now();
    assert_eq!(
        jwks_served(&http, &issuer).await,
        1,
        "the bank fetched the keys once at start"
    );

    // A person of the provider registers at the bank, is charged and earns points.
    let (user_id, token) = signed_in_person(&http, &issuer, &issuer, "ext").await;
    register(&http, &base, &token).await;
    for i in 0..5 {
        let r = http
            .post(format!("{base}/bank/v1/transactions"))
            .bearer_auth(&token)
            .json(&json!({"transactionName": format!("Ext shop {i}"), "category": "groceries", "amount": "10.00"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "charge {i}");
    }
    let profile: Value = get_json(&http, &format!("{base}/bank/v1/users/self"), &token).await;
    assert_eq!(profile["userId"], json!(user_id));
    let started = Instant::now();
    loop {
        let points: Value = get_json(&http, &format!("{base}/bank/v1/points"), &token).await;
        if points["earned"] == json!(100) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{points}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        jwks_served(&http, &issuer).await,
        1,
        "known keys are not fetched again"
    );

    // The provider's own (unmapped) scopes give nothing: an admin route needs `admin`.
    assert_eq!(
        get_status(&http, &format!("{base}/admin/v1/requests"), &token).await,
        StatusCode::FORBIDDEN
    );

    // The provider rotates its signing key; a token with the new kid makes the bank fetch
    // the keys again, once.
    let rotated = Command::new(common::BINARY)
        .args(["keys", "rotate-signing", "--data-dir"])
        .arg(&provider_dir)
        .output()
        .unwrap();
    assert!(rotated.status.success(), "{rotated:?}");
    let started = Instant::now();
    loop {
        let jwks: Value = http
            .get(&jwks_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if kids(&jwks).len() == 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the provider did not reload"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The cool-down since the fetch at start must be over for the rotation to be picked up.
    let cooldown = Duration::from_secs(8);
    if let Some(left) = cooldown.checked_sub(fetched_at_start.elapsed()) {
        tokio::time::sleep(left + Duration::from_millis(300)).await;
    }
    let served_before = jwks_served(&http, &issuer).await;
    let (_, new_token) = signed_in_person(&http, &issuer, &issuer, "ext2").await;
    register(&http, &base, &new_token).await;
    for _ in 0..3 {
        assert_eq!(
            get_status(&http, &format!("{base}/bank/v1/users/self"), &new_token).await,
            StatusCode::OK
        );
    }
    assert_eq!(jwks_served(&http, &issuer).await, served_before + 1);

    // Tokens naming unknown key ids, many of them, right after that fetch: within the
    // cool-down, no fetch at all.
    let served_before = jwks_served(&http, &issuer).await;
    for i in 0..25 {
        let stranger = crypto::jws::SigningKey::generate();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let forged = crypto::jws::sign(
            &stranger,
            "at+jwt",
            &json!({
                "iss": issuer, "aud": "examplebank", "sub": user_id, "client_id": "simulator",
                "scope": "bank", "iat": now, "exp": now + 300, "jti": format!("forged-{i}"),
            }),
        );
        assert_eq!(
            get_status(&http, &format!("{base}/bank/v1/users/self"), &forged).await,
            StatusCode::UNAUTHORIZED,
            "forged token {i}"
        );
    }
    assert_eq!(
        jwks_served(&http, &issuer).await,
        served_before,
        "unknown key ids within the cool-down fetched the JWKS"
    );
    drop(bank);
    drop(provider);
}
