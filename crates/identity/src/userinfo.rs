//! Discovery, JWKS, userinfo and password change.

use crate::IdentityState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use crypto::vault::Vault;
use domain::Scope;
use serde::Deserialize;
use serde_json::json;
use web::{ApiError, JsonBody, Principal};

pub async fn discovery(State(state): State<IdentityState>) -> Response {
    let issuer = &state.config.issuer;
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/identity/v1/authorize"),
        "token_endpoint": format!("{issuer}/identity/v1/token"),
        "jwks_uri": format!("{issuer}/identity/v1/jwks"),
        "userinfo_endpoint": format!("{issuer}/identity/v1/userinfo"),
        "revocation_endpoint": format!("{issuer}/identity/v1/revoke"),
        "registration_endpoint": format!("{issuer}/identity/v1/signup"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "scopes_supported": ["openid", "bank", "admin", "rewards"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "preferred_username", "given_name", "family_name", "email"],
        "authorization_response_iss_parameter_supported": true,
    }))
    .into_response()
}

pub async fn jwks(State(state): State<IdentityState>) -> Response {
    Json(state.keys.current().jwks()).into_response()
}

/// Claims about the signed-in person, decrypted with their own key.
pub async fn userinfo(
    State(state): State<IdentityState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require_any(&[Scope::OpenId, Scope::Bank, Scope::Admin])?;
    let account = state
        .store
        .account(&principal.subject)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the account no longer exists"))?;
    let key = state
        .vault
        .person_key(&account.id)
        .map_err(|e| ApiError::internal(&e))?
        .ok_or_else(|| ApiError::unauthorized("the account no longer exists"))?;
    let open = |field: &str, sealed: &Option<Vec<u8>>| -> Result<Option<String>, ApiError> {
        sealed
            .as_deref()
            .map(|s| Vault::open(&key, field, &account.id, s).map_err(|e| ApiError::internal(&e)))
            .transpose()
    };
    Ok(Json(json!({
        "sub": account.id,
        "preferred_username": Vault::open(&key, "accounts.username", &account.id, &account.username_enc).map_err(|e| ApiError::internal(&e))?,
        "given_name": open("accounts.given_name", &account.given_name_enc)?,
        "family_name": open("accounts.family_name", &account.family_name_enc)?,
        "email": open("accounts.email", &account.email_enc)?,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChangePasswordRequest {
    current_password: String,
    new_password: String,
}

/// Changes the password and ends every session that existed before (case C11).
pub async fn change_password(
    State(state): State<IdentityState>,
    principal: Principal,
    client_ip: Option<axum::Extension<web::layers::ClientIp>>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    principal.require_any(&[Scope::OpenId, Scope::Bank, Scope::Admin])?;
    let request: ChangePasswordRequest = body.parse()?;
    // Guessing the current password with a stolen access token is throttled like a login.
    let ip = client_ip.map(|c| c.0 .0);
    let throttle_key = format!("password-change:{}", principal.subject);
    state.throttle.check(&throttle_key, ip)?;
    let new_password = domain::Password::parse(&request.new_password)?;
    let account = state
        .store
        .account(&principal.subject)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the account no longer exists"))?;
    let ok = state
        .hasher
        .verify(
            request.current_password,
            Some(account.password_hash.clone()),
        )
        .await?;
    if !ok {
        state.throttle.failed(&throttle_key, ip);
        let actor = format!("user:{}", account.id);
        state
            .audit
            .record(&actor, "password.change-refused", &actor, "wrong-password")
            .await;
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong-password",
            "the current password is not correct",
        ));
    }
    state.throttle.succeeded(&throttle_key, ip);
    let hash = state.hasher.hash(new_password).await?;
    state
        .store
        .change_password(&account.id, &hash, state.clock.now_secs())
        .await?;
    tracing::info!(subject = %account.id, "password changed; sessions revoked");
    let actor = format!("user:{}", account.id);
    state
        .audit
        .record(&actor, "password.changed", &actor, "sessions-revoked")
        .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
