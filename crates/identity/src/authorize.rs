//! The authorization endpoint: shows the login page (GET) and checks credentials (POST), then
//! redirects back to the client with a single-use code bound to the PKCE challenge.
//!
//! A request with an unknown client or a redirect URI that is not registered exactly is never
//! redirected anywhere: the error is shown here, so the endpoint cannot be an open redirect.

use crate::{pages, IdentityState};
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use domain::{Scope, Scopes};
use serde::Deserialize;

#[derive(Deserialize, Default)]
pub struct AuthorizeParams {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    nonce: Option<String>,
    // Present on the POST from the login form only.
    username: Option<String>,
    password: Option<String>,
}

/// A checked authorization request.
struct Checked {
    client_id: String,
    redirect_uri: String,
    scope: Scopes,
    state: Option<String>,
    code_challenge: String,
    nonce: Option<String>,
}

enum Refusal {
    /// Shown on our page; never redirected.
    Page(&'static str),
    /// Sent back to the client's (verified) redirect URI.
    Redirect {
        uri: String,
        error: &'static str,
        state: Option<String>,
    },
}

fn check(state: &IdentityState, p: &AuthorizeParams) -> Result<Checked, Refusal> {
    let client = p
        .client_id
        .as_deref()
        .and_then(|id| state.clients.get(id))
        .filter(|c| c.authorization_code)
        .ok_or(Refusal::Page("This app is not known to examplebank."))?;
    let redirect_uri = p
        .redirect_uri
        .as_deref()
        .filter(|uri| client.accepts_redirect(uri))
        .ok_or(Refusal::Page(
            "This app asked to return to an address that is not registered.",
        ))?;
    let state_param = p.state.clone();
    let refuse = |error| Refusal::Redirect {
        uri: redirect_uri.to_owned(),
        error,
        state: state_param.clone(),
    };
    if p.state.as_deref().is_some_and(|s| s.len() > 512) {
        return Err(refuse("invalid_request"));
    }
    if p.response_type.as_deref() != Some("code") {
        return Err(refuse("unsupported_response_type"));
    }
    // PKCE is mandatory and only S256 is accepted: `plain` would leak the verifier.
    let challenge = p.code_challenge.as_deref().unwrap_or("");
    let challenge_ok = challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if p.code_challenge_method.as_deref() != Some("S256") || !challenge_ok {
        return Err(refuse("invalid_request"));
    }
    let requested = match p.scope.as_deref() {
        None | Some("") => Scopes::new([Scope::OpenId, Scope::Bank]),
        Some(raw) => Scopes::parse(raw).ok_or_else(|| refuse("invalid_scope"))?,
    };
    let scope = requested.intersect(&client.allowed_scopes);
    if scope.is_empty() {
        return Err(refuse("invalid_scope"));
    }
    let printable = |s: &str| s.bytes().all(|b| (0x20..0x7f).contains(&b));
    if p.nonce
        .as_deref()
        .is_some_and(|n| n.len() > 256 || !printable(n))
    {
        return Err(refuse("invalid_request"));
    }
    Ok(Checked {
        client_id: client.id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        scope,
        state: p.state.clone(),
        code_challenge: challenge.to_owned(),
        nonce: p.nonce.clone(),
    })
}

fn redirect_with(state: &IdentityState, uri: &str, pairs: &[(&str, &str)]) -> Response {
    let mut url = match url::Url::parse(uri) {
        Ok(url) => url,
        Err(_) => {
            return pages::error_page(StatusCode::BAD_REQUEST, "The return address is not valid.")
        }
    };
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in pairs {
            query.append_pair(name, value);
        }
        // RFC 9207: tell the client which issuer answered.
        query.append_pair("iss", &state.config.issuer);
    }
    (StatusCode::SEE_OTHER, [(header::LOCATION, url.to_string())]).into_response()
}

fn refusal_response(state: &IdentityState, refusal: Refusal) -> Response {
    match refusal {
        Refusal::Page(message) => pages::error_page(StatusCode::BAD_REQUEST, message),
        Refusal::Redirect {
            uri,
            error,
            state: st,
        } => {
            let mut pairs = vec![("error", error)];
            if let Some(s) = st.as_deref() {
                pairs.push(("state", s));
            }
            redirect_with(state, &uri, &pairs)
        }
    }
}

fn hidden_fields(c: &Checked) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("response_type", "code".to_owned()),
        ("client_id", c.client_id.clone()),
        ("redirect_uri", c.redirect_uri.clone()),
        ("scope", c.scope.to_string()),
        ("code_challenge", c.code_challenge.clone()),
        ("code_challenge_method", "S256".to_owned()),
    ];
    if let Some(s) = &c.state {
        fields.push(("state", s.clone()));
    }
    if let Some(n) = &c.nonce {
        fields.push(("nonce", n.clone()));
    }
    fields
}

fn login_form(status: StatusCode, c: &Checked, error: Option<&str>) -> Response {
    let fields = hidden_fields(c);
    let borrowed: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
    pages::login_page(status, &borrowed, error)
}

