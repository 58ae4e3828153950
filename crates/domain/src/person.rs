//! Personal data as types whose `Debug` never prints the value, so it cannot leak into logs.

use crate::Invalid;
use std::fmt;

macro_rules! redacted_debug {
    ($t:ident) => {
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($t), "(<redacted>)"))
            }
        }
    };
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// A login name: 3 to 64 characters of letters, digits, `.`, `_` and `-`, compared case-insensitively.
#[derive(Clone, PartialEq, Eq)]
pub struct Username(String);
redacted_debug!(Username);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if !(3..=64).contains(&raw.len()) || !raw.chars().all(ok_char) {
            return Err(Invalid::new(
                "username",
                "must be 3 to 64 characters: letters, digits, '.', '_' or '-'",
            ));
        }
        Ok(Self(raw.to_ascii_lowercase()))
    }

    /// The normalised form used for blind indexes and storage.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password that passed the policy: 8 to 256 characters and not among the most common ones.
#[derive(Clone)]
pub struct Password(String);
redacted_debug!(Password);

impl Password {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let chars = raw.chars().count();
        if !(8..=256).contains(&chars) {
            return Err(Invalid::new("password", "must be 8 to 256 characters"));
        }
        if is_common_password(raw) {
            return Err(Invalid::new(
                "password",
                "is one of the most common passwords; choose another",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// True when the whole password, ignoring letter case, is one of the 1,000 most common
/// passwords in zxcvbn's ranked password list (a registry dependency, so the list is not ours
/// to keep). Only short inputs are checked: every entry of that list is short, and zxcvbn's
/// matching grows fast with length.
pub fn is_common_password(raw: &str) -> bool {
    const TOP: usize = 1000;
    let lower = raw.to_lowercase();
    let length = lower.chars().count();
    if length > 32 {
        return false;
    }
    let entropy = zxcvbn::zxcvbn(&lower, &[]);
    entropy.sequence().iter().any(|m| {
        m.i == 0
            && m.j + 1 == length
            && matches!(&m.pattern, zxcvbn::matching::patterns::MatchPattern::Dictionary(d)
                if d.rank <= TOP && !d.reversed && !d.l33t
                    && format!("{:?}", d.dictionary_name) == "Passwords")
    })
}

/// An e-mail address, checked for shape only (one `@`, a dot in the domain, no spaces).
#[derive(Clone, PartialEq, Eq)]
pub struct Email(String);
redacted_debug!(Email);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let bad = || Invalid::new("email", "must be an e-mail address like name@example.org");
        if raw.len() > 254 || has_control(raw) || raw.contains(char::is_whitespace) {
            return Err(bad());
        }
        let (local, domain) = raw.split_once('@').ok_or_else(bad)?;
        if local.is_empty()
            || local.len() > 64
            || domain.contains('@')
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
        {
            return Err(bad());
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A given or family name: 1 to 100 characters, no control characters.
#[derive(Clone, PartialEq, Eq)]
pub struct PersonName(String);
redacted_debug!(PersonName);

impl PersonName {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, Invalid> {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.chars().count() > 100 || has_control(trimmed) {
            return Err(Invalid::new(
                field,
                "must be 1 to 100 characters without control characters",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The merchant text of a charge: 1 to 100 characters, no control characters. Personal data:
/// where someone shops says a lot about them.
#[derive(Clone, PartialEq, Eq)]
pub struct TransactionName(String);
redacted_debug!(TransactionName);

impl TransactionName {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.chars().count() > 100 || has_control(trimmed) {
            return Err(Invalid::new(
                "transactionName",
                "must be 1 to 100 characters without control characters",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_personal_data() {
        let shown = format!(
            "{:?} {:?} {:?} {:?}",
            Username::parse("canary-user").ok(),
            Email::parse("canary@example.org").ok(),
            PersonName::parse("givenName", "Canaryname").ok(),
            Password::parse("canary-password-x1").ok(),
        );
        assert!(!shown.to_lowercase().contains("canary"), "{shown}");
    }

    #[test]
    fn password_policy() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse(&"x".repeat(257)).is_err());
        assert!(Password::parse("password").is_err());
        assert!(Password::parse("Password1").is_err() || Password::parse("password1").is_err());
        assert!(Password::parse("12345678").is_err());
        assert!(Password::parse("correct horse battery").is_ok());
        assert!(Password::parse(&"é".repeat(256)).is_ok());
    }

    #[test]
    fn the_most_common_passwords_are_refused_in_any_letter_case() {
        for common in [
            "password",
            "PASSWORD",
            "12345678",
            "qwerty123",
            "iloveyou",
            "sunshine",
            "baseball",
        ] {
            assert!(Password::parse(common).is_err(), "{common}");
        }
        for fine in ["violet-tangent-harbour", "Zq8!mN2#pL"] {
            assert!(Password::parse(fine).is_ok(), "{fine}");
        }
    }

    #[test]
    fn usernames_and_emails() {
        assert_eq!(
            Username::parse("Alice.B").map(|u| u.as_str().to_owned()),
            Ok("alice.b".into())
        );
        for bad in ["ab", "a b", "a/b", "ünï", &"a".repeat(65)] {
            assert!(Username::parse(bad).is_err(), "{bad}");
        }
        assert!(Email::parse("a@b.co").is_ok());
        for bad in [
            "a", "a@b", "@b.co", "a@@b.co", "a b@c.de", "a@.com", "a@b.com.",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }
}
