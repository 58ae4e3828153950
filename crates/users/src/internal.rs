//! What other examplebank services ask of the users role when the roles run apart: a
//! person's standing (for the transactions service) and forgetting a person (for the erasure
//! service). Only service tokens with the matching scope pass; people never do.

use crate::UsersState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use domain::Scope;
use web::client::Standing;
use web::{ApiError, Principal};

/// `GET /internal/v1/users/{id}/standing`: registered, consent to rewards, restriction and
/// pending erasure, read now (never cached here).
pub async fn standing(
    State(state): State<UsersState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Standing>, ApiError> {
    principal.service(Scope::Standing)?;
    let id = web::parse_id(&id, "person")?;
    let standing = match state.store.bank_user(&id).await? {
        Some(user) => Standing {
            registered: true,
            consent_rewards: user.consent_rewards,
            restricted: user.restricted_at.is_some(),
            erasure_pending: user.erasure_requested_at.is_some(),
        },
        None => Standing::unregistered(),
    };
    Ok(Json(standing))
}

/// `DELETE /internal/v1/users/{id}`: the erasure service's order to forget the person's
/// profile, consent ledger and other requests. Idempotent.
pub async fn forget(
    State(state): State<UsersState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (caller, id) = web::auth::forget_order(&principal, &id, &state.vault)?;
    state.store.forget_profile(&id).await?;
    web::auth::record_forgotten(&state.audit, &caller, "users.forgotten", &id).await;
    Ok(StatusCode::NO_CONTENT)
}
