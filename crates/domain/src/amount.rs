//! Money as exact integer minor units, parsed from JSON without ever touching a float.

use std::fmt;

/// The card limit for one charge, in minor units (50,000.00). Documented in docs/api.md.
pub const CARD_LIMIT_MINOR: i64 = 5_000_000;

/// A positive amount of money no larger than the card limit, in minor units (cents).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount must be a decimal number (as a JSON number or string) like 12.34")]
    NotADecimal,
    #[error("amount must have at most two decimals")]
    TooManyDecimals,
    #[error("amount must be greater than zero")]
    NotPositive,
    #[error("amount must not exceed the card limit of 50000.00")]
    OverLimit,
}

impl Amount {
    /// Parses the raw JSON text of an `amount` field: a JSON number or a JSON string holding
    /// plain decimal digits with an optional `.` and one or two decimals. Exponents, signs,
    /// spaces, separators, `NaN`, infinities, `null` and booleans are refused.
    pub fn parse_json(raw: &str) -> Result<Self, AmountError> {
        let raw = raw.trim_matches(|c| c == ' ' || c == '\n' || c == '\r' || c == '\t');
        let text = if let Some(inner) = raw.strip_prefix('"') {
            let inner = inner.strip_suffix('"').ok_or(AmountError::NotADecimal)?;
            // JSON escapes are never part of a valid amount.
            if inner.contains('\\') {
                return Err(AmountError::NotADecimal);
            }
            inner
        } else {
            raw
        };
        Self::parse_decimal(text)
    }

    /// Parses `digits[.d[d]]` into minor units.
    pub fn parse_decimal(text: &str) -> Result<Self, AmountError> {
        let (whole, fraction) = match text.split_once('.') {
            Some((w, f)) => (w, Some(f)),
            None => (text, None),
        };
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(whole) {
            return Err(AmountError::NotADecimal);
        }
        let cents = match fraction {
            None => 0,
            Some(f) if !all_digits(f) => return Err(AmountError::NotADecimal),
            Some(f) if f.len() > 2 => return Err(AmountError::TooManyDecimals),
            Some(f) => {
                let value: i64 = f.parse().map_err(|_| AmountError::NotADecimal)?;
                if f.len() == 1 {
                    value * 10
                } else {
                    value
                }
            }
        };
        // More digits than the limit could ever need is simply over the limit.
        let whole = whole.trim_start_matches('0');
        if whole.len() > 12 {
            return Err(AmountError::OverLimit);
        }
        let units: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| AmountError::NotADecimal)?
        };
        Self::from_minor(units * 100 + cents)
    }

    pub fn from_minor(minor: i64) -> Result<Self, AmountError> {
        if minor <= 0 {
            Err(AmountError::NotPositive)
        } else if minor > CARD_LIMIT_MINOR {
            Err(AmountError::OverLimit)
        } else {
            Ok(Self(minor))
        }
    }

    pub fn minor(self) -> i64 {
        self.0
    }
}

/// Formats any number of minor units as an exact decimal string, e.g. `1234` → `"12.34"`.
pub fn format_minor(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_minor(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_numbers_and_strings_with_up_to_two_decimals() {
        for (raw, minor) in [
            ("12.34", 1234),
            ("\"12.34\"", 1234),
            ("1", 100),
            ("0.1", 10),
            ("0.01", 1),
            ("\"7.5\"", 750),
            ("50000", 5_000_000),
            ("50000.00", 5_000_000),
        ] {
            assert_eq!(
                Amount::parse_json(raw).map(Amount::minor),
                Ok(minor),
                "{raw}"
            );
        }
    }

    #[test]
    fn c21_refuses_every_malformed_amount() {
        for raw in [
            "-1",
            "0",
            "0.00",
            "\"-5\"",
            "NaN",
            "\"NaN\"",
            "Infinity",
            "\"Infinity\"",
            "-Infinity",
            "1e309",
            "\"1e3\"",
            "1E2",
            "1.5e1",
            "12.345",
            "\"0.001\"",
            "50000.01",
            "1000000000",
            "99999999999999999999999",
            "\" 12\"",
            "\"12 \"",
            "\"1,000\"",
            "\"1 000\"",
            "\"1_000\"",
            "null",
            "true",
            "false",
            "\"\"",
            "\".5\"",
            "\"5.\"",
            "\"+5\"",
            "[]",
            "{}",
            "\"1.2.3\"",
            "\"\\u0031\"",
            "\"١٢\"",
        ] {
            assert!(Amount::parse_json(raw).is_err(), "{raw} must be refused");
        }
    }

    #[test]
    fn formats_exactly() {
        assert_eq!(format_minor(1234), "12.34");
        assert_eq!(format_minor(5), "0.05");
        assert_eq!(format_minor(-250), "-2.50");
        assert_eq!(format_minor(0), "0.00");
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,40}") {
            let _ = Amount::parse_json(&s);
        }

        #[test]
        fn round_trips_every_valid_amount(minor in 1i64..=CARD_LIMIT_MINOR) {
            let text = format_minor(minor);
            proptest::prop_assert_eq!(Amount::parse_json(&text).map(Amount::minor), Ok(minor));
        }
    }
}
