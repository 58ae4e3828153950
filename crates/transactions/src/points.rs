//! Points: the balance, redemptions (idempotent, never below zero) and the reward write-back.

use crate::{idempotency_key, sha256_hex, TransactionsState};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::Scope;
use serde::Deserialize;
use serde_json::json;
use store::{RedeemOutcome, RewardOutcome};
use web::{ApiError, Principal, StrictJson};

/// The most points one transaction can earn or one redemption can take.
pub const MAX_POINTS: i64 = 1_000_000_000;

pub async fn points_balance(
    State(state): State<TransactionsState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let user_id = principal.person()?;
    let summary = state.store.points(user_id).await?;
    Ok(Json(json!({
        "balance": summary.balance,
        "earned": summary.earned,
        "redeemed": summary.redeemed,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedeemRequest {
    points: i64,
}

pub async fn redeem_points(
    State(state): State<TransactionsState>,
    principal: Principal,
    headers: HeaderMap,
    StrictJson(request): StrictJson<RedeemRequest>,
) -> Result<Response, ApiError> {
    let user_id = principal.person()?;
    let key = idempotency_key(&headers)?
        .ok_or_else(|| ApiError::bad_request("redemptions need an Idempotency-Key header"))?;
    if !(1..=MAX_POINTS).contains(&request.points) {
        return Err(ApiError::unprocessable(format!(
            "points must be from 1 to {MAX_POINTS}"
        )));
    }
    let redemption_id = uuid::Uuid::now_v7().to_string();
    let points = request.points;
    let respond = |balance: i64| {
        json!({ "redemptionId": redemption_id, "points": points, "balance": balance }).to_string()
    };
    let outcome = state
        .store
        .redeem_points(
            user_id,
            &redemption_id,
            points,
            (&key, &sha256_hex(&points.to_string())),
            respond,
            state.clock.now_micros(),
        )
        .await?;
    let created = |body: String| {
        let value: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        (StatusCode::CREATED, Json(value)).into_response()
    };
    match outcome {
        RedeemOutcome::Redeemed { balance } => {
            tracing::info!(subject = %user_id, redemption = %redemption_id, "points redeemed");
            Ok(created(
                json!({ "redemptionId": redemption_id, "points": points, "balance": balance })
                    .to_string(),
            ))
        }
        RedeemOutcome::Replayed { response } => Ok(created(response)),
        RedeemOutcome::KeyReused => Err(ApiError::unprocessable(
            "this Idempotency-Key was already used for a different redemption",
        )),
        RedeemOutcome::Insufficient { balance } => Err(ApiError::conflict(
            "insufficient-points",
            format!("not enough points: the balance is {balance}"),
        )
        .with_member("balance", balance)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RewardRequest {
    points_earned: i64,
}

/// Writes a transaction's points, once. Only the rewards service or an administrator.
pub async fn reward_transaction(
    State(state): State<TransactionsState>,
    principal: Principal,
    Path(id): Path<String>,
    StrictJson(request): StrictJson<RewardRequest>,
) -> Result<StatusCode, ApiError> {
    principal.require_any(&[Scope::Rewards, Scope::Admin])?;
    let id = web::parse_id(&id, "transaction")?;
    if !(0..=MAX_POINTS).contains(&request.points_earned) {
        return Err(ApiError::unprocessable(format!(
            "pointsEarned must be from 0 to {MAX_POINTS}"
        )));
    }
    // The rewards service must not process the points of someone who restricted processing
    // (Art. 18); it waits and tries again. (An administrator's correction is not held back.)
    if principal.scopes.contains(Scope::Rewards) && !principal.scopes.contains(Scope::Admin) {
        if let Some(owner) = state.store.transaction(&id).await?.and_then(|t| t.user_id) {
            if state.standing_of(&owner).await?.restricted {
                return Err(ApiError::conflict(
                    "restricted",
                    "the person has restricted processing; points wait until it is lifted",
                ));
            }
        }
    }
    match state
        .store
        .reward_transaction(&id, request.points_earned, state.clock.now_micros())
        .await?
    {
        RewardOutcome::Rewarded => Ok(StatusCode::NO_CONTENT),
        RewardOutcome::AlreadyProcessed => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "already-processed",
            "this transaction was already processed",
        )),
        RewardOutcome::NotFound => Err(ApiError::not_found("no such transaction")),
    }
}
