//! Random tokens, hashing and constant-time comparison shared by the other crates.

use rand::rngs::OsRng;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::b64;

/// 32 random bytes from the OS, base64url encoded (43 characters).
pub fn random_token() -> String {
    let mut bytes = random_bytes::<32>();
    let token = b64::encode(&bytes);
    zeroize::Zeroize::zeroize(&mut bytes);
    token
}

/// `N` random bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    OsRng.fill_bytes(&mut out);
    out
}

/// SHA-256 digest.
pub fn sha256(input: &[u8]) -> [u8; 32] {
    Sha256::digest(input).into()
}

/// SHA-256 digest as lowercase hex.
pub fn sha256_hex(input: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = sha256(input);
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

/// Compares two byte strings without leaking where they differ.
///
/// Lengths are not secret: different lengths return `false` immediately.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// RFC 7636 `S256` check: does `challenge` equal `BASE64URL(SHA256(verifier))`?
///
/// The verifier must be 43..=128 characters of `[A-Za-z0-9-._~]`; anything else fails.
pub fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~'));
    if !well_formed {
        return false;
    }
    let expected = b64::encode(&sha256(verifier.as_bytes()));
    constant_time_eq(expected.as_bytes(), challenge.as_bytes())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_sized() {
        let a = random_token();
        let b = random_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert_eq!(b64::decode(&a).unwrap().len(), 32);
        assert_ne!(random_bytes::<16>(), random_bytes::<16>());
    }

    #[test]
    fn sha256_known_answer() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(sha256(b"abc")[0], 0xba);
    }

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn pkce_rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_s256_matches(verifier, challenge));
        assert!(!pkce_s256_matches(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"
        ));
        assert!(!pkce_s256_matches(verifier, ""));
    }

    #[test]
    fn pkce_rejects_bad_verifiers() {
        let short = "a".repeat(42);
        assert!(!pkce_s256_matches(
            &short,
            &b64::encode(&sha256(short.as_bytes()))
        ));
        let long = "a".repeat(129);
        assert!(!pkce_s256_matches(
            &long,
            &b64::encode(&sha256(long.as_bytes()))
        ));
        let ok = "a".repeat(128);
        assert!(pkce_s256_matches(&ok, &b64::encode(&sha256(ok.as_bytes()))));
        let bad_char = format!("{}+", "a".repeat(42));
        assert!(!pkce_s256_matches(
            &bad_char,
            &b64::encode(&sha256(bad_char.as_bytes()))
        ));
        let non_ascii = format!("{}é", "a".repeat(42));
        assert!(!pkce_s256_matches(
            &non_ascii,
            &b64::encode(&sha256(non_ascii.as_bytes()))
        ));
    }
}