pub async fn show_login(
    State(state): State<IdentityState>,
    params: Result<Query<AuthorizeParams>, QueryRejection>,
) -> Response {
    let params = params.map(|q| q.0).unwrap_or_default();
    match check(&state, &params) {
        Ok(checked) => login_form(StatusCode::OK, &checked, None),
        Err(refusal) => refusal_response(&state, refusal),
    }
}

pub const LOGIN_FAILED: &str = "The username or password is incorrect.";

pub async fn submit_login(
    State(state): State<IdentityState>,
    client_ip: Option<axum::Extension<web::layers::ClientIp>>,
    form: Result<Form<AuthorizeParams>, FormRejection>,
) -> Response {
    let Ok(Form(params)) = form else {
        return pages::error_page(
            StatusCode::BAD_REQUEST,
            "The sign-in form could not be read.",
        );
    };
    let checked = match check(&state, &params) {
        Ok(checked) => checked,
        Err(refusal) => return refusal_response(&state, refusal),
    };
    let username = params.username.as_deref().unwrap_or("");
    let password = params.password.clone().unwrap_or_default();
    let ip = client_ip.map(|c| c.0 .0);
    // Throttle on a keyed hash of the name, so the limiter's table holds no usernames.
    let throttle_key = crypto::b64::encode(
        &state
            .vault
            .blind_index("login", &username.to_ascii_lowercase()),
    );
    if let Err(exceeded) = state.throttle.check(&throttle_key, ip) {
        state
            .audit
            .record("anonymous", "login.throttled", "unknown-account", "refused")
            .await;
        let mut page = login_form(
            StatusCode::TOO_MANY_REQUESTS,
            &checked,
            Some("Too many failed sign-ins. Wait a moment, then try again."),
        );
        let seconds = exceeded.retry_after.as_secs().max(1).to_string();
        if let Ok(value) = axum::http::HeaderValue::from_str(&seconds) {
            page.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return page;
    }
    let account = match domain::Username::parse(username) {
        Ok(name) => {
            let index = state.vault.blind_index("username", name.as_str());
            match state.store.account_by_username_index(&index).await {
                Ok(found) => found,
                Err(err) => return web::ApiError::from(err).into_response(),
            }
        }
        Err(_) => None,
    };
    let stored = account.as_ref().map(|a| a.password_hash.clone());
    let stored_id = account.as_ref().map(|a| a.id.clone());
    let verified = match state.hasher.verify(password, stored).await {
        Ok(ok) => ok,
        Err(busy) => return web::ApiError::from(busy).into_response(),
    };
    let Some(account) = account.filter(|a| verified && a.status == "active") else {
        tracing::info!("login failed");
        state.throttle.failed(&throttle_key, ip);
        web::metrics::metrics()
            .login_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let target = account_target(stored_id.as_deref());
        state
            .audit
            .record("anonymous", "login.failed", &target, "refused")
            .await;
        return login_form(StatusCode::UNAUTHORIZED, &checked, Some(LOGIN_FAILED));
    };
    let allowed = if account.role == "admin" {
        Scopes::new([Scope::OpenId, Scope::Admin])
    } else {
        Scopes::new([Scope::OpenId, Scope::Bank])
    };
    let scope = checked.scope.intersect(&allowed);
    if !scope.contains(Scope::Bank) && !scope.contains(Scope::Admin) {
        let mut pairs = vec![("error", "access_denied")];
        if let Some(s) = checked.state.as_deref() {
            pairs.push(("state", s));
        }
        return redirect_with(&state, &checked.redirect_uri, &pairs);
    }
    let code = crypto::secrets::random_token();
    let now = state.clock.now_secs();
    let record = store::NewAuthCode {
        code_hash: crypto::secrets::sha256_hex(code.as_bytes()),
        client_id: checked.client_id.clone(),
        account_id: account.id.clone(),
        redirect_uri: checked.redirect_uri.clone(),
        scope: scope.to_string(),
        code_challenge: checked.code_challenge.clone(),
        nonce: checked.nonce.clone(),
        expires_at: now + state.config.code_seconds,
        now,
    };
    match state.store.insert_auth_code(&record).await {
        Ok(()) => {}
        // Erased while the password was being checked: the account is gone.
        Err(store::StoreError::Missing) => {
            return login_form(StatusCode::UNAUTHORIZED, &checked, Some(LOGIN_FAILED))
        }
        Err(err) => return web::ApiError::from(err).into_response(),
    }
    tracing::info!(subject = %account.id, "login succeeded");
    if let Err(err) = state
        .store
        .touch_login(&account.id, state.clock.now_micros())
        .await
    {
        tracing::warn!(error = %err, "could not record the login time");
    }
    let actor = format!("user:{}", account.id);
    state
        .audit
        .record(&actor, "login.succeeded", &actor, "ok")
        .await;
    let mut pairs = vec![("code", code.as_str())];
    if let Some(s) = checked.state.as_deref() {
        pairs.push(("state", s));
    }
    redirect_with(&state, &checked.redirect_uri, &pairs)
}

/// The audit target of a failed login: the pseudonymous account when the username exists,
/// never the username itself.
fn account_target(id: Option<&str>) -> String {
    id.map(|id| format!("user:{id}"))
        .unwrap_or_else(|| "unknown-account".to_owned())
}
