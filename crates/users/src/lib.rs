//! The users role: a person's bank profile, their consent per purpose, and the start of
//! erasure. Names and e-mail belong to the identity account and are sealed with the person's
//! own key; this role decrypts them only to show them to that person.

mod consent;
mod internal;
mod profile;
mod rights;

use axum::extract::FromRef;
use axum::routing::{delete, get, post, put};
use axum::Router;
use crypto::vault::Vault;
use domain::Clock;
use std::sync::Arc;
use store::Store;
use tokio::sync::Notify;
use web::TokenVerifier;

/// The privacy notice people consent to; its version and hash go into every consent event.
pub const POLICY_TEXT: &str = include_str!("policy.md");
pub const POLICY_VERSION: &str = "2026-12-01";

pub fn policy_hash() -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(POLICY_TEXT.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Clone)]
pub struct UsersState {
    pub store: Store,
    pub audit: Arc<audit::AuditLog>,
    /// Signs consent and erasure receipts; verifiable against the JWKS.
    pub signing: Arc<crypto::keyring::SharedKeyRing>,
    /// The issuer named in receipts (the public base URL).
    pub issuer: String,
    pub vault: Arc<Vault>,
    pub verifier: Arc<TokenVerifier>,
    pub clock: Arc<dyn Clock>,
    /// Seconds between an erasure request and its execution (0 in the embedded default).
    pub erasure_grace_seconds: i64,
    /// Wakes the erasure worker when a request arrives.
    pub erasure_wakeup: Arc<Notify>,
}

impl FromRef<UsersState> for Arc<TokenVerifier> {
    fn from_ref(state: &UsersState) -> Self {
        Arc::clone(&state.verifier)
    }
}

/// One month, the deadline GDPR Art. 12(3) sets for answering a request.
pub const MONTH_MICROS: i64 = 30 * 24 * 3600 * 1_000_000;

/// Signs a receipt: a compact JWS with the server's current token key.
pub(crate) fn receipt(
    state: &UsersState,
    typ: &str,
    subject: &str,
    mut claims: serde_json::Value,
) -> String {
    claims["iss"] = serde_json::json!(state.issuer);
    claims["sub"] = serde_json::json!(subject);
    claims["iat"] = serde_json::json!(state.clock.now_secs());
    claims["jti"] = serde_json::json!(uuid::Uuid::new_v4().to_string());
    crypto::jws::sign(state.signing.current().active(), typ, &claims)
}

/// Records a privacy event about the person themself.
pub(crate) async fn audit_self(state: &UsersState, id: &str, action: &str, outcome: &str) {
    let who = format!("user:{id}");
    state.audit.record(&who, action, &who, outcome).await;
}

pub fn router(state: UsersState) -> Router {
    Router::new()
        .route("/bank/v1/users", post(profile::register_user))
        .route(
            "/bank/v1/users/self",
            get(profile::get_profile)
                .put(profile::update_profile)
                .delete(profile::delete_self),
        )
        .route(
            "/bank/v1/users/self/erasure",
            post(profile::request_erasure),
        )
        .route("/bank/v1/users/self/consents", get(consent::list_consents))
        .route(
            "/bank/v1/users/self/consents/{purpose}",
            put(consent::set_consent),
        )
        .route("/bank/v1/users/self/export", get(rights::export_data))
        .route(
            "/bank/v1/users/self/restriction",
            put(rights::restrict).delete(rights::lift_restriction),
        )
        .route(
            "/bank/v1/users/self/objection",
            put(rights::object).delete(rights::withdraw_objection),
        )
        .route("/bank/v1/users/self/requests", get(rights::list_requests))
        .route("/bank/v1/users/self/insights", get(rights::insights))
        .route("/admin/v1/requests", get(rights::request_queue))
        .route("/internal/v1/users/{id}/standing", get(internal::standing))
        .route("/internal/v1/users/{id}", delete(internal::forget))
        .with_state(state)
}
