//! Charges: create, list (cursor pages, newest first), one by id, spending per category.

use crate::{idempotency_key, sha256_hex, TransactionsState};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use crypto::vault::Vault;
use domain::amount::format_minor;
use domain::{Amount, Category, Cursor, PageLimit, TransactionName};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use store::{ChargeOutcome, TransactionRow};
use web::{ApiError, Principal, StrictJson};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChargeRequest {
    transaction_name: String,
    category: String,
    /// Kept as raw JSON text so the amount is parsed exactly, never through a float.
    amount: Box<RawValue>,
}

pub async fn create_charge(
    State(state): State<TransactionsState>,
    principal: Principal,
    headers: HeaderMap,
    StrictJson(request): StrictJson<ChargeRequest>,
) -> Result<StatusCode, ApiError> {
    let user_id = principal.person()?;
    let name = TransactionName::parse(&request.transaction_name)?;
    let category = Category::parse(&request.category)?;
    let amount = Amount::parse_json(request.amount.get())
        .map_err(|e| ApiError::unprocessable(format!("amount: {e}")))?;
    let key = idempotency_key(&headers)?;
    // Apart from the users role, its answer decides here; together, the charge's own
    // database transaction checks the same columns (and cannot race with a withdrawal).
    let standing_checked = match &state.standing {
        Some(remote) => {
            let standing = remote.standing(user_id).await?;
            if let Some(refusal) = refusal(standing) {
                return Err(refusal);
            }
            true
        }
        None => false,
    };
    let request_hash = sha256_hex(&format!(
        "{}\u{0}{}\u{0}{}",
        name.as_str(),
        category,
        amount.minor()
    ));
    let data_key = state
        .vault
        .person_key(user_id)
        .map_err(|e| ApiError::internal(&e))?
        .ok_or_else(|| ApiError::not_found("you are not registered"))?;
    let id = uuid::Uuid::now_v7().to_string();
    let now = state.clock.now_micros();
    let month = domain::clock::month_of(now);
    let name_enc = Vault::seal(&data_key, "transactions.name", &id, name.as_str());
    let outcome = state
        .store
        .create_charge(&store::NewCharge {
            id: &id,
            user_id,
            name_enc: &name_enc,
            category: category.as_str(),
            amount_minor: amount.minor(),
            month: &month,
            idempotency: key.as_deref().map(|k| (k, request_hash.as_str())),
            now,
            standing_checked,
        })
        .await?;
    match outcome {
        ChargeOutcome::Created => {
            tracing::info!(subject = %user_id, transaction = %id, "charge accepted");
            state.reward_wakeup.notify_one();
            Ok(StatusCode::NO_CONTENT)
        }
        ChargeOutcome::Replayed => Ok(StatusCode::NO_CONTENT),
        refused => Err(match refused {
            ChargeOutcome::KeyReused => ApiError::unprocessable(
                "this Idempotency-Key was already used for a different charge",
            ),
            ChargeOutcome::NotRegistered => refusal(web::client::Standing::unregistered())
                .unwrap_or_else(|| ApiError::internal(&"unregistered person passed")),
            ChargeOutcome::NoConsent => no_consent(),
            ChargeOutcome::Restricted => restricted(),
            _ => erasure_pending(),
        }),
    }
}

/// Why a person in this standing may not be charged, if they may not.
fn refusal(standing: web::client::Standing) -> Option<ApiError> {
    if !standing.registered {
        return Some(ApiError::not_found(
            "you are not registered; POST /bank/v1/users first",
        ));
    }
    if standing.erasure_pending {
        return Some(erasure_pending());
    }
    if !standing.consent_rewards {
        return Some(no_consent());
    }
    if standing.restricted {
        return Some(restricted());
    }
    None
}

fn no_consent() -> ApiError {
    ApiError::conflict(
        "no-consent",
        "you have not consented to the rewards programme, so charges are not accepted",
    )
}

fn restricted() -> ApiError {
    ApiError::conflict(
        "restricted",
        "you have restricted the processing of your data, so new charges are not accepted",
    )
}

fn erasure_pending() -> ApiError {
    ApiError::conflict(
        "erasure-pending",
        "your data is being erased, so new charges are not accepted",
    )
}

/// Renders a transaction for its owner, decrypting the merchant with the owner's key.
fn render(row: &TransactionRow, owner: &str, key: &crypto::envelope::DataKey) -> Value {
    let name = row
        .name_enc
        .as_deref()
        .and_then(|sealed| Vault::open(key, "transactions.name", &row.id, sealed).ok());
    json!({
        "transactionId": row.id,
        "userId": owner,
        "transactionName": name,
        "category": row.category,
        "amount": format_minor(row.amount_minor),
        "pointsEarned": row.points_earned.unwrap_or(0),
        "processed": row.processed,
        "date": web::rfc3339(row.created_at),
    })
}

#[derive(Deserialize)]
pub struct ListParams {
    limit: Option<String>,
    cursor: Option<String>,
    #[serde(rename = "userId")]
    user_id: Option<String>,
}

/// Newest first, a page at a time. The page is the caller's own; asking for someone else's
/// (`?userId=`) answers 404 exactly like a missing page (case C17).
pub async fn list_transactions(
    State(state): State<TransactionsState>,
    principal: Principal,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let user_id = principal.person()?;
    let Query(params) =
        params.map_err(|_| ApiError::bad_request("the query string could not be read"))?;
    if params.user_id.as_deref().is_some_and(|u| u != user_id) {
        return Err(ApiError::not_found("no such transactions"));
    }
    let limit = PageLimit::parse(params.limit.as_deref())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let cursor = params
        .cursor
        .as_deref()
        .map(Cursor::decode)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let rows = state
        .store
        .list_transactions(user_id, cursor.map(Cursor::seq), limit.get())
        .await?;
    let key = state
        .vault
        .person_key(user_id)
        .map_err(|e| ApiError::internal(&e))?;
    let Some(key) = key else {
        return Ok(Json(Vec::<Value>::new()).into_response());
    };
    let items: Vec<Value> = rows.iter().map(|r| render(r, user_id, &key)).collect();
    let mut response = Json(items).into_response();
    if rows.len() as i64 == limit.get() {
        if let Some(last) = rows.last() {
            let next = format!(
                "</bank/v1/transactions?limit={}&cursor={}>; rel=\"next\"",
                limit.get(),
                Cursor::after(last.seq).encode()
            );
            if let Ok(value) = header::HeaderValue::from_str(&next) {
                response.headers_mut().insert(header::LINK, value);
            }
        }
    }
    Ok(response)
}

pub async fn get_transaction(
    State(state): State<TransactionsState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let user_id = principal.person()?;
    let not_found = || ApiError::not_found("no such transaction");
    let id = web::parse_id(&id, "transaction")?;
    let row = state.store.transaction(&id).await?.ok_or_else(not_found)?;
    if row.user_id.as_deref() != Some(user_id) {
        return Err(not_found());
    }
    let key = state
        .vault
        .person_key(user_id)
        .map_err(|e| ApiError::internal(&e))?
        .ok_or_else(not_found)?;
    Ok(Json(render(&row, user_id, &key)).into_response())
}

/// Spending per category, summed exactly in minor units.
pub async fn spending(
    State(state): State<TransactionsState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let user_id = principal.person()?;
    let rows = state.store.spending(user_id).await?;
    let body: Vec<Value> = rows
        .iter()
        .map(|r| json!({ "category": r.category, "amount": format_minor(r.amount_minor) }))
        .collect();
    Ok(Json(body).into_response())
}
