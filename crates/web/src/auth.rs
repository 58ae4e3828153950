//! Bearer-token authentication shared by every role: signature, type, issuer, audience and
//! time are checked by `crypto::jws`; then the account and session must still be alive, so
//! tokens of erased, disabled or logged-out people die at once, not when they expire.

use crate::ApiError;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::{header, request::Parts};
use domain::{Clock, Scope, Scopes};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
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

    /// Another examplebank service (client credentials) holding `scope`; people never pass,
    /// whatever scopes their token carries.
    pub fn service(&self, scope: Scope) -> Result<&str, ApiError> {
        self.require(scope)?;
        if self.kind != PrincipalKind::Service {
            return Err(ApiError::forbidden_scope(scope.as_str()));
        }
        Ok(&self.subject)
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

/// Verified tokens remembered beyond this are dropped wholesale.
const VERIFIED_CACHE_LIMIT: usize = 50_000;

/// What a token's signature and claims established, remembered until the token expires so
/// that a token used again is not verified again (Ed25519 verification was half the CPU time
/// of a charge). The account and session checks still run on every request.
#[derive(Clone)]
struct Verified {
    subject: String,
    client_id: String,
    scopes: Scopes,
    session: Option<String>,
    kind: PrincipalKind,
    expires_at: i64,
}

/// Settings for an external OpenID provider that issues the access tokens instead of the
/// built-in identity role.
#[derive(Debug, Clone)]
pub struct ExternalIdp {
    pub issuer: String,
    pub jwks_url: String,
    pub audience: String,
    /// The claim holding the provider's scopes (a space-separated string or an array).
    pub scope_claim: String,
    /// `provider-scope=our-scope` pairs, comma-separated; empty maps our scope names to
    /// themselves. Provider scopes not listed are ignored.
    pub scope_map: String,
    /// At most one JWKS fetch per this period, however many unknown key ids arrive.
    pub cooldown: Duration,
}

impl ExternalIdp {
    /// Parses the scope map; a pair naming a scope we do not have is an error.
    pub fn parsed_scope_map(&self) -> Result<Vec<(String, Scope)>, String> {
        if self.scope_map.trim().is_empty() {
            return Ok(Scope::ALL
                .into_iter()
                .map(|s| (s.as_str().to_owned(), s))
                .collect());
        }
        self.scope_map
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (theirs, ours) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("'{pair}' is not provider-scope=our-scope"))?;
                let ours = Scope::parse(ours.trim())
                    .ok_or_else(|| format!("'{}' is not one of our scopes", ours.trim()))?;
                Ok((theirs.trim().to_owned(), ours))
            })
            .collect()
    }
}

/// The provider's signing keys, fetched from its JWKS URL and kept; an unknown key id causes
/// at most one fetch per cool-down period.
struct JwksCache {
    url: String,
    http: reqwest::Client,
    cooldown: Duration,
    keys: RwLock<crypto::jws::Verifier>,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    fetches: AtomicU64,
    scope_claim: String,
    scope_map: Vec<(String, Scope)>,
}

impl JwksCache {
    /// Fetches the key set unless a fetch happened within the cool-down. Returns whether a
    /// fetch was made (successful or not).
    async fn refresh(&self) -> bool {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.cooldown) {
            return false;
        }
        *last = Some(Instant::now());
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let fetched = async {
            let response = self
                .http
                .get(&self.url)
                .send()
                .await
                .map_err(|e| e.without_url().to_string())?;
            if !response.status().is_success() {
                return Err(format!("status {}", response.status()));
            }
            let jwks: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
            crypto::jws::Verifier::from_jwks(&jwks).map_err(|e| e.to_string())
        }
        .await;
        match fetched {
            Ok(verifier) => {
                tracing::info!(
                    keys = verifier.kids().len(),
                    "identity provider keys fetched"
                );
                if let Ok(mut keys) = self.keys.write() {
                    *keys = verifier;
                }
            }
            Err(reason) => tracing::warn!(%reason, "cannot fetch the identity provider's keys"),
        }
        true
    }

    fn map_scopes(&self, claim: Option<&serde_json::Value>) -> Scopes {
        let given: Vec<&str> = match claim {
            Some(serde_json::Value::String(text)) => text.split(' ').collect(),
            Some(serde_json::Value::Array(items)) => {
                items.iter().filter_map(|i| i.as_str()).collect()
            }
            _ => Vec::new(),
        };
        Scopes::new(
            self.scope_map
                .iter()
                .filter(|(theirs, _)| given.contains(&theirs.as_str()))
                .map(|(_, ours)| *ours),
        )
    }
}

