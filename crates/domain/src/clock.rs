//! Time as a port, so tests can move it (code expiry, token lifetimes, due dates).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

pub trait Clock: Send + Sync + 'static {
    /// Microseconds since the Unix epoch.
    fn now_micros(&self) -> i64;

    fn now_secs(&self) -> i64 {
        self.now_micros().div_euclid(1_000_000)
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(now.as_micros()).unwrap_or(i64::MAX)
    }
}

/// A clock that starts at the real time and can be moved forward by tests.
#[derive(Debug, Clone, Default)]
pub struct OffsetClock {
    offset_micros: Arc<AtomicI64>,
}

impl OffsetClock {
    pub fn advance_secs(&self, secs: i64) {
        self.offset_micros
            .fetch_add(secs * 1_000_000, Ordering::SeqCst);
    }
}

impl Clock for OffsetClock {
    fn now_micros(&self) -> i64 {
        SystemClock.now_micros() + self.offset_micros.load(Ordering::SeqCst)
    }
}

/// The calendar month (`YYYY-MM`, UTC) of a time in microseconds since the epoch. Used to
/// generalise times for analytics and anonymous facts.
pub fn month_of(micros: i64) -> String {
    // Days-to-civil conversion for the proleptic Gregorian calendar.
    let days = micros.div_euclid(86_400_000_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}")
}

#[cfg(test)]
mod tests {
    use super::month_of;

    #[test]
    fn months_are_utc_calendar_months() {
        assert_eq!(month_of(0), "1970-01");
        // 2026-12-03T00:00:00Z
        assert_eq!(month_of(1_796_256_000_000_000), "2026-12");
        // 2024-02-29T23:59:59Z, a leap day
        assert_eq!(month_of(1_709_251_199_000_000), "2024-02");
        // 2024-03-01T00:00:00Z
        assert_eq!(month_of(1_709_251_200_000_000), "2024-03");
        assert_eq!(month_of(-1), "1969-12");
    }
}
