//! Administrator actions on accounts, and the audit chain's status.

use crate::IdentityState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::Scope;
use serde::Deserialize;
use serde_json::json;
use web::{ApiError, JsonBody, Principal};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    status: String,
}

/// Disables (or re-enables) an account. A disabled account's tokens are refused at once.
pub async fn set_account_status(
    State(state): State<IdentityState>,
    principal: Principal,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<StatusCode, ApiError> {
    principal.require(Scope::Admin)?;
    let request: StatusRequest = body.parse()?;
    let id = web::parse_id(&id, "account")?;
    if !matches!(request.status.as_str(), "active" | "disabled") {
        return Err(ApiError::unprocessable("status must be active or disabled"));
    }
    if id == principal.subject {
        return Err(ApiError::conflict(
            "own-account",
            "administrators cannot change their own account's status",
        ));
    }
    if !state.store.set_account_status(&id, &request.status).await? {
        return Err(ApiError::not_found("no such account"));
    }
    state
        .audit
        .record(
            &format!("user:{}", principal.subject),
            "account.status-changed",
            &format!("user:{id}"),
            &request.status,
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Verifies the audit chain now and reports what it found.
pub async fn audit_status(
    State(state): State<IdentityState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let report = audit::verify(
        &state.store,
        &state.audit.verifier(),
        state.audit.checkpoint_file(),
    )
    .await?;
    let checkpoints = state.store.audit_checkpoints().await?;
    Ok(Json(json!({
        "intact": report.ok(),
        "entries": report.entries,
        "checkpoints": report.checkpoints,
        "latestCheckpoint": checkpoints.last().map(|c| json!({ "seq": c.seq, "at": web::rfc3339(c.at) })),
        "problem": report.problem,
    }))
    .into_response())
}

/// `DELETE /internal/v1/identity/accounts/{id}`: the erasure service's order to forget a
/// person's account, with its codes, sessions and refresh tokens. Idempotent.
pub async fn forget_account(
    State(state): State<IdentityState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (caller, id) = web::auth::forget_order(&principal, &id, &state.vault)?;
    state.store.forget_account(&id).await?;
    web::auth::record_forgotten(&state.audit, &caller, "identity.forgotten", &id).await;
    Ok(StatusCode::NO_CONTENT)
}
