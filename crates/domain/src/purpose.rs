//! Purposes of processing a person can consent to, one by one (GDPR Art. 6(1)(a), Art. 7).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Purpose {
    /// The rewards programme itself; the original API's `consentGiven`.
    Rewards,
    /// Anonymised use of spending for analytics.
    Analytics,
    /// Personalised insights computed from the person's spending.
    Profiling,
}

impl Purpose {
    pub const ALL: [Purpose; 3] = [Purpose::Rewards, Purpose::Analytics, Purpose::Profiling];

    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Rewards => "rewards",
            Purpose::Analytics => "analytics",
            Purpose::Profiling => "profiling",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, crate::Invalid> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == raw)
            .ok_or_else(|| {
                crate::Invalid::new("purpose", "must be rewards, analytics or profiling")
            })
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
