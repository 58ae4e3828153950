//! HTTP plumbing every role shares, so each role's handlers stay about their own job:
//! errors as RFC 9457 problem+json, a strict JSON body parsed after the scope check, bearer-token authentication,
//! and the protective layers (limits, timeouts, security headers, request ids).

pub mod auth;
pub mod client;
pub mod html;
pub mod json;
pub mod layers;
pub mod metrics;
pub mod problem;
pub mod ratelimit;

pub use auth::{Principal, PrincipalKind, TokenVerifier};
pub use json::JsonBody;
pub use problem::ApiError;

/// Formats microseconds since the epoch as RFC 3339 in UTC with second precision.
pub fn rfc3339(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

/// Reads an id from a path: ids are UUIDs, so anything else names nothing (404). Checking
/// here also keeps bytes PostgreSQL cannot store (NUL) away from the database.
pub fn parse_id(raw: &str, what: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(raw)
        .map(|id| id.hyphenated().to_string())
        .map_err(|_| ApiError::not_found(format!("no such {what}")))
}
