//! The in-process application and helpers that act like a client would.

use crate::postgres::TempDatabase;
use crate::Backend;
use axum::body::Body;
use axum::Router;
use domain::clock::OffsetClock;
use examplebank::roles::Roles;
use examplebank::server::{Services, ServicesConfig};
use http::{header, HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use std::sync::Arc;
use store::{Store, StoreOptions};
use tower::ServiceExt;

pub const BASE_URL: &str = "http://examplebank.test";
pub const REDIRECT_URI: &str = "http://examplebank.test/callback";
pub const REWARDS_SECRET: &str = "test-rewards-client-secret";

pub struct TestApp {
    pub services: Services,
    pub router: Router,
    pub backend: Backend,
    pub clock: OffsetClock,
    pub dir: tempfile::TempDir,
    keys: std::path::PathBuf,
    database: Option<TempDatabase>,
}

#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl TestResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "not JSON ({}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status, showing the body when it differs.
    pub fn expect(self, status: StatusCode) -> Self {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            self.text()
        );
        self
    }

    /// Asserts an RFC 9457 problem document with this status.
    pub fn expect_problem(self, status: StatusCode) -> Value {
        let this = self.expect(status);
        assert_eq!(
            this.header("content-type"),
            Some("application/problem+json"),
            "{}",
            this.text()
        );
        let body = this.json();
        assert_eq!(body["status"], status.as_u16());
        assert!(
            body["title"].is_string() && body["detail"].is_string() && body["type"].is_string()
        );
        body
    }
}

#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
    pub id_token: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Person {
    pub id: String,
    pub username: String,
    pub password: String,
    pub tokens: Tokens,
}

impl Person {
    pub fn token(&self) -> &str {
        &self.tokens.access
    }
}

