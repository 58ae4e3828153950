//! PostgreSQL databases of their own for black-box tests, and a person signed up, logged in
//! (code + PKCE through the login page) and registered, as the phone app would do it.

use reqwest::{header, StatusCode};
use serde_json::{json, Value};
use sqlx::{Connection, Executor};
use std::sync::Arc;
use std::time::Duration;

pub fn flag(name: &str) -> bool {
    std::env::var(name)
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

pub fn postgres_required() -> bool {
    flag("CI") || flag("EXAMPLEBANK_TEST_REQUIRE_POSTGRES")
}

pub fn admin_url() -> String {
    std::env::var("EXAMPLEBANK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database of its own for one test, dropped at the end.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

pub async fn test_db(tag: &str) -> Option<TestDb> {
    let mut admin = match sqlx::postgres::PgConnection::connect(&admin_url()).await {
        Ok(conn) => conn,
        Err(err) if !postgres_required() => {
            eprintln!("SKIPPED: PostgreSQL not reachable ({err}); CI=true makes this a failure");
            return None;
        }
        Err(err) => panic!("PostgreSQL is required (CI=true) but not reachable: {err}"),
    };
    let name = format!("eb_{tag}_{}", std::process::id());
    admin
        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await
        .unwrap();
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let _ = admin.close().await;
    let url = format!("{}/{name}", admin_url().rsplit_once('/').unwrap().0);
    Some(TestDb { name, url })
}

impl TestDb {
    pub async fn connect(&self) -> sqlx::postgres::PgConnection {
        sqlx::postgres::PgConnection::connect(&self.url)
            .await
            .unwrap()
    }

    pub async fn drop_database(&self) {
        if let Ok(mut admin) = sqlx::postgres::PgConnection::connect(&admin_url()).await {
            let _ = admin
                .execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name).as_str())
                .await;
        }
    }
}

/// Runs `body`, drops the test database whatever happened, then passes a failure on.
pub async fn with_db<F, Fut>(tag: &str, body: F)
where
    F: FnOnce(Arc<TestDb>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Some(db) = test_db(tag).await else {
        return;
    };
    let db = Arc::new(db);
    let outcome = tokio::spawn(body(Arc::clone(&db))).await;
    db.drop_database().await;
    if let Err(err) = outcome {
        std::panic::resume_unwind(err.into_panic());
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Signs up, logs in through the login page (code + PKCE) and registers with consent.
/// Returns `(user id, access token)`.
pub async fn new_person(
    http: &reqwest::Client,
    base: &str,
    public_base: &str,
    label: &str,
) -> (String, String) {
    let (user_id, token) = signed_in_person(http, base, public_base, label).await;
    register(http, base, &token).await;
    (user_id, token)
}

/// Registers the bearer of `token` at the users role behind `base`, with consent to rewards.
pub async fn register(http: &reqwest::Client, base: &str, token: &str) {
    let response = http
        .post(format!("{base}/bank/v1/users"))
        .bearer_auth(token)
        .json(&json!({ "consentGiven": true }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, StatusCode::NO_CONTENT, "register: {body}");
}

/// Signs up and logs in at the identity role behind `base`. Returns `(user id, access token)`.
pub async fn signed_in_person(
    http: &reqwest::Client,
    base: &str,
    public_base: &str,
    label: &str,
) -> (String, String) {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let username = format!("fault-{label}-{}", &tag[..8]);
    let password = crypto::secrets::random_token();
    let response = http
        .post(format!("{base}/identity/v1/signup"))
        .json(&json!({
            "username": username,
            "password": password,
            "givenName": "Fault",
            "familyName": "Tester",
            "email": format!("{username}@example.org"),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED, "signup");
    let user_id = response.json::<Value>().await.unwrap()["userId"]
        .as_str()
        .unwrap()
        .to_owned();
    let verifier = crypto::secrets::random_token();
    let challenge = pkce_challenge(&verifier);
    let redirect = format!("{public_base}/callback");
    let form = [
        ("response_type", "code"),
        ("client_id", "simulator"),
        ("redirect_uri", redirect.as_str()),
        ("scope", "openid bank"),
        ("state", "faults"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("username", username.as_str()),
        ("password", password.as_str()),
    ];
    let response = http
        .post(format!("{base}/identity/v1/authorize"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "login");
    let location = response.headers()[header::LOCATION].to_str().unwrap();
    let code = reqwest::Url::parse(location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a code in the redirect");
    let response = http
        .post(format!("{base}/identity/v1/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect.as_str()),
            ("client_id", "simulator"),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "code exchange");
    let token = response.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    (user_id, token)
}

/// RFC 7636 S256: base64url(SHA-256(verifier)) without padding.
pub fn pkce_challenge(verifier: &str) -> String {
    crypto::b64::encode(&crypto::secrets::sha256(verifier.as_bytes()))
}

/// `GET url` with a bearer token; the answer's status.
pub async fn get_status(http: &reqwest::Client, url: &str, token: &str) -> StatusCode {
    http.get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

/// `GET url` with a bearer token; the answer's body as JSON.
pub async fn get_json(http: &reqwest::Client, url: &str, token: &str) -> Value {
    http.get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
