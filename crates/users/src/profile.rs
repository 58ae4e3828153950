//! Registration, profile, rectification and the erasure request.

use crate::{policy_hash, UsersState, POLICY_VERSION};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use crypto::vault::Vault;
use domain::{Email, PersonName};
use serde::Deserialize;
use serde_json::json;
use store::ConsentRecord;
use web::{ApiError, JsonBody, Principal};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegisterRequest {
    consent_given: bool,
}

pub async fn register_user(
    State(state): State<UsersState>,
    principal: Principal,
    body: JsonBody,
) -> Result<StatusCode, ApiError> {
    let id = principal.person()?;
    let request: RegisterRequest = body.parse()?;
    if state.verifier.is_external() {
        ensure_external_key(&state, id)?;
    }
    let hash = policy_hash();
    let consents: Vec<ConsentRecord> = domain::Purpose::ALL
        .iter()
        .map(|p| ConsentRecord {
            purpose: p.as_str(),
            granted: *p == domain::Purpose::Rewards && request.consent_given,
            policy_version: POLICY_VERSION,
            policy_hash: &hash,
            method: "registration",
        })
        .collect();
    match state
        .store
        .register_user(id, &consents, state.clock.now_micros())
        .await
    {
        Ok(()) => {
            tracing::info!(subject = %id, "person registered");
            let outcome = if request.consent_given {
                "rewards-granted"
            } else {
                "rewards-refused"
            };
            crate::audit_self(&state, id, "user.registered", outcome).await;
            Ok(StatusCode::NO_CONTENT)
        }
        Err(store::StoreError::Conflict) => Err(ApiError::conflict(
            "already-registered",
            "you are already registered",
        )),
        Err(err) => Err(err.into()),
    }
}

/// People of an external identity provider have no account here, so their data key is made
/// when they register. Someone erased stays erased: their pseudonym is in the journal.
fn ensure_external_key(state: &UsersState, id: &str) -> Result<(), ApiError> {
    let internal = |e: crypto::CryptoError| ApiError::internal(&e);
    if state.vault.person_key(id).map_err(internal)?.is_some() {
        return Ok(());
    }
    let keys = state.vault.key_store();
    if keys
        .journal_entries()
        .map_err(internal)?
        .iter()
        .any(|p| p == id)
    {
        return Err(ApiError::conflict(
            "erased",
            "this identity was erased and cannot register again",
        ));
    }
    state.vault.create_person(id).map_err(internal)?;
    Ok(())
}

async fn registered(state: &UsersState, id: &str) -> Result<store::BankUser, ApiError> {
    state
        .store
        .bank_user(id)
        .await?
        .ok_or_else(|| ApiError::not_found("you are not registered; POST /bank/v1/users first"))
}

