//! Strict unpadded base64url, the only encoding used for tokens, keys and JWS segments.
//!
//! Decoding rejects padding, whitespace, the standard alphabet's `+` and `/`, and
//! non-canonical trailing bits, so each byte string has exactly one accepted text form.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::CryptoError;

/// Encodes bytes as base64url without padding.
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes strict base64url without padding.
pub fn decode(s: &str) -> Result<Vec<u8>, CryptoError> {
    URL_SAFE_NO_PAD
        .decode(s.as_bytes())
        .map_err(|_| CryptoError::InvalidBase64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_all_lengths() {
        let data: Vec<u8> = (0u8..=255).collect();
        for len in 0..40 {
            let text = encode(&data[..len]);
            assert!(!text.contains('='));
            assert_eq!(decode(&text).unwrap(), &data[..len]);
        }
    }

    #[test]
    fn uses_url_alphabet() {
        assert_eq!(encode(&[0xfb, 0xff]), "-_8");
        assert_eq!(decode("-_8").unwrap(), vec![0xfb, 0xff]);
    }

    #[test]
    fn rejects_padding() {
        assert!(decode("AA==").is_err());
        assert!(decode("AAA=").is_err());
        assert!(decode("AA").is_ok());
    }

    #[test]
    fn rejects_whitespace() {
        for s in [" AA", "AA ", "A A", "AA\n", "\tAA", "AAAA\r\nAAAA"] {
            assert!(decode(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn rejects_standard_alphabet() {
        assert!(decode("-_8").is_ok());
        assert!(decode("+/8").is_err());
        assert!(decode("ab+c").is_err());
        assert!(decode("ab/c").is_err());
    }

    #[test]
    fn rejects_non_canonical_trailing_bits() {
        // "AB" would carry non-zero bits past the single encoded byte.
        assert!(decode("AA").is_ok());
        assert!(decode("AB").is_err());
    }

    #[test]
    fn rejects_impossible_length() {
        assert!(decode("A").is_err());
        assert!(decode("AAAAA").is_err());
    }
}
