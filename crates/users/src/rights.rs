//! The rights of Articles 15–22 that are answered at once: access and portability (export),
//! restriction, objection to profiling, the person's own requests, and the personalised
//! insights that profiling produces. Every one is recorded as a request (Art. 12).

use crate::{UsersState, MONTH_MICROS};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use crypto::vault::Vault;
use domain::amount::format_minor;
use domain::Scope;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use store::{BankUser, PrivacyRequest, Switch};
use web::{ApiError, Principal};

async fn registered(state: &UsersState, id: &str) -> Result<BankUser, ApiError> {
    state
        .store
        .bank_user(id)
        .await?
        .ok_or_else(|| ApiError::not_found("you are not registered; POST /bank/v1/users first"))
}

/// Every transaction of the person, newest first, read a page at a time.
async fn all_transactions(
    state: &UsersState,
    id: &str,
) -> Result<Vec<store::TransactionRow>, ApiError> {
    const PAGE: i64 = 500;
    let mut all = Vec::new();
    let mut before = None;
    loop {
        let page = state.store.list_transactions(id, before, PAGE).await?;
        let full = page.len() as i64 == PAGE;
        before = page.last().map(|row| row.seq);
        all.extend(page);
        if !full {
            return Ok(all);
        }
    }
}

fn request_json(r: &PrivacyRequest) -> Value {
    json!({
        "id": r.id,
        "kind": r.kind,
        "status": r.status,
        "receivedAt": web::rfc3339(r.received_at),
        "dueAt": web::rfc3339(r.due_at),
        "completedAt": r.completed_at.map(web::rfc3339),
    })
}

async fn record(state: &UsersState, id: &str, kind: &str) -> Result<(), ApiError> {
    let now = state.clock.now_micros();
    let request_id = uuid::Uuid::new_v4().to_string();
    state
        .store
        .record_completed_request(&request_id, id, kind, now, now + MONTH_MICROS)
        .await?;
    Ok(())
}

