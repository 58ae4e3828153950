//! Opaque pagination cursors and capped page sizes.

use crate::Invalid;

pub const MAX_PAGE: i64 = 100;
pub const DEFAULT_PAGE: i64 = 50;

/// A page size between 1 and [`MAX_PAGE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit(i64);

impl PageLimit {
    pub fn parse(raw: Option<&str>) -> Result<Self, Invalid> {
        let Some(raw) = raw else {
            return Ok(Self(DEFAULT_PAGE));
        };
        let reason = || {
            Invalid::new(
                "limit",
                format!("must be a whole number from 1 to {MAX_PAGE}"),
            )
        };
        if raw.is_empty() || raw.len() > 10 || !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(reason());
        }
        let value: i64 = raw.parse().map_err(|_| reason())?;
        if (1..=MAX_PAGE).contains(&value) {
            Ok(Self(value))
        } else {
            Err(reason())
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// Position after which the next page starts: the internal sequence number of the last row.
/// Encoded as `v1.<decimal>` in base64url so clients treat it as opaque.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor(i64);

impl Cursor {
    pub fn after(seq: i64) -> Self {
        Self(seq)
    }

    pub fn seq(self) -> i64 {
        self.0
    }

    pub fn encode(self) -> String {
        let text = format!("v1.{}", self.0);
        encode_b64url(text.as_bytes())
    }

    pub fn decode(raw: &str) -> Result<Self, Invalid> {
        let bad = || Invalid::new("cursor", "is not a cursor this server issued");
        if raw.is_empty() || raw.len() > 64 {
            return Err(bad());
        }
        let bytes = decode_b64url(raw).ok_or_else(bad)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
        let digits = text.strip_prefix("v1.").ok_or_else(bad)?;
        if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let seq: i64 = digits.parse().map_err(|_| bad())?;
        if seq <= 0 {
            return Err(bad());
        }
        Ok(Self(seq))
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn encode_b64url(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fn decode_b64url(text: &str) -> Option<Vec<u8>> {
    let mut bits: u32 = 0;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        bits = (bits << 6) | v;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push(((bits >> count) & 0xff) as u8);
        }
    }
    // Leftover bits must be zero padding, else the text is not canonical.
    if count >= 6 || bits & ((1 << count) - 1) != 0 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c22_page_sizes_out_of_range_are_refused() {
        for bad in [
            "2147483647",
            "0",
            "-1",
            "",
            "101",
            "1.5",
            "abc",
            " 5",
            "99999999999999999999",
        ] {
            assert!(PageLimit::parse(Some(bad)).is_err(), "{bad}");
        }
        assert_eq!(PageLimit::parse(None).map(PageLimit::get), Ok(DEFAULT_PAGE));
        assert_eq!(PageLimit::parse(Some("100")).map(PageLimit::get), Ok(100));
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        for seq in [1, 42, i64::MAX] {
            assert_eq!(
                Cursor::decode(&Cursor::after(seq).encode()),
                Ok(Cursor::after(seq))
            );
        }
        for bad in ["", "!!!", "djEuLTE", "djEuMA", "eDEuNQ", "a", "djEu"] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn cursor_decode_never_panics(s in "\\PC{0,80}") {
            let _ = Cursor::decode(&s);
        }

        #[test]
        fn cursor_round_trips(seq in 1i64..i64::MAX) {
            proptest::prop_assert_eq!(Cursor::decode(&Cursor::after(seq).encode()), Ok(Cursor::after(seq)));
        }
    }
}
