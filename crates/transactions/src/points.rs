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
use web::{ApiError, JsonBody, Principal};

/// The most points one transaction can earn or one redemption can take.
pub const MAX_POINTS: i64 = 1_000_000_000;
pub use domain::MAX_REWARD_BATCH;

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
    body: JsonBody,
) -> Result<Response, ApiError> {
    let user_id = principal.person()?;
    let request: RedeemRequest = body.parse()?;
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
    body: JsonBody,
) -> Result<StatusCode, ApiError> {
    principal.require_any(&[Scope::Rewards, Scope::Admin])?;
    let request: RewardRequest = body.parse()?;
    let id = web::parse_id(&id, "transaction")?;
    if !(0..=MAX_POINTS).contains(&request.points_earned) {
        return Err(ApiError::unprocessable(format!(
            "pointsEarned must be from 0 to {MAX_POINTS}"
        )));
    }
    // Nobody processes the points of someone who restricted processing (Art. 18), an
    // administrator no more than the rewards service: the same rule as the batch route. The
    // rewards service waits and tries again once the restriction is lifted.
    if let Some(owner) = state.store.transaction(&id).await?.and_then(|t| t.user_id) {
        if state.standing_of(&owner).await?.restricted {
            return Err(ApiError::conflict(
                "restricted",
                "the person has restricted processing; points wait until it is lifted",
            ));
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RewardBatchRequest {
    rewards: Vec<RewardBatchItem>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RewardBatchItem {
    transaction_id: String,
    points_earned: i64,
}

/// `POST /bank/v1/transactions/rewards`: writes the points of up to [`MAX_REWARD_BATCH`]
/// transactions, each once, in one database transaction: the rewards service's write-back in
/// split mode, one call per claimed batch. Answers which transactions this call rewarded,
/// which it did not write (rewarded before, or gone), and which it held back because their
/// person restricted processing (Art. 18; for anyone who calls, administrators included).
pub async fn reward_transactions(
    State(state): State<TransactionsState>,
    principal: Principal,
    body: JsonBody,
) -> Result<Response, ApiError> {
    principal.require_any(&[Scope::Rewards, Scope::Admin])?;
    let request: RewardBatchRequest = body.parse()?;
    if request.rewards.is_empty() || request.rewards.len() > MAX_REWARD_BATCH {
        return Err(ApiError::unprocessable(format!(
            "rewards must hold 1 to {MAX_REWARD_BATCH} entries"
        )));
    }
    let mut items: Vec<(String, i64)> = Vec::with_capacity(request.rewards.len());
    for (i, item) in request.rewards.iter().enumerate() {
        let id = uuid::Uuid::parse_str(&item.transaction_id)
            .map_err(|_| {
                ApiError::unprocessable(format!(
                    "rewards[{i}].transactionId is not a transaction id"
                ))
            })?
            .hyphenated()
            .to_string();
        if !(0..=MAX_POINTS).contains(&item.points_earned) {
            return Err(ApiError::unprocessable(format!(
                "rewards[{i}].pointsEarned must be from 0 to {MAX_POINTS}"
            )));
        }
        if items.iter().any(|(seen, _)| *seen == id) {
            return Err(ApiError::unprocessable(format!(
                "rewards[{i}] names a transaction listed before"
            )));
        }
        items.push((id, item.points_earned));
    }
    let mut restricted: Vec<&str> = Vec::new();
    let mut writes: Vec<(&str, i64)> = Vec::with_capacity(items.len());
    let mut standing: std::collections::HashMap<String, bool> = Default::default();
    for (id, points) in &items {
        let owner = state.store.transaction(id).await?.and_then(|t| t.user_id);
        let held = match owner {
            Some(owner) => match standing.get(&owner) {
                Some(held) => *held,
                None => {
                    let held = state.standing_of(&owner).await?.restricted;
                    standing.insert(owner, held);
                    held
                }
            },
            None => false,
        };
        if held {
            restricted.push(id);
        } else {
            writes.push((id, *points));
        }
    }
    let rewarded = state
        .store
        .reward_many(&writes, state.clock.now_micros())
        .await?;
    let not_written: Vec<&str> = writes
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !rewarded.iter().any(|r| r == id))
        .collect();
    Ok(Json(json!({
        "rewarded": rewarded,
        "notWritten": not_written,
        "restricted": restricted,
    }))
    .into_response())
}