/// Everything held about the caller, as one JSON document (schema in docs/privacy.md).
pub async fn export_data(
    State(state): State<UsersState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let id = principal.person()?;
    let user = registered(&state, id).await?;
    record(&state, id, "export").await?;
    let key = state
        .vault
        .person_key(id)
        .map_err(|e| ApiError::internal(&e))?
        .ok_or_else(|| ApiError::unauthorized("the account no longer exists"))?;
    let account = state
        .store
        .account(id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the account no longer exists"))?;
    let open = |field: &str, sealed: Option<&[u8]>| -> Result<Option<String>, ApiError> {
        sealed
            .map(|s| Vault::open(&key, field, id, s).map_err(|e| ApiError::internal(&e)))
            .transpose()
    };
    let mut transactions = Vec::new();
    for row in all_transactions(&state, id).await? {
        let name = row
            .name_enc
            .as_deref()
            .map(|s| {
                Vault::open(&key, "transactions.name", &row.id, s)
                    .map_err(|e| ApiError::internal(&e))
            })
            .transpose()?;
        transactions.push(json!({
            "transactionId": row.id,
            "transactionName": name,
            "category": row.category,
            "amount": format_minor(row.amount_minor),
            "pointsEarned": row.points_earned.unwrap_or(0),
            "processed": row.processed,
            "date": web::rfc3339(row.created_at),
        }));
    }
    let consents = state.store.consent_history(id).await?;
    let ledger = state.store.points_ledger(id).await?;
    let points = state.store.points(id).await?;
    let requests = state.store.privacy_requests(id).await?;
    let audit_entries = state
        .store
        .audit_entries_about(&format!("user:{id}"), 10_000)
        .await?;
    let now = state.clock.now_micros();
    let body = json!({
        "schema": "examplebank-export/1",
        "generatedAt": web::rfc3339(now),
        "profile": {
            "userId": id,
            "username": open("accounts.username", Some(&account.username_enc))?,
            "givenName": open("accounts.given_name", account.given_name_enc.as_deref())?,
            "familyName": open("accounts.family_name", account.family_name_enc.as_deref())?,
            "email": open("accounts.email", account.email_enc.as_deref())?,
            "accountCreatedAt": web::rfc3339(account.created_at),
            "registeredAt": web::rfc3339(user.registered_at),
            "consents": { "rewards": user.consent_rewards, "analytics": user.consent_analytics, "profiling": user.consent_profiling },
            "restrictedSince": user.restricted_at.map(web::rfc3339),
            "objectedToProfilingSince": user.objected_at.map(web::rfc3339),
            "erasureRequestedAt": user.erasure_requested_at.map(web::rfc3339),
        },
        "consentHistory": consents.iter().map(|e| json!({
            "purpose": e.purpose, "granted": e.granted, "policyVersion": e.policy_version,
            "policyHash": e.policy_hash, "method": e.method, "at": web::rfc3339(e.at),
        })).collect::<Vec<_>>(),
        "transactions": transactions,
        "points": { "balance": points.balance, "earned": points.earned, "redeemed": points.redeemed },
        "pointsLedger": ledger.iter().map(|(delta, kind, reference, at)| json!({
            "delta": delta, "kind": kind, "reference": reference, "at": web::rfc3339(*at),
        })).collect::<Vec<_>>(),
        "requests": requests.iter().map(request_json).collect::<Vec<_>>(),
        "auditEntries": audit_entries.iter().map(|e| json!({
            "seq": e.seq, "at": web::rfc3339(e.at), "actor": e.actor, "action": e.action,
            "target": e.target, "outcome": e.outcome, "requestId": e.request_id,
        })).collect::<Vec<_>>(),
    });
    tracing::info!(subject = %id, "data exported");
    crate::audit_self(&state, id, "data.exported", "ok").await;
    Ok((
        [(
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"examplebank-export.json\"",
        )],
        Json(body),
    )
        .into_response())
}

async fn switch(
    state: &UsersState,
    id: &str,
    which: Switch,
    on: bool,
    kind: &str,
) -> Result<StatusCode, ApiError> {
    registered(state, id).await?;
    let now = state.clock.now_micros();
    let request_id = uuid::Uuid::new_v4().to_string();
    let changed = state
        .store
        .set_switch(id, which, on, (&request_id, kind), now, now + MONTH_MICROS)
        .await?;
    if !changed {
        return Err(ApiError::conflict(
            "erasure-pending",
            "your data is being erased; it can no longer be changed",
        ));
    }
    tracing::info!(subject = %id, request = %request_id, kind, "privacy switch changed");
    crate::audit_self(state, id, &format!("{kind}.recorded"), "ok").await;
    Ok(StatusCode::NO_CONTENT)
}

/// Art. 18: data is kept but not processed: no new charges, rewards pause, no analytics.
pub async fn restrict(
    State(state): State<UsersState>,
    principal: Principal,
) -> Result<StatusCode, ApiError> {
    switch(
        &state,
        principal.person()?,
        Switch::Restriction,
        true,
        "restriction",
    )
    .await
}

pub async fn lift_restriction(
    State(state): State<UsersState>,
    principal: Principal,
) -> Result<StatusCode, ApiError> {
    switch(
        &state,
        principal.person()?,
        Switch::Restriction,
        false,
        "restriction-lifted",
    )
    .await
}

/// Art. 21/22: no profiling output for this person while the objection stands.
pub async fn object(
    State(state): State<UsersState>,
    principal: Principal,
) -> Result<StatusCode, ApiError> {
    switch(
        &state,
        principal.person()?,
        Switch::Objection,
        true,
        "objection",
    )
    .await
}

pub async fn withdraw_objection(
    State(state): State<UsersState>,
    principal: Principal,
) -> Result<StatusCode, ApiError> {
    switch(
        &state,
        principal.person()?,
        Switch::Objection,
        false,
        "objection-withdrawn",
    )
    .await
}

pub async fn list_requests(
    State(state): State<UsersState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let id = principal.person()?;
    let requests = state.store.privacy_requests(id).await?;
    Ok(Json(requests.iter().map(request_json).collect::<Vec<_>>()).into_response())
}

/// The administrators' queue: overdue first, then by due date.
pub async fn request_queue(
    State(state): State<UsersState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let now = state.clock.now_micros();
    let queue = state.store.request_queue(now, 200).await?;
    let body: Vec<Value> = queue
        .iter()
        .map(|r| {
            let mut item = request_json(r);
            item["overdue"] = json!(r.status == "pending" && r.due_at < now);
            item
        })
        .collect();
    Ok(Json(body).into_response())
}

/// Personalised insights: profiling proper, so only with consent to profiling, without an
/// objection and without a restriction. When any of those is missing nothing is read or
/// computed, and the answer says why.
pub async fn insights(
    State(state): State<UsersState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let id = principal.person()?;
    let user = registered(&state, id).await?;
    let refusal = if !user.consent_profiling {
        Some("you have not consented to profiling; give consent to the profiling purpose to see insights")
    } else if user.objected_at.is_some() {
        Some("you objected to profiling, so no insights are computed about you")
    } else if user.restricted_at.is_some() {
        Some("you restricted the processing of your data, so no insights are computed")
    } else {
        None
    };
    if let Some(reason) = refusal {
        return Err(ApiError::conflict("profiling-not-allowed", reason));
    }
    let mut by_month: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    let (mut count, mut total) = (0i64, 0i64);
    for row in all_transactions(&state, id).await? {
        *by_month
            .entry(domain::clock::month_of(row.created_at))
            .or_default()
            .entry(row.category.clone())
            .or_default() += row.amount_minor;
        count += 1;
        total += row.amount_minor;
    }
    Ok(Json(json!({
        "generatedAt": web::rfc3339(state.clock.now_micros()),
        "basedOnTransactions": count,
        "insights": compute_insights(&by_month, count, total),
    }))
    .into_response())
}

fn compute_insights(
    by_month: &BTreeMap<String, BTreeMap<String, i64>>,
    count: i64,
    total: i64,
) -> Vec<Value> {
    let mut out = Vec::new();
    if count == 0 {
        return out;
    }
    out.push(
        json!({ "kind": "average-charge", "amount": format_minor(total / count),
        "text": format!("Your average charge is {}.", format_minor(total / count)) }),
    );
    let mut months = by_month.iter().rev();
    if let Some((month, categories)) = months.next() {
        if let Some((category, amount)) = categories.iter().max_by_key(|(_, a)| **a) {
            out.push(json!({ "kind": "top-category", "month": month, "category": category, "amount": format_minor(*amount),
                "text": format!("In {month} you spent most on {category}: {}.", format_minor(*amount)) }));
        }
        if let Some((previous, before)) = months.next() {
            let now_total: i64 = categories.values().sum();
            let before_total: i64 = before.values().sum();
            let change = now_total - before_total;
            out.push(
                json!({ "kind": "month-over-month", "month": month, "previousMonth": previous,
                "change": format_minor(change),
                "text": format!("You spent {} {} in {month} than in {previous}.",
                    format_minor(change.abs()), if change >= 0 { "more" } else { "less" }) }),
            );
        }
    }
    out
}
