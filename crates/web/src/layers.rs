//! The protective layers around every router: request ids and one log line per request (no
//! bodies, no query strings), security headers, limits and timeouts, panics caught, and every
//! error that did not come from a handler rewritten as problem+json.

use crate::problem::{problem_body, PROBLEM_JSON};
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use tracing::Instrument;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request id of the current request, for handlers that record it (the audit log).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub max_concurrent_requests: usize,
    /// Requests per minute from one client address.
    pub per_address_per_minute: u32,
    /// Proxies whose `X-Forwarded-For` is believed; from anyone else it is ignored.
    pub trusted_proxies: Vec<IpAddr>,
    /// Origins allowed to call the API from a browser (CORS); empty means CORS stays off.
    pub cors_allowed_origins: Vec<String>,
    /// Send `Strict-Transport-Security` (when TLS is on).
    pub hsts: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(30),
            max_concurrent_requests: 512,
            per_address_per_minute: 1200,
            trusted_proxies: Vec::new(),
            cors_allowed_origins: Vec::new(),
            hsts: false,
        }
    }
}

/// The client's address as this server believes it: the peer, or, behind a trusted proxy,
/// the nearest address in `X-Forwarded-For` that is not a trusted proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

pub fn client_ip(
    peer: Option<IpAddr>,
    forwarded: Option<&str>,
    trusted: &[IpAddr],
) -> Option<IpAddr> {
    let peer = peer?;
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let Some(forwarded) = forwarded else {
        return Some(peer);
    };
    let mut nearest = peer;
    for hop in forwarded.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => nearest = ip,
            Ok(ip) => return Some(ip),
            Err(_) => return Some(nearest),
        }
    }
    Some(nearest)
}

#[derive(Clone)]
struct AddressLimit {
    limiter: std::sync::Arc<crate::ratelimit::RateLimiter>,
    trusted: std::sync::Arc<Vec<IpAddr>>,
    /// Lets through calls with a service token it already verified (see
    /// [`crate::TokenVerifier::is_known_service`]).
    verifier: Option<std::sync::Arc<crate::TokenVerifier>>,
}

/// Resolves the client address, puts it in the request's extensions, and applies the
/// per-address rate limit.
async fn limit_per_address(
    axum::extract::State(limit): axum::extract::State<AddressLimit>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = std::time::Instant::now();
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let forwarded = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    let ip = client_ip(peer, forwarded, &limit.trusted);
    let known_service = limit.verifier.as_ref().is_some_and(|verifier| {
        crate::auth::bearer_in(req.headers()).is_ok_and(|t| verifier.is_known_service(t))
    });
    if let Some(ip) = ip {
        req.extensions_mut().insert(ClientIp(ip));
        if known_service {
            return next.run(req).await;
        }
        if let Err(exceeded) = limit.limiter.check(&format!("ip:{ip}")) {
            tracing::warn!("rate limit reached for a client address");
            crate::metrics::metrics().observe_limited(req.method().as_str(), started);
            return crate::ApiError::from(exceeded).into_response();
        }
    }
    next.run(req).await
}

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Where the authentication extractor leaves the caller's pseudonymous id, so the refusal
/// recorder can name who was refused.
#[derive(Debug, Clone, Default)]
pub struct ActorSlot(pub std::sync::Arc<std::sync::Mutex<Option<String>>>);

/// Wraps a finished router in every protective layer.
pub fn harden(
    router: Router,
    limits: &Limits,
    audit: Option<std::sync::Arc<audit::AuditLog>>,
) -> Router {
    harden_with(router, limits, audit, None)
}

/// [`harden`], letting calls with an already verified service token past the per-address
/// limit (they have their own, per service client).
pub fn harden_with(
    router: Router,
    limits: &Limits,
    audit: Option<std::sync::Arc<audit::AuditLog>>,
    verifier: Option<std::sync::Arc<crate::TokenVerifier>>,
) -> Router {
    // A route layer sees the matched route pattern; requests that match no route are counted
    // by the fallback below.
    let router = router
        .route_layer(middleware::from_fn(crate::metrics::record))
        .fallback(unmatched);
    let router = match audit {
        Some(log) => router.layer(middleware::from_fn_with_state(log, record_refusals)),
        None => router,
    };
    let address_limit = AddressLimit {
        limiter: std::sync::Arc::new(crate::ratelimit::RateLimiter::new(
            limits.per_address_per_minute,
            Duration::from_secs(60),
        )),
        trusted: std::sync::Arc::new(limits.trusted_proxies.clone()),
        verifier,
    };
    let router = router
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            limits.max_concurrent_requests,
        ))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            limits.max_body_bytes,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(middleware::from_fn(problem_for_every_error))
        .layer(middleware::from_fn_with_state(
            address_limit,
            limit_per_address,
        ))
        .layer(middleware::from_fn_with_state(
            limits.hsts,
            security_headers,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ));
    let router = match cors(&limits.cors_allowed_origins) {
        Some(layer) => router.layer(layer),
        None => router,
    };
    router.layer(middleware::from_fn(observe))
}