/// Service clients call on behalf of many people at once (every charge asks the users
/// service for a standing), so their allowance is this many times a person's.
pub const SERVICE_LIMIT_FACTOR: u32 = 100;

pub struct TokenVerifier {
    per_person: Option<crate::ratelimit::RateLimiter>,
    per_service: Option<crate::ratelimit::RateLimiter>,
    keys: RwLock<crypto::jws::Verifier>,
    external: Option<JwksCache>,
    issuer: String,
    audience: String,
    store: Store,
    clock: Arc<dyn Clock>,
    verified: Mutex<HashMap<[u8; 32], Verified>>,
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
            per_service: None,
            keys: RwLock::new(keys),
            external: None,
            issuer: issuer.into(),
            audience: audience.into(),
            store,
            clock,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Verifies tokens of an external provider, with keys from its JWKS URL. The key set is
    /// fetched on first need (call [`TokenVerifier::prefetch`] at start).
    pub fn external(
        idp: &ExternalIdp,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        let mut verifier = Self::new(
            crypto::jws::Verifier::new(),
            idp.issuer.clone(),
            idp.audience.clone(),
            store,
            clock,
        );
        verifier.external = Some(JwksCache {
            url: idp.jwks_url.clone(),
            http,
            cooldown: idp.cooldown,
            keys: RwLock::new(crypto::jws::Verifier::new()),
            last_fetch: tokio::sync::Mutex::new(None),
            fetches: AtomicU64::new(0),
            scope_claim: idp.scope_claim.clone(),
            scope_map: idp.parsed_scope_map()?,
        });
        Ok(verifier)
    }

    /// Fetches an external provider's keys now (no-op for the built-in identity role).
    pub async fn prefetch(&self) {
        if let Some(external) = &self.external {
            external.refresh().await;
        }
    }

    /// How many times the external provider's JWKS was fetched.
    pub fn jwks_fetches(&self) -> u64 {
        self.external
            .as_ref()
            .map_or(0, |e| e.fetches.load(Ordering::Relaxed))
    }

    pub fn is_external(&self) -> bool {
        self.external.is_some()
    }

    /// Limits how many requests one person may make per minute; a service client may make
    /// [`SERVICE_LIMIT_FACTOR`] times as many.
    pub fn with_person_limit(mut self, per_minute: u32) -> Self {
        self.per_person = Some(crate::ratelimit::RateLimiter::new(
            per_minute,
            std::time::Duration::from_secs(60),
        ));
        self.per_service = Some(crate::ratelimit::RateLimiter::new(
            per_minute.saturating_mul(SERVICE_LIMIT_FACTOR),
            std::time::Duration::from_secs(60),
        ));
        self
    }

    /// Whether `token` was already verified as a service's and has not expired: the
    /// per-address limit lets such calls through (a transactions replica asks the users
    /// service once per charge, all from one address). Only a look-up; nothing is verified.
    pub fn is_known_service(&self, token: &str) -> bool {
        let digest = crypto::secrets::sha256(token.as_bytes());
        let now = self.clock.now_secs();
        self.verified.lock().is_ok_and(|cache| {
            cache
                .get(&digest)
                .is_some_and(|v| v.kind == PrincipalKind::Service && v.expires_at > now)
        })
    }

