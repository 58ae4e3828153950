//! Token verification: every header, signature and claim rule lives here in one pass.

use ed25519_dalek::Signature;
use serde_json::{Map, Value};

use super::{Verifier, ALG};
use crate::b64;

/// Largest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 8192;

/// Header parameters that would let a token choose its own key or extensions.
const FORBIDDEN_HEADERS: [&str; 6] = ["jwk", "jku", "x5u", "x5c", "x5t", "crit"];

/// What a token must match to be accepted.
#[derive(Clone, Copy, Debug)]
pub struct Expectations<'a> {
    /// Expected `typ` header (compared case-insensitively, `application/` prefix optional).
    pub typ: &'a str,
    /// Required `iss` claim.
    pub issuer: &'a str,
    /// Required member of the `aud` claim.
    pub audience: &'a str,
    /// Current time in unix seconds.
    pub now: i64,
    /// Allowed clock skew in seconds.
    pub leeway: i64,
}

/// Why a token was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not a well-formed compact JWS with JSON object header and payload.
    #[error("malformed token")]
    Malformed,
    /// `alg` was missing or not exactly `EdDSA`.
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
    /// The header carried a key-selecting or critical-extension parameter.
    #[error("forbidden header parameter")]
    ForbiddenHeader,
    /// `kid` was missing or not one of ours.
    #[error("unknown signing key")]
    UnknownKey,
    /// The signature did not verify.
    #[error("bad signature")]
    BadSignature,
    /// `typ` did not match.
    #[error("wrong token type")]
    WrongType,
    /// `iss` did not match.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` did not contain our audience.
    #[error("wrong audience")]
    WrongAudience,
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` or `iat` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// A required claim was absent.
    #[error("missing claim {0}")]
    MissingClaim(&'static str),
}

impl Verifier {
    /// Verifies a compact JWS and returns its claims if every rule passes.
    pub fn verify(
        &self,
        token: &str,
        exp: &Expectations<'_>,
    ) -> Result<Map<String, Value>, JwtError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(sig_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        if header_b64.is_empty() || payload_b64.is_empty() || sig_b64.is_empty() {
            return Err(JwtError::Malformed);
        }

        let header = decode_object(header_b64)?;
        if header.get("alg").and_then(Value::as_str) != Some(ALG) {
            return Err(JwtError::UnsupportedAlgorithm);
        }
        if FORBIDDEN_HEADERS.iter().any(|h| header.contains_key(*h)) {
            return Err(JwtError::ForbiddenHeader);
        }
        match header.get("typ").and_then(Value::as_str) {
            Some(typ) if typ_matches(typ, exp.typ) => {}
            _ => return Err(JwtError::WrongType),
        }
        let key = header
            .get("kid")
            .and_then(Value::as_str)
            .and_then(|kid| self.key(kid))
            .ok_or(JwtError::UnknownKey)?;

        let sig_bytes: [u8; 64] = b64::decode(sig_b64)
            .map_err(|_| JwtError::Malformed)?
            .try_into()
            .map_err(|_| JwtError::BadSignature)?;
        let signature = Signature::from_bytes(&sig_bytes);
        let signing_input_len = header_b64.len() + 1 + payload_b64.len();
        let signing_input = &token.as_bytes()[..signing_input_len];
        key.verify_strict(signing_input, &signature)
            .map_err(|_| JwtError::BadSignature)?;

        let claims = decode_object(payload_b64)?;
        check_claims(&claims, exp)?;
        Ok(claims)
    }
}

/// Strict base64url, then a JSON object.
fn decode_object(segment: &str) -> Result<Map<String, Value>, JwtError> {
    let bytes = b64::decode(segment).map_err(|_| JwtError::Malformed)?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JwtError::Malformed),
    }
}

/// `typ` equality ignoring ASCII case and an optional `application/` prefix on either side.
fn typ_matches(actual: &str, expected: &str) -> bool {
    fn strip(t: &str) -> &str {
        const PREFIX: &str = "application/";
        match t.get(..PREFIX.len()) {
            Some(p) if p.eq_ignore_ascii_case(PREFIX) => &t[PREFIX.len()..],
            _ => t,
        }
    }
    let (actual, expected) = (strip(actual), strip(expected));
    !expected.is_empty() && actual.eq_ignore_ascii_case(expected)
}

/// A claim that must be an integer, if present.
fn int_claim(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or(JwtError::Malformed),
    }
}

fn check_claims(claims: &Map<String, Value>, exp: &Expectations<'_>) -> Result<(), JwtError> {
    match claims.get("iss") {
        None => return Err(JwtError::MissingClaim("iss")),
        Some(Value::String(iss)) if iss == exp.issuer => {}
        Some(_) => return Err(JwtError::WrongIssuer),
    }
    let audience_ok = match claims.get("aud") {
        None => return Err(JwtError::MissingClaim("aud")),
        Some(Value::String(aud)) => aud == exp.audience,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(exp.audience)),
        Some(_) => false,
    };
    if !audience_ok {
        return Err(JwtError::WrongAudience);
    }

    let expires = int_claim(claims, "exp")?.ok_or(JwtError::MissingClaim("exp"))?;
    let issued = int_claim(claims, "iat")?.ok_or(JwtError::MissingClaim("iat"))?;
    let not_before = int_claim(claims, "nbf")?;
    let leeway = exp.leeway.max(0);
    let earliest = exp.now.saturating_sub(leeway);
    let latest = exp.now.saturating_add(leeway);
    if expires <= earliest {
        return Err(JwtError::Expired);
    }
    if not_before.is_some_and(|nbf| nbf > latest) || issued > latest {
        return Err(JwtError::NotYetValid);
    }
    Ok(())
}
