//! Consent per purpose (Art. 7): the current state and the full history, and changes that are
//! appended to the ledger and confirmed with a signed receipt. Withdrawing is one request,
//! exactly like giving, and applies to the very next request.

use crate::{policy_hash, receipt, UsersState, POLICY_VERSION};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::Purpose;
use serde::Deserialize;
use serde_json::json;
use store::ConsentRecord;
use web::{ApiError, JsonBody, Principal};

pub async fn list_consents(
    State(state): State<UsersState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let id = principal.person()?;
    let user =
        state.store.bank_user(id).await?.ok_or_else(|| {
            ApiError::not_found("you are not registered; POST /bank/v1/users first")
        })?;
    let history = state.store.consent_history(id).await?;
    Ok(Json(json!({
        "current": {
            "rewards": user.consent_rewards,
            "analytics": user.consent_analytics,
            "profiling": user.consent_profiling,
        },
        "policyVersion": POLICY_VERSION,
        "policyHash": policy_hash(),
        "history": history.iter().map(|e| json!({
            "purpose": e.purpose,
            "granted": e.granted,
            "policyVersion": e.policy_version,
            "policyHash": e.policy_hash,
            "method": e.method,
            "at": web::rfc3339(e.at),
        })).collect::<Vec<_>>(),
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentRequest {
    granted: bool,
}

pub async fn set_consent(
    State(state): State<UsersState>,
    principal: Principal,
    Path(purpose): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let id = principal.person()?;
    let request: ConsentRequest = body.parse()?;
    let purpose = Purpose::parse(&purpose).map_err(|e| ApiError::not_found(e.to_string()))?;
    if state.store.bank_user(id).await?.is_none() {
        return Err(ApiError::not_found(
            "you are not registered; POST /bank/v1/users first",
        ));
    }
    let hash = policy_hash();
    let record = ConsentRecord {
        purpose: purpose.as_str(),
        granted: request.granted,
        policy_version: POLICY_VERSION,
        policy_hash: &hash,
        method: "api",
    };
    let now = state.clock.now_micros();
    if !state.store.set_consent(id, &record, now).await? {
        return Err(ApiError::conflict(
            "erasure-pending",
            "your data is being erased; it can no longer be changed",
        ));
    }
    tracing::info!(subject = %id, purpose = purpose.as_str(), granted = request.granted, "consent changed");
    let outcome = format!(
        "{}-{}",
        purpose.as_str(),
        if request.granted {
            "granted"
        } else {
            "withdrawn"
        }
    );
    crate::audit_self(&state, id, "consent.changed", &outcome).await;
    let signed = receipt(
        &state,
        "consent-receipt+jwt",
        id,
        json!({
            "purpose": purpose.as_str(),
            "granted": request.granted,
            "policyVersion": POLICY_VERSION,
            "policyHash": hash,
            "method": "api",
            "at": web::rfc3339(now),
        }),
    );
    Ok(
        Json(json!({ "purpose": purpose.as_str(), "granted": request.granted, "receipt": signed }))
            .into_response(),
    )
}
