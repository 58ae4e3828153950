//! Charges: create, list (cursor pages, newest first), one by id, spending per category.

use crate::{idempotency_key, sha256_hex, TransactionsState};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use crypto::vault::Vault;
use domain::amount::format_minor;
use domain::{Amount, Category, Cursor, PageLimit, TransactionName};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use store::{ChargeOutcome, TransactionRow};
use web::{ApiError, JsonBody, Principal};

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
    body: JsonBody,
) -> Result<StatusCode, ApiError> {
    let user_id = principal.person()?;
    let request: ChargeRequest = body.parse()?;
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
            // Debug only: the request line already says a charge was accepted, and a second line per
            // charge cost measurable throughput (docs/performance.md).
            tracing::debug!(subject = %user_id, transaction = %id, "charge accepted");
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

/// A transaction as its owner sees it. Serialised straight from borrowed fields (no
/// `serde_json::Value` per row); the fields are in alphabetical order, the order the
/// `Value` maps this replaced wrote them in, so the bytes on the wire are unchanged.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Rendered<'a> {
    amount: Minor,
    category: &'a str,
    date: Rfc3339,
    points_earned: i64,
    processed: bool,
    transaction_id: &'a str,
    transaction_name: Option<String>,
    user_id: &'a str,
}

/// Renders a transaction for its owner, decrypting the merchant with the owner's key.
fn render<'a>(
    row: &'a TransactionRow,
    owner: &'a str,
    key: &crypto::envelope::DataKey,
) -> Rendered<'a> {
    let name = row
        .name_enc
        .as_deref()
        .and_then(|sealed| Vault::open(key, "transactions.name", &row.id, sealed).ok());
    Rendered {
        amount: Minor(row.amount_minor),
        category: &row.category,
        date: Rfc3339(row.created_at),
        points_earned: row.points_earned.unwrap_or(0),
        processed: row.processed,
        transaction_id: &row.id,
        transaction_name: name,
        user_id: owner,
    }
}

/// An amount in minor units, written as `format_minor` writes it, without a `String`.
struct Minor(i64);

impl Serialize for Minor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        serializer.collect_str(&format_args!("{sign}{}.{:02}", abs / 100, abs % 100))
    }
}

/// A time in microseconds, written as `web::rfc3339` writes it (whole seconds, UTC, `Z`).
struct Rfc3339(i64);

impl Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let secs = self.0.div_euclid(1_000_000);
        let days = secs.div_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        if !(0..=9999).contains(&year) {
            return serializer.serialize_str(&web::rfc3339(self.0));
        }
        let of_day = secs.rem_euclid(86_400);
        serializer.collect_str(&format_args!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            of_day / 3600,
            of_day % 3600 / 60,
            of_day % 60
        ))
    }
}

/// The proleptic Gregorian date of a day number (days since 1970-01-01), counting in
/// 400-year eras that start on 1 March, so the leap day ends its year.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
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
    let items: Vec<Rendered<'_>> = rows.iter().map(|r| render(r, user_id, &key)).collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_written_exactly_as_web_rfc3339_writes_them() {
        let mut micros: Vec<i64> = vec![
            0,
            1,
            999_999,
            1_000_000,
            -1,
            -86_400_000_000,
            951_782_400_000_000,   // 2000-02-29
            951_868_799_999_999,   // 2000-02-29T23:59:59
            4_107_542_399_000_000, // 2100-02-28T23:59:59
            1_796_342_400_123_456,
            253_402_300_799_000_000, // 9999-12-31T23:59:59
            253_402_300_800_000_000, // year 10000: not RFC 3339
            -62_167_219_200_000_000, // 0000-01-01
            -62_167_219_201_000_000, // before year 0
        ];
        // Every day from 1969 to 2101 at a moving time of day.
        let mut t: i64 = -365 * 86_400_000_000;
        while t < 4_133_980_800_000_000 {
            micros.push(t);
            t += 86_400_000_000 + 3_599_000_001;
        }
        for m in micros {
            let ours = serde_json::to_string(&Rfc3339(m)).unwrap_or_default();
            let theirs = serde_json::to_string(&web::rfc3339(m)).unwrap_or_default();
            assert_eq!(ours, theirs, "at {m} microseconds");
        }
    }

    #[test]
    fn amounts_are_written_exactly_as_format_minor_writes_them() {
        for minor in [
            0,
            1,
            9,
            10,
            99,
            100,
            101,
            12_345,
            -1,
            -100,
            -12_345,
            i64::MAX,
            i64::MIN,
        ] {
            assert_eq!(
                serde_json::to_string(&Minor(minor)).unwrap_or_default(),
                serde_json::to_string(&format_minor(minor)).unwrap_or_default(),
                "{minor}"
            );
        }
    }

    #[test]
    fn a_rendered_transaction_is_the_json_object_it_always_was() {
        let (key, _) = crypto::envelope::MasterKey::generate("m1").new_data_key("person");
        let row = TransactionRow {
            seq: 7,
            id: "0190a0a0-0000-7000-8000-000000000001".into(),
            user_id: Some("person".into()),
            name_enc: Some(Vault::seal(
                &key,
                "transactions.name",
                "0190a0a0-0000-7000-8000-000000000001",
                "Caf\u{e9} \"Nord\" <b>",
            )),
            category: "dining".into(),
            amount_minor: 1_234,
            points_earned: Some(24),
            processed: true,
            created_at: 1_796_342_400_123_456,
        };
        let before = json!({
            "transactionId": row.id,
            "userId": "person",
            "transactionName": "Caf\u{e9} \"Nord\" <b>",
            "category": row.category,
            "amount": format_minor(row.amount_minor),
            "pointsEarned": 24,
            "processed": true,
            "date": web::rfc3339(row.created_at),
        });
        let ours = serde_json::to_string(&render(&row, "person", &key)).unwrap_or_default();
        assert_eq!(ours, before.to_string());
        let unsealed = TransactionRow {
            name_enc: None,
            points_earned: None,
            processed: false,
            ..row.clone()
        };
        let before = json!({
            "transactionId": unsealed.id,
            "userId": "person",
            "transactionName": null,
            "category": unsealed.category,
            "amount": "12.34",
            "pointsEarned": 0,
            "processed": false,
            "date": web::rfc3339(unsealed.created_at),
        });
        let ours = serde_json::to_string(&render(&unsealed, "person", &key)).unwrap_or_default();
        assert_eq!(ours, before.to_string());
    }
}
