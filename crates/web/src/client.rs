//! Calls from one role to another when they run as separate services: OAuth client
//! credentials (a token per service client, fetched once and reused until shortly before it
//! expires), the request id carried along as `X-Request-Id` and W3C `traceparent`, short
//! timeouts, and answers read as problem+json.

use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How a service proves who it is to the token endpoint.
#[derive(Clone)]
pub struct ServiceCredentials {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
    /// The scope asked for, e.g. `standing`.
    pub scope: String,
}

impl std::fmt::Debug for ServiceCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceCredentials")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The other service could not be reached, timed out or failed (5xx): try again later.
    #[error("{service} is unavailable: {reason}")]
    Unavailable { service: String, reason: String },
    /// The other service refused the request; `problem` is the problem type's last segment.
    #[error("{service} answered {status} ({problem})")]
    Refused {
        service: String,
        status: StatusCode,
        problem: String,
    },
}

impl From<CallError> for crate::ApiError {
    fn from(err: CallError) -> Self {
        tracing::warn!(error = %err, "a call to another service failed");
        crate::ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "dependency-unavailable",
            "a service this request needs is not available; try again shortly",
        )
    }
}

struct CachedToken {
    value: String,
    renew_at: Instant,
}

/// An HTTP client for calls to other roles, with its own access token.
pub struct ServiceClient {
    http: reqwest::Client,
    credentials: ServiceCredentials,
    token: tokio::sync::Mutex<Option<CachedToken>>,
}

impl ServiceClient {
    pub fn new(credentials: ServiceCredentials) -> Result<Self, CallError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| CallError::Unavailable {
                service: "http client".into(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            http,
            credentials,
            token: tokio::sync::Mutex::new(None),
        })
    }

    pub fn client_id(&self) -> &str {
        &self.credentials.client_id
    }

    /// A valid access token: the cached one, or a new one from the token endpoint.
    async fn token(&self, fresh: bool) -> Result<String, CallError> {
        let mut slot = self.token.lock().await;
        if !fresh {
            if let Some(cached) = slot.as_ref().filter(|t| t.renew_at > Instant::now()) {
                return Ok(cached.value.clone());
            }
        }
        let unavailable = |reason: String| CallError::Unavailable {
            service: "the token endpoint".into(),
            reason,
        };
        let response = self
            .http
            .post(&self.credentials.token_url)
            .basic_auth(
                &self.credentials.client_id,
                Some(&self.credentials.client_secret),
            )
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", self.credentials.scope.as_str()),
            ])
            .send()
            .await
            .map_err(|e| unavailable(e.without_url().to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(if status.is_server_error() {
                unavailable(format!("status {status}"))
            } else {
                CallError::Refused {
                    service: "the token endpoint".into(),
                    status,
                    problem: "client credentials refused".into(),
                }
            });
        }
        #[derive(Deserialize)]
        struct TokenAnswer {
            access_token: String,
            expires_in: Option<u64>,
        }
        let answer: TokenAnswer = response
            .json()
            .await
            .map_err(|e| unavailable(format!("unreadable token answer: {e}")))?;
        // Renew at three quarters of the lifetime, so a token never expires in flight.
        let lifetime = answer.expires_in.unwrap_or(300).clamp(10, 3600);
        let value = answer.access_token;
        *slot = Some(CachedToken {
            value: value.clone(),
            renew_at: Instant::now() + Duration::from_secs(lifetime * 3 / 4),
        });
        Ok(value)
    }

    /// Sends a request with the service's token; on 401 gets a new token and tries once
    /// more. Returns the status and body of any answer below 500.
    pub async fn call(
        &self,
        service: &str,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(StatusCode, Vec<u8>), CallError> {
        let mut fresh = false;
        loop {
            let token = self.token(fresh).await?;
            let mut request = self
                .http
                .request(method.clone(), url)
                .bearer_auth(token)
                .header(http::header::ACCEPT, "application/json");
            for (name, value) in trace_headers() {
                request = request.header(name, value);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await.map_err(|e| CallError::Unavailable {
                service: service.to_owned(),
                reason: e.without_url().to_string(),
            })?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !fresh {
                fresh = true;
                continue;
            }
            let bytes = response.bytes().await.map_err(|e| CallError::Unavailable {
                service: service.to_owned(),
                reason: e.without_url().to_string(),
            })?;
            if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                return Err(CallError::Unavailable {
                    service: service.to_owned(),
                    reason: format!("status {status}"),
                });
            }
            return Ok((status, bytes.to_vec()));
        }
    }

    /// Like [`ServiceClient::call`], but any answer other than 2xx is an error naming the
    /// problem type the other service gave.
    pub async fn call_ok(
        &self,
        service: &str,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Vec<u8>, CallError> {
        let (status, bytes) = self.call(service, method, url, body).await?;
        if status.is_success() {
            return Ok(bytes);
        }
        Err(CallError::Refused {
            service: service.to_owned(),
            status,
            problem: problem_type(&bytes),
        })
    }
}

/// The last segment of a problem+json `type`, e.g. `restricted`.
pub fn problem_type(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
        .map(|t| t.rsplit([':', '/']).next().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

/// The headers that carry the current request id to the next service: `X-Request-Id`, and a
/// W3C `traceparent` when the id is a trace id (32 hex digits), with a new parent span id.
fn trace_headers() -> Vec<(&'static str, String)> {
    let id = audit::REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| uuid::Uuid::new_v4().simple().to_string());
    let mut headers = vec![("x-request-id", id.clone())];
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        let span = uuid::Uuid::new_v4().simple().to_string();
        headers.push(("traceparent", format!("00-{id}-{}-01", &span[..16])));
    }
    headers
}

/// What the users service says about a person, all the transactions service needs to decide
/// whether a charge may be taken or points written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Standing {
    pub registered: bool,
    pub consent_rewards: bool,
    pub restricted: bool,
    pub erasure_pending: bool,
}