impl TestApp {
    /// A fresh app, or `None` when the backend is PostgreSQL and it is unreachable (and not
    /// required).
    pub async fn new(backend: Backend) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let options = StoreOptions::default();
        let (store, database) = match backend {
            Backend::Sqlite => {
                let store = Store::open_sqlite(&dir.path().join("test.sqlite"), &options)
                    .await
                    .expect("open sqlite");
                (store, None)
            }
            Backend::Postgres => {
                let database = TempDatabase::create().await?;
                let store = Store::connect_postgres(&database.url, &options)
                    .await
                    .expect("connect postgres");
                (store, Some(database))
            }
        };
        store.migrate().await.expect("migrate");
        Some(Self::assemble(store, backend, dir, database))
    }

    /// Like [`TestApp::new`], with a per-person rate limit (requests per minute).
    pub async fn with_person_limit(backend: Backend, per_minute: u32) -> Option<Self> {
        let mut app = Self::new(backend).await?;
        app.services.verifier = Arc::new(
            web::TokenVerifier::new(
                app.services.signing.current().verifier(),
                app.services.identity.issuer.clone(),
                app.services.identity.audience.clone(),
                app.services.store.clone(),
                Arc::new(app.clock.clone()),
            )
            .with_person_limit(per_minute),
        );
        app.router = app.services.router(&Roles::parse("all").expect("roles"));
        Some(app)
    }

    fn assemble(
        store: Store,
        backend: Backend,
        dir: tempfile::TempDir,
        database: Option<TempDatabase>,
    ) -> Self {
        let keys_dir = dir.path().join("keys");
        Self::assemble_with_keys(store, backend, dir, database, &keys_dir)
    }

    fn assemble_with_keys(
        store: Store,
        backend: Backend,
        dir: tempfile::TempDir,
        database: Option<TempDatabase>,
        keys_dir: &std::path::Path,
    ) -> Self {
        let keys_dir = keys_dir.to_owned();
        let (keys, _) = crypto::keystore::KeyStore::open(&keys_dir, None, true).expect("key store");
        let signing = crypto::keyring::SharedKeyRing::load_or_create(&keys_dir.join("signing"))
            .expect("signing keys");
        let clock = OffsetClock::default();
        let audit = Arc::new(
            audit::AuditLog::open(
                store.clone(),
                &keys_dir,
                dir.path().join("audit-checkpoint.json"),
                Arc::new(clock.clone()),
            )
            .expect("audit log"),
        );
        let services = Services::new(
            store,
            audit,
            Arc::new(crypto::vault::Vault::new(keys)),
            signing,
            examplebank::bootstrap::clients(BASE_URL, REWARDS_SECRET),
            Arc::new(clock.clone()),
            ServicesConfig {
                public_base_url: BASE_URL.to_owned(),
                erasure_grace_seconds: 0,
                analytics_min_contributors: 5,
                retention: Default::default(),
                password_hash_concurrency: 2,
                limits: web::layers::Limits::default(),
                per_person_per_minute: 100_000,
                login_throttle: identity::LoginThrottle::default(),
            },
        )
        .expect("services");
        let router = services.router(&Roles::parse("all").expect("roles"));
        Self {
            services,
            router,
            backend,
            clock,
            dir,
            keys: keys_dir,
            database,
        }
    }

    /// The server clock's current time in microseconds.
    pub fn clock_now(&self) -> i64 {
        use domain::Clock;
        self.clock.now_micros()
    }

    pub fn store(&self) -> &Store {
        &self.services.store
    }

    /// The database URL (PostgreSQL only).
    pub fn database_url(&self) -> Option<&str> {
        self.database.as_ref().map(|d| d.url.as_str())
    }

    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("router never fails");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body").to_bytes().to_vec();
        TestResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// A JSON request, optionally with a bearer token.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> TestResponse {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => builder
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => builder.body(Body::empty()),
        };
        self.send(request.expect("request")).await
    }

    pub async fn get(&self, path: &str, token: &str) -> TestResponse {
        self.call(Method::GET, path, Some(token), None).await
    }

    /// A form POST (login form, token endpoint).
    pub async fn post_form(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        extra: &[(&str, &str)],
    ) -> TestResponse {
        let body = serde_urlencoded::to_string(fields).expect("form");
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        for (name, value) in extra {
            builder = builder.header(*name, *value);
        }
        self.send(builder.body(Body::from(body)).expect("request"))
            .await
    }

    pub async fn signup(&self, username: &str, password: &str) -> TestResponse {
        let body = serde_json::json!({
            "username": username,
            "password": password,
            "givenName": "Test",
            "familyName": "Person",
            "email": format!("{username}@example.org"),
        });
        self.call(Method::POST, "/identity/v1/signup", None, Some(body))
            .await
    }

    /// Authorization code + PKCE through the login form. Returns the redirect's response.
    pub async fn authorize(
        &self,
        username: &str,
        password: &str,
        verifier: &str,
        state: &str,
    ) -> TestResponse {
        self.authorize_with_scope(username, password, verifier, state, "openid bank")
            .await
    }

    pub async fn authorize_with_scope(
        &self,
        username: &str,
        password: &str,
        verifier: &str,
        state: &str,
        scope: &str,
    ) -> TestResponse {
        let challenge = crypto::b64::encode(&crypto::secrets::sha256(verifier.as_bytes()));
        let fields = [
            ("response_type", "code"),
            ("client_id", "simulator"),
            ("redirect_uri", REDIRECT_URI),
            ("scope", scope),
            ("state", state),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("username", username),
            ("password", password),
        ];
        self.post_form("/identity/v1/authorize", &fields, &[]).await
    }

    /// Takes the `code` out of a successful authorization redirect.
    pub fn code_from(response: &TestResponse) -> String {
        assert_eq!(
            response.status,
            StatusCode::SEE_OTHER,
            "login failed: {}",
            response.text()
        );
        let location = response.header("location").expect("location");
        let url = url::Url::parse(location).expect("redirect URL");
        url.query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .expect("code in redirect")
    }

    pub async fn exchange(&self, code: &str, verifier: &str) -> TestResponse {
        let fields = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("client_id", "simulator"),
            ("code_verifier", verifier),
        ];
        self.post_form("/identity/v1/token", &fields, &[]).await
    }

    pub async fn login(&self, username: &str, password: &str) -> Tokens {
        let verifier = crypto::secrets::random_token();
        let redirect = self
            .authorize(username, password, &verifier, "state-1")
            .await;
        let code = Self::code_from(&redirect);
        let body = self
            .exchange(&code, &verifier)
            .await
            .expect(StatusCode::OK)
            .json();
        Tokens {
            access: body["access_token"]
                .as_str()
                .expect("access token")
                .to_owned(),
            refresh: body["refresh_token"]
                .as_str()
                .expect("refresh token")
                .to_owned(),
            id_token: body["id_token"].as_str().map(str::to_owned),
        }
    }

    pub async fn refresh(&self, refresh_token: &str) -> TestResponse {
        let fields = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", "simulator"),
        ];
        self.post_form("/identity/v1/token", &fields, &[]).await
    }

    /// A signed-up, logged-in person, registered with the given rewards consent.
    pub async fn person_with_consent(&self, consent: bool) -> Person {
        let username = format!("p{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
        let signup = self
            .signup(&username, &password)
            .await
            .expect(StatusCode::CREATED)
            .json();
        let tokens = self.login(&username, &password).await;
        self.call(
            Method::POST,
            "/bank/v1/users",
            Some(&tokens.access),
            Some(serde_json::json!({ "consentGiven": consent })),
        )
        .await
        .expect(StatusCode::NO_CONTENT);
        Person {
            id: signup["userId"].as_str().expect("userId").to_owned(),
            username,
            password,
            tokens,
        }
    }

    pub async fn person(&self) -> Person {
        self.person_with_consent(true).await
    }

    pub async fn charge(
        &self,
        token: &str,
        name: &str,
        category: &str,
        amount: Value,
    ) -> TestResponse {
        let body =
            serde_json::json!({ "transactionName": name, "category": category, "amount": amount });
        self.call(
            Method::POST,
            "/bank/v1/transactions",
            Some(token),
            Some(body),
        )
        .await
    }

    /// Gives or withdraws consent to one purpose (`PUT /bank/v1/users/self/consents/{purpose}`).
    pub async fn set_consent(&self, token: &str, purpose: &str, granted: bool) -> TestResponse {
        let path = format!("/bank/v1/users/self/consents/{purpose}");
        self.call(
            Method::PUT,
            &path,
            Some(token),
            Some(serde_json::json!({ "granted": granted })),
        )
        .await
    }

    /// A client-credentials token of the rewards service.
    pub async fn service_token(&self) -> String {
        let fields = [
            ("grant_type", "client_credentials"),
            ("client_id", "rewards"),
            ("client_secret", REWARDS_SECRET),
        ];
        let body = self
            .post_form("/identity/v1/token", &fields, &[])
            .await
            .expect(StatusCode::OK)
            .json();
        body["access_token"].as_str().expect("token").to_owned()
    }

    /// A reward worker over this app's database, configured as the server configures it.
    pub fn rewards_worker(&self) -> ::rewards_for_testkit::RewardWorker {
        ::rewards_for_testkit::RewardWorker::new(
            self.services.store.clone(),
            self.services.clock.clone(),
            Default::default(),
        )
    }

    /// Runs the reward worker until the outbox is empty.
    pub async fn drain_rewards(&self) {
        let worker = self.rewards_worker();
        for _ in 0..100 {
            if worker.run_once().await.expect("reward pass") == 0 {
                return;
            }
        }
        panic!("the outbox did not drain");
    }

    /// The key store directory of this app.
    pub fn keys_dir(&self) -> std::path::PathBuf {
        self.keys.clone()
    }

    /// A second app over another SQLite file (e.g. a restored backup) that shares this app's
    /// key store, as a restarted server would.
    pub async fn reopen_sqlite(&self, file: &std::path::Path) -> TestApp {
        let store = Store::open_sqlite(file, &StoreOptions::default())
            .await
            .expect("open sqlite");
        store.migrate().await.expect("migrate");
        let dir = tempfile::tempdir().expect("temp dir");
        Self::assemble_with_keys(store, Backend::Sqlite, dir, None, &self.keys_dir())
    }

    /// A second app over the same PostgreSQL database sharing this app's key store.
    pub async fn reopen_postgres(&self) -> TestApp {
        let url = self.database_url().expect("a PostgreSQL app");
        let store = Store::connect_postgres(url, &StoreOptions::default())
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
        let dir = tempfile::tempdir().expect("temp dir");
        Self::assemble_with_keys(store, Backend::Postgres, dir, None, &self.keys_dir())
    }

    /// An administrator's access token (scope `admin`).
    pub async fn admin_token(&self) -> String {
        let username = format!("admin{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let password = format!("admin-pw-{}", uuid::Uuid::new_v4().simple());
        let profile = identity::NewProfile {
            username: domain::Username::parse(&username).expect("username"),
            password: domain::Password::parse(&password).expect("password"),
            given_name: None,
            family_name: None,
            email: None,
        };
        identity::create_account(&self.services.identity_state(), profile, "admin")
            .await
            .expect("admin account");
        let verifier = crypto::secrets::random_token();
        let redirect = self
            .authorize_with_scope(&username, &password, &verifier, "s", "openid admin")
            .await;
        let code = Self::code_from(&redirect);
        let body = self
            .exchange(&code, &verifier)
            .await
            .expect(StatusCode::OK)
            .json();
        body["access_token"]
            .as_str()
            .expect("access token")
            .to_owned()
    }

    /// Runs one erasure pass.
    pub async fn run_erasure(&self) -> usize {
        self.services
            .erasure_worker()
            .run_once()
            .await
            .expect("erasure pass")
            .erased
    }
}
