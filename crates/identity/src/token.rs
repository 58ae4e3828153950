//! The token endpoint (authorization_code, refresh_token, client_credentials; no password
//! grant) and revocation. Errors are problem+json carrying OAuth's `error` member.

use crate::clients::{Client, ClientKind};
use crate::IdentityState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::{Scope, Scopes};
use serde::Deserialize;
use serde_json::json;
use store::{CodeExchange, RotationOutcome};
use web::ApiError;

#[derive(Deserialize, Default)]
struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
    token: Option<String>,
}

fn oauth_error(status: StatusCode, error: &'static str, description: &str) -> ApiError {
    let err = ApiError::new(status, "oauth", description)
        .with_member("error", error)
        .with_member("error_description", description);
    if status == StatusCode::UNAUTHORIZED {
        err.with_header(header::WWW_AUTHENTICATE, "Basic realm=\"examplebank\"")
    } else {
        err
    }
}

fn invalid_grant(description: &str) -> ApiError {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

fn read_form(headers: &HeaderMap, body: &[u8]) -> Result<TokenForm, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "send the token request as application/x-www-form-urlencoded",
        ));
    }
    serde_urlencoded::from_bytes::<TokenForm>(body).map_err(|_| {
        oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the form could not be read",
        )
    })
}

/// Finds and authenticates the client: HTTP Basic or form fields for confidential clients,
/// `client_id` alone for public ones.
fn client<'a>(
    state: &'a IdentityState,
    headers: &HeaderMap,
    form: &TokenForm,
) -> Result<&'a Client, ApiError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(|b| decode_basic(b.trim()));
    let (id, secret) = match basic {
        Some((id, secret)) => (id, Some(secret)),
        None => (
            form.client_id.clone().unwrap_or_default(),
            form.client_secret.clone(),
        ),
    };
    state
        .clients
        .authenticate(&id, secret.as_deref())
        .ok_or_else(|| {
            oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication failed",
            )
        })
}

fn decode_basic(encoded: &str) -> Option<(String, String)> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (id, secret) = text.split_once(':')?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("v={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

pub async fn issue_token(
    State(state): State<IdentityState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let form = read_form(&headers, &body)?;
        let client = client(&state, &headers, &form)?;
        match form.grant_type.as_deref() {
            Some("authorization_code") => exchange_code(&state, client, &form).await,
            Some("refresh_token") => refresh(&state, client, &form).await,
            Some("client_credentials") => client_credentials(&state, client, &form).await,
            _ => Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "supported grants: authorization_code, refresh_token, client_credentials",
            )),
        }
    }
    .await;
    match result {
        Ok(body) => (StatusCode::OK, [(header::PRAGMA, "no-cache")], Json(body)).into_response(),
        Err(err) => err.into_response(),
    }
}

async fn exchange_code(
    state: &IdentityState,
    client: &Client,
    form: &TokenForm,
) -> Result<serde_json::Value, ApiError> {
    let code = form
        .code
        .as_deref()
        .ok_or_else(|| invalid_grant("code is missing"))?;
    let code_hash = crypto::secrets::sha256_hex(code.as_bytes());
    let now = state.clock.now_secs();
    let family_id = uuid::Uuid::new_v4().to_string();
    let refresh = crypto::secrets::random_token();
    let refresh_hash = crypto::secrets::sha256_hex(refresh.as_bytes());
    let seed = store::SessionSeed {
        family_id: &family_id,
        refresh_hash: &refresh_hash,
        refresh_expires_at: now + state.config.refresh_token_seconds,
        now,
    };
    let verifier = form.code_verifier.as_deref().unwrap_or("");
    let redirect_uri = form.redirect_uri.as_deref();
    let accept = |grant: &store::CodeGrant| {
        grant.client_id == client.id
            && redirect_uri == Some(grant.redirect_uri.as_str())
            && grant.expires_at > now
            && crypto::secrets::pkce_s256_matches(verifier, &grant.code_challenge)
    };
    let grant = match state.store.exchange_code(&code_hash, &seed, accept).await? {
        CodeExchange::Exchanged(grant) => grant,
        CodeExchange::Refused => {
            return Err(invalid_grant("the code is not valid for this request"))
        }
        CodeExchange::Replayed => {
            tracing::warn!("authorization code replayed; its session was revoked");
            state
                .audit
                .record(
                    &format!("client:{}", client.id),
                    "code.replayed",
                    "session",
                    "revoked",
                )
                .await;
            return Err(invalid_grant("the code was already used"));
        }
        CodeExchange::Unknown => return Err(invalid_grant("the code is not valid")),
    };
    let scopes = Scopes::parse(&grant.scope).unwrap_or_default();
    let mut body = token_body(
        state,
        &grant.account_id,
        &client.id,
        &scopes,
        Some(&family_id),
        now,
    );
    body["refresh_token"] = json!(refresh);
    if scopes.contains(Scope::OpenId) {
        body["id_token"] = json!(id_token(
            state,
            &grant.account_id,
            &client.id,
            grant.nonce.as_deref(),
            now
        ));
    }
    tracing::info!(subject = %grant.account_id, client = %client.id, "tokens issued");
    let actor = format!("user:{}", grant.account_id);
    state
        .audit
        .record(
            &actor,
            "token.issued",
            &format!("session:{family_id}"),
            "ok",
        )
        .await;
    Ok(body)
}