pub async fn get_profile(
    State(state): State<UsersState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let id = principal.person()?;
    let user = registered(&state, id).await?;
    let account = state.store.account(id).await?;
    // With an external identity provider the account (names, e-mail) lives there.
    if account.is_none() && !state.verifier.is_external() {
        return Err(ApiError::unauthorized("the account no longer exists"));
    }
    let key = state
        .vault
        .person_key(id)
        .map_err(|e| ApiError::internal(&e))?
        .ok_or_else(|| ApiError::unauthorized("the account no longer exists"))?;
    let open = |field: &str, sealed: Option<&[u8]>| -> Result<Option<String>, ApiError> {
        sealed
            .map(|s| Vault::open(&key, field, id, s).map_err(|e| ApiError::internal(&e)))
            .transpose()
    };
    let account = account.as_ref();
    Ok(Json(json!({
        "userId": user.id,
        "username": open("accounts.username", account.map(|a| a.username_enc.as_slice()))?,
        "givenName": open("accounts.given_name", account.and_then(|a| a.given_name_enc.as_deref()))?,
        "familyName": open("accounts.family_name", account.and_then(|a| a.family_name_enc.as_deref()))?,
        "email": open("accounts.email", account.and_then(|a| a.email_enc.as_deref()))?,
        "consentGiven": user.consent_rewards,
        "consents": {
            "rewards": user.consent_rewards,
            "analytics": user.consent_analytics,
            "profiling": user.consent_profiling,
        },
        "restricted": user.restricted_at.is_some(),
        "objectedToProfiling": user.objected_at.is_some(),
        "deleteRequested": user.erasure_requested_at.is_some(),
        "registeredAt": web::rfc3339(user.registered_at),
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateRequest {
    consent_given: Option<bool>,
    given_name: Option<String>,
    family_name: Option<String>,
    email: Option<String>,
}

/// Changes consent for the rewards programme (the original API) and rectifies names and
/// e-mail (Art. 16). Refused with 409 while erasure is pending.
pub async fn update_profile(
    State(state): State<UsersState>,
    principal: Principal,
    body: JsonBody,
) -> Result<StatusCode, ApiError> {
    let id = principal.person()?;
    let request: UpdateRequest = body.parse()?;
    let user = registered(&state, id).await?;
    if user.erasure_requested_at.is_some() {
        return Err(ApiError::conflict(
            "erasure-pending",
            "your data is being erased; it can no longer be changed",
        ));
    }
    let given = request
        .given_name
        .as_deref()
        .map(|n| PersonName::parse("givenName", n))
        .transpose()?;
    let family = request
        .family_name
        .as_deref()
        .map(|n| PersonName::parse("familyName", n))
        .transpose()?;
    let email = request.email.as_deref().map(Email::parse).transpose()?;
    let now = state.clock.now_micros();
    if given.is_some() || family.is_some() || email.is_some() {
        rectify(&state, id, given, family, email).await?;
    }
    if let Some(granted) = request.consent_given {
        let hash = policy_hash();
        let record = ConsentRecord {
            purpose: "rewards",
            granted,
            policy_version: POLICY_VERSION,
            policy_hash: &hash,
            method: "api",
        };
        if !state.store.set_consent(id, &record, now).await? {
            return Err(ApiError::conflict(
                "erasure-pending",
                "your data is being erased; it can no longer be changed",
            ));
        }
        tracing::info!(subject = %id, purpose = "rewards", granted, "consent changed");
        let outcome = if granted {
            "rewards-granted"
        } else {
            "rewards-withdrawn"
        };
        crate::audit_self(&state, id, "consent.changed", outcome).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn rectify(
    state: &UsersState,
    id: &str,
    given: Option<PersonName>,
    family: Option<PersonName>,
    email: Option<Email>,
) -> Result<(), ApiError> {
    let account = state
        .store
        .account(id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the account no longer exists"))?;
    let key = state
        .vault
        .person_key(id)
        .map_err(|e| ApiError::internal(&e))?
        .ok_or_else(|| ApiError::unauthorized("the account no longer exists"))?;
    let reseal = |field: &str, new: Option<&str>, old: &Option<Vec<u8>>| -> Vec<u8> {
        match new {
            Some(text) => Vault::seal(&key, field, id, text),
            None => old.clone().unwrap_or_default(),
        }
    };
    state
        .store
        .update_account_profile(
            id,
            &reseal(
                "accounts.given_name",
                given.as_ref().map(PersonName::as_str),
                &account.given_name_enc,
            ),
            &reseal(
                "accounts.family_name",
                family.as_ref().map(PersonName::as_str),
                &account.family_name_enc,
            ),
            &reseal(
                "accounts.email",
                email.as_ref().map(Email::as_str),
                &account.email_enc,
            ),
        )
        .await?;
    tracing::info!(subject = %id, "profile rectified");
    crate::audit_self(state, id, "profile.rectified", "ok").await;
    let now = state.clock.now_micros();
    state
        .store
        .record_completed_request(
            &uuid::Uuid::new_v4().to_string(),
            id,
            "rectification",
            now,
            now + crate::MONTH_MICROS,
        )
        .await?;
    Ok(())
}

async fn start_erasure(state: &UsersState, id: &str) -> Result<serde_json::Value, ApiError> {
    let now = state.clock.now_micros();
    let run_after = now + state.erasure_grace_seconds * 1_000_000;
    let (request, created) = state
        .store
        .request_erasure(
            &uuid::Uuid::new_v4().to_string(),
            id,
            now,
            run_after,
            now + crate::MONTH_MICROS,
        )
        .await?;
    if created {
        tracing::info!(subject = %id, request = %request.id, "erasure requested");
        crate::audit_self(state, id, "erasure.requested", "pending").await;
    }
    state.erasure_wakeup.notify_one();
    let details = json!({
        "requestId": request.id,
        "receivedAt": web::rfc3339(request.received_at),
        "scheduledFor": web::rfc3339(run_after.max(request.received_at)),
        "dueBy": web::rfc3339(request.due_at),
    });
    let signed = crate::receipt(state, "erasure-receipt+jwt", id, details.clone());
    let mut body = details;
    body["alreadyPending"] = json!(!created);
    body["receipt"] = json!(signed);
    Ok(body)
}

/// The original API: 204, and erasure starts.
pub async fn delete_self(
    State(state): State<UsersState>,
    principal: Principal,
) -> Result<StatusCode, ApiError> {
    let id = principal.person()?;
    start_erasure(&state, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// 202 with the request's details; the erasure runs after the grace period.
pub async fn request_erasure(
    State(state): State<UsersState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let id = principal.person()?;
    let body = start_erasure(&state, id).await?;
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}
