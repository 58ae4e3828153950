//! The identity role: a small OpenID Connect provider built in, so the embedded default needs
//! no outside service. Authorization code + PKCE (S256 only) for people, client credentials
//! for services, refresh-token rotation with reuse detection, no password grant.

mod admin;
mod authorize;
mod clients;
mod hasher;
mod pages;
mod signup;
mod throttle;
mod token;
mod userinfo;

pub use clients::{Client, ClientKind, ClientRegistry};
pub use hasher::PasswordHasher;
pub use throttle::LoginThrottle;

use axum::extract::FromRef;
use axum::routing::{get, post};
use axum::Router;
use crypto::keyring::SharedKeyRing;
use crypto::vault::Vault;
use domain::Clock;
use std::sync::Arc;
use store::Store;
use web::TokenVerifier;

/// Lifetimes and names the provider works with.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// The issuer URL, e.g. `http://127.0.0.1:8080`; also the public base URL.
    pub issuer: String,
    /// The `aud` of access tokens.
    pub audience: String,
    pub access_token_seconds: i64,
    pub refresh_token_seconds: i64,
    pub code_seconds: i64,
}

impl IdentityConfig {
    pub fn new(issuer: &str) -> Self {
        Self {
            issuer: issuer.trim_end_matches('/').to_owned(),
            audience: "examplebank".to_owned(),
            access_token_seconds: 900,
            refresh_token_seconds: 30 * 24 * 3600,
            code_seconds: 300,
        }
    }
}

#[derive(Clone)]
pub struct IdentityState {
    pub store: Store,
    pub audit: Arc<audit::AuditLog>,
    pub keys: Arc<SharedKeyRing>,
    pub vault: Arc<Vault>,
    pub verifier: Arc<TokenVerifier>,
    pub clients: Arc<ClientRegistry>,
    pub hasher: PasswordHasher,
    pub throttle: Arc<LoginThrottle>,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<IdentityConfig>,
}

impl FromRef<IdentityState> for Arc<TokenVerifier> {
    fn from_ref(state: &IdentityState) -> Self {
        Arc::clone(&state.verifier)
    }
}

pub fn router(state: IdentityState) -> Router {
    Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(userinfo::discovery),
        )
        .route("/identity/v1/jwks", get(userinfo::jwks))
        .route(
            "/identity/v1/signup",
            get(signup::signup_page).post(signup::create_account),
        )
        .route(
            "/identity/v1/authorize",
            get(authorize::show_login).post(authorize::submit_login),
        )
        .route("/identity/v1/token", post(token::issue_token))
        .route("/identity/v1/revoke", post(token::revoke_token))
        .route(
            "/identity/v1/userinfo",
            get(userinfo::userinfo).post(userinfo::userinfo),
        )
        .route("/identity/v1/password", post(userinfo::change_password))
        .route(
            "/admin/v1/accounts/{id}/status",
            axum::routing::put(admin::set_account_status),
        )
        .route("/admin/v1/audit", get(admin::audit_status))
        .route(
            "/internal/v1/identity/accounts/{id}",
            axum::routing::delete(admin::forget_account),
        )
        .route("/identity/v1/style.css", get(|| async { pages::style() }))
        .with_state(state)
}

/// Creates an account (used by sign-up and by `examplebank admin create`). The username is
/// looked up by blind index; names and e-mail are sealed with the new person's own key.
pub async fn create_account(
    state: &IdentityState,
    profile: NewProfile,
    role: &'static str,
) -> Result<String, CreateAccountError> {
    let id = uuid::Uuid::new_v4().to_string();
    let index = state
        .vault
        .blind_index("username", profile.username.as_str());
    if state
        .store
        .account_by_username_index(&index)
        .await?
        .is_some()
    {
        return Err(CreateAccountError::UsernameTaken);
    }
    let password_hash = state.hasher.hash(profile.password).await?;
    let key = state.vault.create_person(&id)?;
    let seal = |field: &str, text: &str| Vault::seal(&key, field, &id, text);
    let account = store::NewAccount {
        id: id.clone(),
        username_index: index,
        username_enc: seal("accounts.username", profile.username.as_str()),
        given_name_enc: profile
            .given_name
            .map(|n| seal("accounts.given_name", n.as_str())),
        family_name_enc: profile
            .family_name
            .map(|n| seal("accounts.family_name", n.as_str())),
        email_enc: profile.email.map(|e| seal("accounts.email", e.as_str())),
        password_hash,
        role,
        now: state.clock.now_micros(),
    };
    if let Err(err) = state.store.create_account(&account).await {
        // Nothing refers to the new key yet: do not leave it behind.
        let _ = state.vault.shred(&id);
        return Err(match err {
            store::StoreError::Conflict => CreateAccountError::UsernameTaken,
            other => other.into(),
        });
    }
    state
        .audit
        .record(
            &format!("user:{id}"),
            "account.created",
            &format!("user:{id}"),
            role,
        )
        .await;
    Ok(id)
}

pub struct NewProfile {
    pub username: domain::Username,
    pub password: domain::Password,
    pub given_name: Option<domain::PersonName>,
    pub family_name: Option<domain::PersonName>,
    pub email: Option<domain::Email>,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateAccountError {
    #[error("that username is taken")]
    UsernameTaken,
    #[error("the password service is busy")]
    Busy,
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Crypto(#[from] crypto::CryptoError),
}

impl From<CreateAccountError> for web::ApiError {
    fn from(err: CreateAccountError) -> Self {
        match err {
            CreateAccountError::UsernameTaken => {
                web::ApiError::conflict("username-taken", "that username is taken; choose another")
            }
            CreateAccountError::Busy => hasher::Busy.into(),
            CreateAccountError::Store(err) => err.into(),
            CreateAccountError::Crypto(err) => web::ApiError::internal(&err),
        }
    }
}