async fn refresh(
    state: &IdentityState,
    client: &Client,
    form: &TokenForm,
) -> Result<serde_json::Value, ApiError> {
    let presented = form
        .refresh_token
        .as_deref()
        .ok_or_else(|| invalid_grant("refresh_token is missing"))?;
    let now = state.clock.now_secs();
    let new_token = crypto::secrets::random_token();
    let outcome = state
        .store
        .rotate_refresh_token(
            &crypto::secrets::sha256_hex(presented.as_bytes()),
            &crypto::secrets::sha256_hex(new_token.as_bytes()),
            now + state.config.refresh_token_seconds,
            now,
        )
        .await?;
    let rotated = match outcome {
        RotationOutcome::Rotated(rotated) => rotated,
        RotationOutcome::ReuseDetected => {
            tracing::warn!("refresh token reused; the whole session was revoked");
            state
                .audit
                .record(
                    &format!("client:{}", client.id),
                    "token.reused",
                    "session",
                    "revoked",
                )
                .await;
            return Err(invalid_grant(
                "the refresh token was already used; sign in again",
            ));
        }
        RotationOutcome::Invalid => return Err(invalid_grant("the refresh token is not valid")),
    };
    if rotated.client_id != client.id {
        state
            .store
            .revoke_session(&rotated.family_id, "wrong_client", now)
            .await?;
        return Err(invalid_grant("the refresh token belongs to another client"));
    }
    let scopes = Scopes::parse(&rotated.scope).unwrap_or_default();
    let mut body = token_body(
        state,
        &rotated.account_id,
        &client.id,
        &scopes,
        Some(&rotated.family_id),
        now,
    );
    body["refresh_token"] = json!(new_token);
    tracing::info!(subject = %rotated.account_id, "tokens refreshed");
    let actor = format!("user:{}", rotated.account_id);
    state
        .audit
        .record(
            &actor,
            "token.refreshed",
            &format!("session:{}", rotated.family_id),
            "ok",
        )
        .await;
    Ok(body)
}

async fn client_credentials(
    state: &IdentityState,
    client: &Client,
    form: &TokenForm,
) -> Result<serde_json::Value, ApiError> {
    if !client.client_credentials || !matches!(client.kind, ClientKind::Confidential { .. }) {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "this client may not use client_credentials",
        ));
    }
    let scopes = match form.scope.as_deref() {
        None | Some("") => client.allowed_scopes.clone(),
        Some(raw) => {
            let requested = Scopes::parse(raw).ok_or_else(|| {
                oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", "unknown scope")
            })?;
            let granted = requested.intersect(&client.allowed_scopes);
            if granted != requested {
                return Err(oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    "scope not allowed for this client",
                ));
            }
            granted
        }
    };
    let now = state.clock.now_secs();
    tracing::info!(client = %client.id, "service token issued");
    let actor = format!("client:{}", client.id);
    state
        .audit
        .record(&actor, "token.issued", &actor, "ok")
        .await;
    Ok(token_body(
        state, &client.id, &client.id, &scopes, None, now,
    ))
}

/// Signs an access token (RFC 9068 shape) and wraps it in the token response.
fn token_body(
    state: &IdentityState,
    subject: &str,
    client_id: &str,
    scopes: &Scopes,
    session: Option<&str>,
    now: i64,
) -> serde_json::Value {
    let ttl = state.config.access_token_seconds;
    let mut claims = json!({
        "iss": state.config.issuer,
        "aud": state.config.audience,
        "sub": subject,
        "client_id": client_id,
        "scope": scopes.to_string(),
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "jti": uuid::Uuid::new_v4().to_string(),
    });
    if let Some(sid) = session {
        claims["sid"] = json!(sid);
    }
    let access = crypto::jws::sign(
        state.keys.current().active(),
        web::auth::ACCESS_TOKEN_TYPE,
        &claims,
    );
    json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ttl,
        "scope": scopes.to_string(),
    })
}

fn id_token(
    state: &IdentityState,
    subject: &str,
    client_id: &str,
    nonce: Option<&str>,
    now: i64,
) -> String {
    let mut claims = json!({
        "iss": state.config.issuer,
        "aud": client_id,
        "sub": subject,
        "iat": now,
        "auth_time": now,
        "exp": now + state.config.access_token_seconds,
    });
    if let Some(nonce) = nonce {
        claims["nonce"] = json!(nonce);
    }
    crypto::jws::sign(state.keys.current().active(), "JWT", &claims)
}

/// RFC 7009: always 200 for a well-formed request, whether or not the token was known.
pub async fn revoke_token(
    State(state): State<IdentityState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let form = read_form(&headers, &body)?;
        let client = client(&state, &headers, &form)?;
        let token = form.token.as_deref().ok_or_else(|| {
            oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "token is missing",
            )
        })?;
        let now = state.clock.now_secs();
        if token.matches('.').count() == 2 {
            // An access token: end the session it belongs to, if it is ours and valid.
            if let Ok(principal) = state.verifier.verify(token).await {
                if let (Some(sid), true) = (
                    principal.session.as_deref(),
                    principal.client_id == client.id,
                ) {
                    state.store.revoke_session(sid, "revoked", now).await?;
                }
            }
        } else {
            let hash = crypto::secrets::sha256_hex(token.as_bytes());
            state
                .store
                .revoke_refresh_token(&hash, &client.id, now)
                .await?;
        }
        tracing::info!(client = %client.id, "token revocation requested");
        state
            .audit
            .record(
                &format!("client:{}", client.id),
                "token.revoked",
                "session",
                "ok",
            )
            .await;
        Ok::<_, ApiError>(())
    }
    .await;
    match result {
        Ok(()) => StatusCode::OK.into_response(),
        Err(err) => err.into_response(),
    }
}
