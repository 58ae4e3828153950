//! The users role: a person's bank profile, their consent per purpose, and the start of
//! erasure. Names and e-mail belong to the identity account and are sealed with the person's
//! own key; this role decrypts them only to show them to that person.

mod profile;

use axum::extract::FromRef;
use axum::routing::{get, post};
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
        .with_state(state)
}
