//! Administrator views of the rewards machinery: reward rules and parked events.

use crate::TransactionsState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::{Category, Scope};
use serde::Deserialize;
use serde_json::json;
use web::{ApiError, JsonBody, Principal};

pub async fn list_reward_rules(
    State(state): State<TransactionsState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let rules = state.store.reward_rules().await?;
    let body: Vec<_> = rules
        .iter()
        .map(|(category, rate)| json!({ "category": category, "pointsPerUnit": rate }))
        .collect();
    Ok(Json(body).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuleRequest {
    points_per_unit: i64,
}

pub async fn set_reward_rule(
    State(state): State<TransactionsState>,
    principal: Principal,
    Path(category): Path<String>,
    body: JsonBody,
) -> Result<StatusCode, ApiError> {
    principal.require(Scope::Admin)?;
    let request: RuleRequest = body.parse()?;
    let category = Category::parse(&category)?;
    if !(0..=100).contains(&request.points_per_unit) {
        return Err(ApiError::unprocessable(
            "pointsPerUnit must be from 0 to 100",
        ));
    }
    state
        .store
        .set_reward_rule(
            category.as_str(),
            request.points_per_unit,
            state.clock.now_micros(),
        )
        .await?;
    tracing::info!(admin = %principal.subject, category = %category, rate = request.points_per_unit, "reward rule changed");
    state
        .audit
        .record(
            &format!("user:{}", principal.subject),
            "reward-rule.changed",
            &format!("reward-rule:{category}"),
            &request.points_per_unit.to_string(),
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn outbox_status(
    State(state): State<TransactionsState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let stats = state.store.outbox_stats().await?;
    let parked = state.store.parked_events(100).await?;
    let now = state.clock.now_micros();
    Ok(Json(json!({
        "pending": stats.pending,
        "parked": stats.parked,
        "oldestPendingAgeSeconds": stats.oldest_created_at.map(|t| (now - t).max(0) / 1_000_000),
        "parkedEvents": parked.iter().map(|e| json!({
            "seq": e.seq,
            "kind": e.kind,
            "attempts": e.attempts,
            "parkedAt": web::rfc3339(e.parked_at),
            "reason": e.last_error,
        })).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// Spending per category per month, in amount bands, from people who consented to analytics
/// (and have not restricted processing) plus the anonymous facts left by erased people. A cell
/// is shown only when at least k distinct people contributed to it.
pub async fn analytics(
    State(state): State<TransactionsState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let k = state.analytics_min_contributors;
    let cells = state.store.analytics_cells().await?;
    let (shown, suppressed): (Vec<_>, Vec<_>) =
        cells.into_iter().partition(|c| c.contributors >= k);
    Ok(Json(json!({
        "minContributors": k,
        "bands": ["under 10.00", "10.00 to 49.99", "50.00 to 99.99", "100.00 to 499.99", "500.00 and more"],
        "cells": shown.iter().map(|c| json!({
            "month": c.month,
            "category": c.category,
            "contributors": c.contributors,
            "transactions": c.bands.iter().sum::<i64>(),
            "bands": c.bands,
        })).collect::<Vec<_>>(),
        "suppressedCells": suppressed.len(),
    }))
    .into_response())
}

/// `DELETE /internal/v1/transactions/people/{id}`: the erasure service's order to forget a
/// person: their charges become anonymous facts and go, with their reward events, points and
/// idempotency records. Idempotent: a second call finds nothing and counts nothing twice.
pub async fn forget_person(
    State(state): State<TransactionsState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (caller, id) = web::auth::forget_order(&principal, &id, &state.vault)?;
    state
        .store
        .forget_transactions(&id, state.clock.now_micros())
        .await?;
    if let Some(remote) = &state.standing {
        remote.evict(&id);
    }
    web::auth::record_forgotten(&state.audit, &caller, "transactions.forgotten", &id).await;
    Ok(StatusCode::NO_CONTENT)
}
