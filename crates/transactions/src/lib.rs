//! The transactions role: card charges (written with their reward event in one database
//! transaction), the person's own history and spending, points, and the reward write-back
//! that only the rewards service (or an administrator) may call.

mod admin;
mod charges;
mod points;

use axum::extract::FromRef;
use axum::routing::{get, post, put};
use axum::Router;
use crypto::vault::Vault;
use domain::Clock;
use std::sync::Arc;
use store::Store;
use tokio::sync::Notify;
use web::TokenVerifier;

#[derive(Clone)]
pub struct TransactionsState {
    pub store: Store,
    pub audit: Arc<audit::AuditLog>,
    pub vault: Arc<Vault>,
    pub verifier: Arc<TokenVerifier>,
    pub clock: Arc<dyn Clock>,
    /// Wakes the reward worker when a charge is written.
    pub reward_wakeup: Arc<Notify>,
    /// Analytics cells with fewer contributors than this are suppressed (k-anonymity).
    pub analytics_min_contributors: i64,
    /// Where people's standing comes from when the users role runs as its own service;
    /// `None` reads it from the database in the charge's own transaction.
    pub standing: Option<Arc<web::client::StandingClient>>,
}

impl TransactionsState {
    /// The person's standing: asked of the users service when it runs apart, else read here.
    pub(crate) async fn standing_of(
        &self,
        person: &str,
    ) -> Result<web::client::Standing, web::ApiError> {
        if let Some(remote) = &self.standing {
            return Ok(remote.standing(person).await?);
        }
        Ok(match self.store.bank_user(person).await? {
            Some(user) => web::client::Standing {
                registered: true,
                consent_rewards: user.consent_rewards,
                restricted: user.restricted_at.is_some(),
                erasure_pending: user.erasure_requested_at.is_some(),
            },
            None => web::client::Standing::unregistered(),
        })
    }
}

impl FromRef<TransactionsState> for Arc<TokenVerifier> {
    fn from_ref(state: &TransactionsState) -> Self {
        Arc::clone(&state.verifier)
    }
}

pub fn router(state: TransactionsState) -> Router {
    Router::new()
        .route(
            "/bank/v1/transactions",
            post(charges::create_charge).get(charges::list_transactions),
        )
        .route("/bank/v1/transactions/spending", get(charges::spending))
        .route(
            "/bank/v1/transactions/rewards",
            post(points::reward_transactions),
        )
        .route(
            "/bank/v1/transactions/reward/{id}",
            put(points::reward_transaction),
        )
        .route("/bank/v1/transactions/{id}", get(charges::get_transaction))
        .route("/bank/v1/points", get(points::points_balance))
        .route("/bank/v1/points/redemptions", post(points::redeem_points))
        .route("/admin/v1/reward-rules", get(admin::list_reward_rules))
        .route(
            "/admin/v1/reward-rules/{category}",
            put(admin::set_reward_rule),
        )
        .route("/admin/v1/outbox", get(admin::outbox_status))
        .route("/admin/v1/analytics", get(admin::analytics))
        .route(
            "/internal/v1/transactions/people/{id}",
            axum::routing::delete(admin::forget_person),
        )
        .with_state(state)
}

/// Reads and checks an `Idempotency-Key` header: 1 to 255 visible ASCII characters.
pub(crate) fn idempotency_key(
    headers: &axum::http::HeaderMap,
) -> Result<Option<String>, web::ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .ok()
        .filter(|t| !t.is_empty() && t.len() <= 255 && t.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            web::ApiError::bad_request("Idempotency-Key must be 1 to 255 visible ASCII characters")
        })?;
    Ok(Some(text.to_owned()))
}

pub(crate) fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
