//! Compact JWS/JWT signing and verification, Ed25519 ("EdDSA") only, with no network access.
//!
//! Only one algorithm is accepted so that algorithm-confusion attacks (`none`, HMAC keyed
//! with the public key, embedded or remote keys) have nothing to work with.

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
mod verify;

use std::collections::BTreeMap;
use std::fmt;

use ed25519_dalek::{Signer as _, VerifyingKey};
use rand::rngs::OsRng;
use serde_json::{json, Value};

pub use verify::{Expectations, JwtError, MAX_TOKEN_LEN};

use crate::{b64, secrets, CryptoError};

/// The only JWS `alg` this crate produces or accepts.
pub const ALG: &str = "EdDSA";

/// An Ed25519 signing key with its key id. `Debug` does not show the secret.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    key: ed25519_dalek::SigningKey,
}

impl SigningKey {
    /// Generates a new key; its kid is the first 16 chars of b64url(sha256(public key)).
    pub fn generate() -> Self {
        let key = ed25519_dalek::SigningKey::generate(&mut OsRng);
        let kid = kid_for(&key.verifying_key());
        SigningKey { kid, key }
    }

    /// Rebuilds a key from its kid and 32-byte secret (as returned by [`Self::secret_bytes`]).
    pub fn from_bytes(kid: impl Into<String>, mut secret: [u8; 32]) -> Self {
        let key = ed25519_dalek::SigningKey::from_bytes(&secret);
        zeroize::Zeroize::zeroize(&mut secret);
        SigningKey {
            kid: kid.into(),
            key,
        }
    }

    /// The key id placed in token headers.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The 32-byte secret, for persisting. Wipe the copy when done with it.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The public key as a JWK suitable for a JWKS document.
    pub fn public_jwk(&self) -> Value {
        json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64::encode(self.key.verifying_key().as_bytes()),
            "kid": self.kid,
            "alg": ALG,
            "use": "sig",
        })
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The kid derived from a public key.
fn kid_for(key: &VerifyingKey) -> String {
    let mut kid = b64::encode(&secrets::sha256(key.as_bytes()));
    kid.truncate(16);
    kid
}

/// Signs `claims` as a compact JWS with header `{"alg":"EdDSA","typ":typ,"kid":kid}`.
pub fn sign(key: &SigningKey, typ: &str, claims: &Value) -> String {
    let header = json!({ "alg": ALG, "typ": typ, "kid": key.kid });
    let mut token = b64::encode(header.to_string().as_bytes());
    token.push('.');
    token.push_str(&b64::encode(claims.to_string().as_bytes()));
    let signature = key.key.sign(token.as_bytes());
    token.push('.');
    token.push_str(&b64::encode(&signature.to_bytes()));
    token
}

impl SigningKey {
    /// A detached Ed25519 signature over `message`, base64url (audit checkpoints).
    pub fn sign_detached(&self, message: &[u8]) -> String {
        b64::encode(&self.key.sign(message).to_bytes())
    }
}

/// Public keys by kid, used to verify tokens.
#[derive(Clone, Debug, Default)]
pub struct Verifier {
    keys: BTreeMap<String, VerifyingKey>,
}

impl Verifier {
    /// An empty verifier that accepts nothing.
    pub fn new() -> Self {
        Verifier::default()
    }

    /// Adds (or replaces) the key for `kid`.
    pub fn add(&mut self, kid: impl Into<String>, key: VerifyingKey) {
        self.keys.insert(kid.into(), key);
    }

    /// Checks a detached signature made by [`SigningKey::sign_detached`] with key `kid`.
    pub fn verify_detached(&self, kid: &str, message: &[u8], signature: &str) -> bool {
        let Some(key) = self.keys.get(kid) else {
            return false;
        };
        let Ok(bytes) = b64::decode(signature) else {
            return false;
        };
        let Ok(signature) = ed25519_dalek::Signature::from_slice(&bytes) else {
            return false;
        };
        key.verify_strict(message, &signature).is_ok()
    }

    /// Known kids, sorted.
    pub fn kids(&self) -> Vec<String> {
        self.keys.keys().cloned().collect()
    }

    /// Builds a verifier from a JWKS document (`{"keys":[...]}`).
    ///
    /// Keys whose `kty` is not `OKP`, OKP keys on other curves and keys whose `use` is not
    /// `sig` are skipped. Ed25519 keys must carry a kid, a valid `x`, and if present
    /// `alg` must be `EdDSA`; otherwise the whole set is rejected.
    pub fn from_jwks(jwks: &Value) -> Result<Verifier, CryptoError> {
        let keys = jwks
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(CryptoError::InvalidJwks("missing \"keys\" array"))?;
        let mut verifier = Verifier::new();
        for jwk in keys {
            let jwk = jwk
                .as_object()
                .ok_or(CryptoError::InvalidJwks("key is not an object"))?;
            let str_field = |name: &str| jwk.get(name).and_then(Value::as_str);
            if str_field("kty") != Some("OKP") || str_field("crv") != Some("Ed25519") {
                continue;
            }
            if jwk.get("use").is_some_and(|u| u.as_str() != Some("sig")) {
                continue;
            }
            if jwk.get("alg").is_some_and(|a| a.as_str() != Some(ALG)) {
                return Err(CryptoError::InvalidJwks(
                    "Ed25519 key with alg other than EdDSA",
                ));
            }
            let kid = str_field("kid")
                .filter(|k| !k.is_empty())
                .ok_or(CryptoError::InvalidJwks("Ed25519 key without kid"))?;
            let x = str_field("x").ok_or(CryptoError::InvalidJwks("Ed25519 key without x"))?;
            let bytes: [u8; 32] = b64::decode(x)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or(CryptoError::InvalidJwks("x is not 32 base64url bytes"))?;
            let key = VerifyingKey::from_bytes(&bytes)
                .ok()
                .filter(|k| !k.is_weak())
                .ok_or(CryptoError::InvalidJwks("x is not a usable Ed25519 point"))?;
            if verifier.keys.insert(kid.to_owned(), key).is_some() {
                return Err(CryptoError::InvalidJwks("duplicate kid"));
            }
        }
        Ok(verifier)
    }

    fn key(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.get(kid)
    }
}
