//! A JSON request body that is strict where axum's `Json` is lenient: the content type must
//! say JSON (415 otherwise), malformed JSON is 400 with a position but never an echo of the
//! input, and types decide unknown and duplicate fields (both refused with 400).
//!
//! The body is read (within the size limit) before the handler runs, but it is checked and
//! parsed only when the handler asks, after it has checked the caller's scope: a caller
//! without the right to a route gets 403 whatever it sends, never a 400, 415 or 422 that
//! tells it how the route validates its input.

use crate::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

/// A request body to parse as JSON with [`JsonBody::parse`], once the caller is authorised.
pub struct JsonBody {
    is_json: bool,
    bytes: Bytes,
}

impl<S> FromRequest<S> for JsonBody
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = is_json(req.headers().get(header::CONTENT_TYPE));
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    rejection.status(),
                    "too-large",
                    "the request body is too large",
                )
            } else {
                ApiError::bad_request("the request body could not be read")
            }
        })?;
        Ok(Self { is_json, bytes })
    }
}

impl JsonBody {
    /// The body as `T`: 415 unless the content type says JSON, 400 unless it parses.
    pub fn parse<T: DeserializeOwned>(self) -> Result<T, ApiError> {
        if !self.is_json {
            return Err(ApiError::unsupported_media_type());
        }
        parse(&self.bytes)
    }
}

/// Parses a JSON document into `T`, mapping every failure to a safe 400.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|err| ApiError::bad_request(describe(&err)))
}

fn is_json(value: Option<&axum::http::HeaderValue>) -> bool {
    let Some(value) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Describes a serde error without repeating the rejected value (it may be personal data).
fn describe(err: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let at = format!("line {} column {}", err.line(), err.column());
    match err.classify() {
        Category::Syntax | Category::Eof => format!("malformed JSON at {at}"),
        Category::Io => "the request body could not be read".to_owned(),
        Category::Data => {
            let message = err.to_string();
            for known in ["unknown field", "missing field", "duplicate field"] {
                if let Some(start) = message.find(known) {
                    let rest = &message[start..];
                    // Keep "unknown field `name`" and drop the rest of serde's sentence.
                    let end = rest
                        .char_indices()
                        .filter(|(_, c)| *c == '`')
                        .nth(1)
                        .map(|(i, _)| i + 1)
                        .unwrap_or(known.len());
                    let field = sanitize(&rest[..end]);
                    return format!("{field} at {at}");
                }
            }
            format!("a value has the wrong type at {at}")
        }
    }
}

fn sanitize(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        flag: bool,
    }

    fn message(body: &str) -> String {
        match parse::<Sample>(body.as_bytes()) {
            Ok(_) => "ok".into(),
            Err(err) => format!("{err:?}"),
        }
    }

    #[test]
    fn errors_name_the_problem_but_never_echo_values() {
        assert!(message(r#"{"flag": "canary-value"}"#).contains("wrong type"));
        assert!(!message(r#"{"flag": "canary-value"}"#).contains("canary"));
        assert!(message(r#"{"flag": true, "role": "admin"}"#).contains("unknown field `role`"));
        assert!(message(r#"{"flag": true, "flag": false}"#).contains("duplicate field"));
        assert!(message(r#"{"flag": tru"#).contains("malformed JSON"));
        assert!(message("{}").contains("missing field `flag`"));
    }

    #[test]
    fn content_types() {
        let ok = |s: &'static str| is_json(Some(&axum::http::HeaderValue::from_static(s)));
        assert!(ok("application/json"));
        assert!(ok("application/json; charset=utf-8"));
        assert!(ok("application/merge-patch+json"));
        assert!(!ok("text/plain"));
        assert!(!ok("application/x-www-form-urlencoded"));
        assert!(!is_json(None));
    }
}
