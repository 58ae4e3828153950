//! Bearer-token authentication shared by every role: signature, type, issuer, audience and
//! time are checked by `crypto::jws`; then the account and session must still be alive, so
//! tokens of erased, disabled or logged-out people die at once, not when they expire.

use crate::ApiError;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::{header, request::Parts};
use domain::{Clock, Scope, Scopes};
use std::sync::{Arc, RwLock};
use store::{SessionState, Store};

/// Who is calling.
#[derive(Clone, PartialEq, Eq)]
pub struct Principal {
    /// The pseudonymous subject: a person's id, or a service client's id.
    pub subject: String,
    pub client_id: String,
    pub scopes: Scopes,
    pub session: Option<String>,
    pub kind: PrincipalKind,
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Principal")
            .field("subject", &self.subject)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    Person,
    Service,
}

impl Principal {
    /// Refuses with 403 unless the token carries `scope`.
    pub fn require(&self, scope: Scope) -> Result<&Self, ApiError> {
        if self.scopes.contains(scope) {
            Ok(self)
        } else {
            Err(ApiError::forbidden_scope(scope.as_str()))
        }
    }

    /// Refuses with 403 unless the token carries one of `scopes`.
    pub fn require_any(&self, scopes: &[Scope]) -> Result<&Self, ApiError> {
        if scopes.iter().any(|s| self.scopes.contains(*s)) {
            Ok(self)
        } else {
            let names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
            Err(ApiError::forbidden_scope(&names.join(" ")))
        }
    }

    /// A person acting for themselves with the `bank` scope.
    pub fn person(&self) -> Result<&str, ApiError> {
        self.require(Scope::Bank)?;
        if self.kind != PrincipalKind::Person {
            return Err(ApiError::forbidden_scope("bank"));
        }
        Ok(&self.subject)
    }
}

pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

pub struct TokenVerifier {
    per_person: Option<crate::ratelimit::RateLimiter>,
    keys: RwLock<crypto::jws::Verifier>,
    issuer: String,
    audience: String,
    store: Store,
    clock: Arc<dyn Clock>,
}

impl TokenVerifier {
    pub fn new(
        keys: crypto::jws::Verifier,
        issuer: impl Into<String>,
        audience: impl Into<String>,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            per_person: None,
            keys: RwLock::new(keys),
            issuer: issuer.into(),
            audience: audience.into(),
            store,
            clock,
        }
    }

    /// Limits how many requests one person (or service) may make per minute.
    pub fn with_person_limit(mut self, per_minute: u32) -> Self {
        self.per_person = Some(crate::ratelimit::RateLimiter::new(
            per_minute,
            std::time::Duration::from_secs(60),
        ));
        self
    }

    /// Replaces the verification keys (after a signing-key rotation).
    pub fn replace_keys(&self, keys: crypto::jws::Verifier) {
        if let Ok(mut guard) = self.keys.write() {
            *guard = keys;
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub async fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let claims = {
            let keys = self
                .keys
                .read()
                .map_err(|_| ApiError::internal(&"token key lock poisoned"))?;
            let expectations = crypto::jws::Expectations {
                typ: ACCESS_TOKEN_TYPE,
                issuer: &self.issuer,
                audience: &self.audience,
                now: self.clock.now_secs(),
                leeway: 5,
            };
            keys.verify(token, &expectations).map_err(|err| {
                tracing::info!(reason = %err, "bearer credential refused");
                ApiError::unauthorized("the access token is not valid")
            })?
        };
        let text = |name: &str| claims.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        let (Some(subject), Some(client_id), Some(scope)) =
            (text("sub"), text("client_id"), text("scope"))
        else {
            return Err(ApiError::unauthorized(
                "the access token lacks required claims",
            ));
        };
        let scopes = Scopes::parse(&scope)
            .ok_or_else(|| ApiError::unauthorized("the access token has unknown scopes"))?;
        let session = text("sid");
        let kind = if session.is_none() && subject == client_id {
            PrincipalKind::Service
        } else {
            PrincipalKind::Person
        };
        if let Some(limiter) = &self.per_person {
            limiter
                .check(&format!("sub:{subject}"))
                .map_err(|exceeded| {
                    tracing::warn!(subject = %subject, "rate limit reached for a person");
                    ApiError::from(exceeded)
                })?;
        }
        if kind == PrincipalKind::Person {
            let state = self
                .store
                .session_state(&subject, session.as_deref())
                .await?;
            if state != SessionState::Active {
                return Err(ApiError::unauthorized(
                    "the session has ended; sign in again",
                ));
            }
        }
        Ok(Principal {
            subject,
            client_id,
            scopes,
            session,
            kind,
        })
    }
}

/// Extracts the token from `Authorization: Bearer <token>`.
pub fn bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    let mut values = parts.headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(ApiError::unauthorized(
            "send an access token: 'Authorization: Bearer <token>'",
        ));
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not valid"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthorized("the Authorization header is not valid"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(ApiError::unauthorized("use the Bearer scheme"));
    }
    Ok(token.trim())
}

impl<S> FromRequestParts<S> for Principal
where
    Arc<TokenVerifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let verifier = Arc::<TokenVerifier>::from_ref(state);
        let token = bearer_token(parts)?;
        let principal = verifier.verify(token).await?;
        if let Some(slot) = parts.extensions.get::<crate::layers::ActorSlot>() {
            if let Ok(mut actor) = slot.0.lock() {
                *actor = Some(principal.subject.clone());
            }
        }
        parts.extensions.insert(principal.clone());
        Ok(principal)
    }
}
