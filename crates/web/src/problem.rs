//! One error type for every handler. It becomes `application/problem+json` (RFC 9457) with a
//! status that tells the client what to do; the cause of a server error is logged once, here,
//! and never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    detail: String,
    extra: Map<String, Value>,
    headers: Vec<(header::HeaderName, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            detail: detail.into(),
            extra: Map::new(),
            headers: Vec::new(),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }

    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    pub fn conflict(kind: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, kind, detail)
    }

    /// 401 with the `WWW-Authenticate` challenge RFC 6750 asks for.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail).with_header(
            header::WWW_AUTHENTICATE,
            "Bearer realm=\"examplebank\", error=\"invalid_token\"",
        )
    }

    pub fn forbidden_scope(scope: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "insufficient-scope",
            format!("this request needs the '{scope}' scope"),
        )
        .with_header(
            header::WWW_AUTHENTICATE,
            format!(
                "Bearer realm=\"examplebank\", error=\"insufficient_scope\", scope=\"{scope}\""
            ),
        )
    }

    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "send the body as JSON with 'Content-Type: application/json'",
        )
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the service is temporarily unavailable; try again shortly",
        )
        .with_header(header::RETRY_AFTER, "1")
    }

    /// A server-side failure: logs the cause and answers with a generic body.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "something went wrong on our side; it has been logged",
        )
    }

    pub fn with_header(mut self, name: header::HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Adds an extension member (RFC 9457 §3.2), e.g. OAuth's `error`.
    pub fn with_member(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(name.to_owned(), value.into());
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

/// The body of a problem document with the given status; used for responses that did not
/// come from a handler (unknown routes, layers' refusals).
pub fn problem_body(status: StatusCode, kind: &str, detail: &str) -> Value {
    json!({
        "type": format!("urn:examplebank:problem:{kind}"),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = problem_body(self.status, self.kind, &self.detail);
        if let Value::Object(map) = &mut body {
            map.extend(self.extra);
        }
        let mut response = (self.status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        response
    }
}

impl From<store::StoreError> for ApiError {
    fn from(err: store::StoreError) -> Self {
        match err {
            store::StoreError::Conflict => ApiError::conflict("conflict", "that already exists"),
            store::StoreError::ErasurePending => ApiError::conflict(
                "erasure-pending",
                "your data is being erased; nothing new can start",
            ),
            store::StoreError::Missing => {
                ApiError::not_found("what this request refers to no longer exists")
            }
            store::StoreError::Database(sqlx_err) if is_unavailable(&sqlx_err) => {
                tracing::warn!(error = %sqlx_err, "database unavailable");
                ApiError::unavailable()
            }
            other => ApiError::internal(&other),
        }
    }
}

fn is_unavailable(err: &store::SqlxError) -> bool {
    // PostgreSQL going away: admin shutdown (57P01), crash shutdown (57P02), cannot connect
    // now (57P03), and the connection exception class (08).
    if let store::SqlxError::Database(db) = err {
        if let Some(code) = db.code() {
            if code.starts_with("57P") || code.starts_with("08") {
                return true;
            }
        }
    }
    matches!(
        err,
        store::SqlxError::PoolTimedOut
            | store::SqlxError::PoolClosed
            | store::SqlxError::Io(_)
            | store::SqlxError::Tls(_)
            | store::SqlxError::WorkerCrashed
    )
}

impl From<domain::Invalid> for ApiError {
    fn from(err: domain::Invalid) -> Self {
        ApiError::unprocessable(err.to_string())
    }
}