/// CORS stays off (no `Access-Control-*` headers, so browsers refuse cross-origin calls)
/// unless an allow-list of origins is configured.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        tower_http::cors::CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([
                axum::http::Method::GET,
                axum::http::Method::POST,
                axum::http::Method::PUT,
                axum::http::Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("idempotency-key"),
            ])
            .max_age(Duration::from_secs(600)),
    )
}

/// The trace id of a valid W3C `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`), so one
/// id follows a request across services.
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (Some(version), Some(trace), Some(parent), Some(flags), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0');
    valid.then_some(trace)
}

async fn observe(mut req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .map(str::to_owned);
    let traced = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(trace_id)
        .map(str::to_owned);
    let id = given
        .or(traced)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path(),
    );
    let started = Instant::now();
    let mut response = audit::REQUEST_ID
        .scope(id.clone(), next.run(req).instrument(span.clone()))
        .await;
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| tracing::info!(status, latency_ms, "request finished"));
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

async fn security_headers(
    axum::extract::State(hsts): axum::extract::State<bool>,
    req: Request,
    next: Next,
) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    if hsts {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    let set = |headers: &mut axum::http::HeaderMap, name: HeaderName, value: &'static str| {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    };
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        CONTENT_SECURITY_POLICY,
    );
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::CACHE_CONTROL, "no-store");
    set(
        headers,
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    response
}

/// Rewrites error responses that are not already problem+json (or an HTML page meant for a
/// browser) into problem+json, so clients see one error format from every layer.
async fn problem_for_every_error(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with(PROBLEM_JSON) || content_type.starts_with("text/html") {
        return response;
    }
    let (kind, detail) = match status {
        StatusCode::NOT_FOUND => ("not-found", "there is nothing at this address"),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method-not-allowed",
            "this address does not accept that method",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ("too-large", "the request body is too large"),
        StatusCode::REQUEST_TIMEOUT => ("timeout", "the request took too long"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported-media-type", "send the body as JSON"),
        s if s.is_server_error() => (
            "internal",
            "something went wrong on our side; it has been logged",
        ),
        _ => ("bad-request", "the request could not be understood"),
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    Response::from_parts(
        parts,
        Body::from(problem_body(status, kind, detail).to_string()),
    )
}

async fn unmatched(req: Request) -> Response {
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let response = StatusCode::NOT_FOUND.into_response();
    crate::metrics::metrics().observe_unmatched(&method, started);
    response
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    let status = StatusCode::INTERNAL_SERVER_ERROR;
    let mut response = (
        status,
        problem_body(
            status,
            "internal",
            "something went wrong on our side; it has been logged",
        )
        .to_string(),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

/// Records every refused authentication or authorisation (401, 403) in the audit log.
async fn record_refusals(
    axum::extract::State(log): axum::extract::State<std::sync::Arc<audit::AuditLog>>,
    mut req: Request,
    next: Next,
) -> Response {
    let slot = ActorSlot::default();
    req.extensions_mut().insert(slot.clone());
    let method = req.method().clone();
    let target = safe_path(req.uri().path());
    let response = next.run(req).await;
    let status = response.status();
    // Sign-in and token requests record their own, more precise events.
    let own_events =
        target.starts_with("/identity/v1/authorize") || target.starts_with("/identity/v1/token");
    if !own_events && (status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN) {
        let actor = slot
            .0
            .lock()
            .ok()
            .and_then(|a| a.clone())
            .map(|id| format!("user:{id}"))
            .unwrap_or_else(|| "anonymous".to_owned());
        let outcome = if status == StatusCode::UNAUTHORIZED {
            "unauthenticated"
        } else {
            "forbidden"
        };
        log.record(
            &actor,
            "authorization.refused",
            &format!("{method} {target}"),
            outcome,
        )
        .await;
    }
    response
}

/// A path as it may appear in the audit log: visible ASCII only, at most 120 characters.
fn safe_path(path: &str) -> String {
    path.chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .take(120)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_gives_its_trace_id_and_bad_ones_are_ignored() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(trace_id(good), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        ] {
            assert_eq!(trace_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn client_addresses_are_believed_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let peer_untrusted: IpAddr = "198.51.100.2".parse().unwrap();
        let client: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(
            client_ip(Some(peer_untrusted), Some("203.0.113.7"), &[proxy]),
            Some(peer_untrusted)
        );
        assert_eq!(
            client_ip(Some(proxy), Some("203.0.113.7"), &[proxy]),
            Some(client)
        );
        assert_eq!(
            client_ip(
                Some(proxy),
                Some("1.2.3.4, 203.0.113.7, 10.0.0.1"),
                &[proxy]
            ),
            Some(client)
        );
        assert_eq!(
            client_ip(Some(proxy), Some("garbage"), &[proxy]),
            Some(proxy)
        );
        assert_eq!(client_ip(None, Some("203.0.113.7"), &[proxy]), None);
    }
}