impl Standing {
    pub fn unregistered() -> Self {
        Self {
            registered: false,
            consent_rewards: false,
            restricted: false,
            erasure_pending: false,
        }
    }
}

/// Asks the users service for people's standing, remembering each answer for at most
/// `max_age`: a withdrawal of consent or a restriction reaches the transactions service
/// within that time (documented bound: one second).
pub struct StandingClient {
    client: ServiceClient,
    users_url: String,
    max_age: Duration,
    cache: Mutex<HashMap<String, (Standing, Instant)>>,
}

/// Remembered answers beyond this are dropped wholesale.
const STANDING_CACHE_LIMIT: usize = 100_000;

impl StandingClient {
    pub fn new(client: ServiceClient, users_url: &str, max_age: Duration) -> Self {
        Self {
            client,
            users_url: users_url.trim_end_matches('/').to_owned(),
            max_age,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub async fn standing(&self, person: &str) -> Result<Standing, CallError> {
        if let Ok(cache) = self.cache.lock() {
            if let Some((standing, at)) = cache.get(person) {
                if at.elapsed() < self.max_age {
                    return Ok(*standing);
                }
            }
        }
        let asked_at = Instant::now();
        let url = format!("{}/internal/v1/users/{person}/standing", self.users_url);
        let body = self
            .client
            .call_ok("the users service", Method::GET, &url, None)
            .await?;
        let standing: Standing =
            serde_json::from_slice(&body).map_err(|e| CallError::Unavailable {
                service: "the users service".into(),
                reason: format!("unreadable standing: {e}"),
            })?;
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= STANDING_CACHE_LIMIT {
                cache.clear();
            }
            // Aged from when it was asked, not from when the answer came.
            cache.insert(person.to_owned(), (standing, asked_at));
        }
        Ok(standing)
    }

    /// Drops what is remembered about a person (after they were forgotten).
    pub fn evict(&self, person: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(person);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_types_are_read_from_problem_json() {
        let body = br#"{"type":"urn:examplebank:problem:restricted","status":409}"#;
        assert_eq!(problem_type(body), "restricted");
        assert_eq!(problem_type(b"not json"), "");
    }

    #[tokio::test]
    async fn a_trace_id_travels_as_traceparent() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736".to_owned();
        let headers = audit::REQUEST_ID
            .scope(id.clone(), async { trace_headers() })
            .await;
        assert_eq!(headers[0], ("x-request-id", id.clone()));
        let parent = &headers[1].1;
        assert!(parent.starts_with(&format!("00-{id}-")), "{parent}");
        assert_eq!(parent.len(), 55);
        let plain = audit::REQUEST_ID
            .scope("abc-123".to_owned(), async { trace_headers() })
            .await;
        assert_eq!(plain, vec![("x-request-id", "abc-123".to_owned())]);
    }
}