    /// Replaces the verification keys (after a signing-key rotation). Remembered
    /// verifications are dropped, so a key taken out of the ring stops working at once.
    pub fn replace_keys(&self, keys: crypto::jws::Verifier) {
        if let Ok(mut guard) = self.keys.write() {
            *guard = keys;
        }
        if let Ok(mut cache) = self.verified.lock() {
            cache.clear();
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    fn check_signature(
        &self,
        keys: &RwLock<crypto::jws::Verifier>,
        token: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, crypto::jws::JwtError> {
        let keys = keys.read().map_err(|_| crypto::jws::JwtError::UnknownKey)?;
        let expectations = crypto::jws::Expectations {
            typ: ACCESS_TOKEN_TYPE,
            issuer: &self.issuer,
            audience: &self.audience,
            now: self.clock.now_secs(),
            leeway: 5,
        };
        keys.verify(token, &expectations)
    }

    /// Signature, type, issuer, audience and time; then the claims this server needs.
    async fn verify_token(&self, token: &str) -> Result<Verified, ApiError> {
        let refused = |err: crypto::jws::JwtError| {
            tracing::info!(reason = %err, "bearer credential refused");
            ApiError::unauthorized("the access token is not valid")
        };
        let claims = match &self.external {
            None => self.check_signature(&self.keys, token).map_err(refused)?,
            Some(external) => match self.check_signature(&external.keys, token) {
                Err(crypto::jws::JwtError::UnknownKey) => {
                    // A key the provider added since the last fetch: fetch again, at most
                    // once per cool-down, then try once more.
                    external.refresh().await;
                    self.check_signature(&external.keys, token)
                        .map_err(refused)?
                }
                other => other.map_err(refused)?,
            },
        };
        let text = |name: &str| claims.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        let expires_at = claims
            .get("exp")
            .and_then(|v| v.as_i64())
            .unwrap_or_default();
        let (subject, client_id, scopes) = match &self.external {
            None => {
                let (Some(subject), Some(client_id), Some(scope)) =
                    (text("sub"), text("client_id"), text("scope"))
                else {
                    return Err(ApiError::unauthorized(
                        "the access token lacks required claims",
                    ));
                };
                let scopes = Scopes::parse(&scope)
                    .ok_or_else(|| ApiError::unauthorized("the access token has unknown scopes"))?;
                (subject, client_id, scopes)
            }
            Some(external) => {
                let (Some(subject), Some(client_id)) =
                    (text("sub"), text("client_id").or_else(|| text("azp")))
                else {
                    return Err(ApiError::unauthorized(
                        "the access token lacks required claims",
                    ));
                };
                let scopes = external.map_scopes(claims.get(&external.scope_claim));
                (subject, client_id, scopes)
            }
        };
        let session = text("sid");
        let kind = if session.is_none() && subject == client_id {
            PrincipalKind::Service
        } else {
            PrincipalKind::Person
        };
        Ok(Verified {
            subject,
            client_id,
            scopes,
            session,
            kind,
            expires_at,
        })
    }

    pub async fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let digest = crypto::secrets::sha256(token.as_bytes());
        let now = self.clock.now_secs();
        let remembered = self
            .verified
            .lock()
            .ok()
            .and_then(|cache| cache.get(&digest).cloned())
            .filter(|v| v.expires_at > now);
        let verified = match remembered {
            Some(verified) => verified,
            None => {
                let verified = self.verify_token(token).await?;
                if let Ok(mut cache) = self.verified.lock() {
                    if cache.len() >= VERIFIED_CACHE_LIMIT {
                        cache.retain(|_, v| v.expires_at > now);
                        if cache.len() >= VERIFIED_CACHE_LIMIT {
                            cache.clear();
                        }
                    }
                    cache.insert(digest, verified.clone());
                }
                verified
            }
        };
        let Verified {
            subject,
            client_id,
            scopes,
            session,
            kind,
            ..
        } = verified;
        let limiter = match kind {
            PrincipalKind::Person => &self.per_person,
            PrincipalKind::Service => &self.per_service,
        };
        if let Some(limiter) = limiter {
            limiter
                .check(&format!("sub:{subject}"))
                .map_err(|exceeded| {
                    tracing::warn!(subject = %subject, "rate limit reached for a person");
                    ApiError::from(exceeded)
                })?;
        }
        // People signed in here must still have a live account and session. An external
        // provider's sessions are its own: its tokens live until they expire.
        if kind == PrincipalKind::Person && self.external.is_none() {
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
    bearer_in(&parts.headers)
}

/// Extracts the token from the `Authorization: Bearer <token>` header among `headers`.
pub fn bearer_in(headers: &axum::http::HeaderMap) -> Result<&str, ApiError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
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

/// The first steps of every role's answer to the erasure service's order to forget a person
/// (`DELETE /internal/v1/.../{id}`): only the erasure service (`forget`) may give it; the id
/// must be a person's; this process destroys its own copy of the person's key (and drops it
/// from memory). Returns (the calling client, the person's id).
pub fn forget_order(
    principal: &Principal,
    raw_id: &str,
    vault: &crypto::vault::Vault,
) -> Result<(String, String), ApiError> {
    let caller = principal.service(Scope::Forget)?.to_owned();
    let id = crate::parse_id(raw_id, "person")?;
    vault.shred(&id).map_err(|e| ApiError::internal(&e))?;
    Ok((caller, id))
}

/// Records in the audit log that a role forgot a person on the erasure service's order.
pub async fn record_forgotten(audit: &audit::AuditLog, caller: &str, action: &str, id: &str) {
    audit
        .record(
            &format!("service:{caller}"),
            action,
            &format!("user:{id}"),
            "ok",
        )
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idp(map: &str) -> ExternalIdp {
        ExternalIdp {
            issuer: "https://login.example.org".into(),
            jwks_url: "https://login.example.org/jwks".into(),
            audience: "bank".into(),
            scope_claim: "scp".into(),
            scope_map: map.into(),
            cooldown: Duration::from_secs(30),
        }
    }

    fn cache(map: &str) -> JwksCache {
        JwksCache {
            url: String::new(),
            http: reqwest::Client::new(),
            cooldown: Duration::from_secs(30),
            keys: RwLock::new(crypto::jws::Verifier::new()),
            last_fetch: tokio::sync::Mutex::new(None),
            fetches: AtomicU64::new(0),
            scope_claim: "scp".into(),
            scope_map: idp(map).parsed_scope_map().expect("map"),
        }
    }

    #[test]
    fn provider_scopes_map_to_ours_and_the_rest_is_ignored() {
        let c = cache("bank:read=bank, ops=admin");
        let given = serde_json::json!("bank:read openid profile");
        assert_eq!(c.map_scopes(Some(&given)).to_string(), "bank");
        let array = serde_json::json!(["ops", "bank:read", "bank"]);
        assert_eq!(c.map_scopes(Some(&array)).to_string(), "bank admin");
        assert!(c.map_scopes(None).is_empty());
        // Without a map our own names pass, and unknown names never do.
        let plain = cache("");
        let given = serde_json::json!("bank superuser");
        assert_eq!(plain.map_scopes(Some(&given)).to_string(), "bank");
    }

    #[test]
    fn a_scope_map_naming_an_unknown_scope_is_refused() {
        assert!(idp("x=root").parsed_scope_map().is_err());
        assert!(idp("no-equals-sign").parsed_scope_map().is_err());
    }

    #[tokio::test]
    async fn unknown_key_ids_fetch_at_most_once_per_cool_down() {
        // Nothing listens on port 9 of 127.0.0.1: every fetch fails, and still counts.
        let mut c = cache("");
        c.url = "http://127.0.0.1:9/jwks".into();
        assert!(c.refresh().await, "the first need fetches");
        for _ in 0..20 {
            assert!(
                !c.refresh().await,
                "within the cool-down nothing is fetched"
            );
        }
        assert_eq!(c.fetches.load(Ordering::Relaxed), 1);
        *c.last_fetch.lock().await = Some(Instant::now() - Duration::from_secs(31));
        assert!(c.refresh().await, "after the cool-down one more fetch");
        assert_eq!(c.fetches.load(Ordering::Relaxed), 2);
    }
}
