//! Rate limits in memory, per key (a client address, a person, an account): the generic cell
//! rate algorithm, so a client gets a steady rate with a burst allowance and a precise
//! `Retry-After` when over it. The table is bounded: when it fills up, keys that are back to
//! a full allowance are dropped.

use crate::ApiError;
use axum::http::{header, HeaderName, StatusCode};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MAX_KEYS: usize = 100_000;

pub struct RateLimiter {
    /// Time between requests at the steady rate.
    interval: Duration,
    /// How far ahead of now the theoretical arrival time may run (the burst).
    burst: Duration,
    limit: u32,
    window: Duration,
    cells: Mutex<HashMap<String, Instant>>,
}

/// Refused: over the limit for this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exceeded {
    pub retry_after: Duration,
    pub limit: u32,
    pub window: Duration,
}

impl RateLimiter {
    /// `limit` requests per `window`, all of which may come at once.
    pub fn new(limit: u32, window: Duration) -> Self {
        let limit = limit.max(1);
        let interval = window / limit;
        Self {
            interval,
            burst: interval * (limit - 1),
            limit,
            window,
            cells: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request for `key`; refuses when the key is over its limit.
    pub fn check(&self, key: &str) -> Result<(), Exceeded> {
        self.check_at(key, Instant::now())
    }

    pub fn check_at(&self, key: &str, now: Instant) -> Result<(), Exceeded> {
        let Ok(mut cells) = self.cells.lock() else {
            return Ok(());
        };
        if cells.len() >= MAX_KEYS {
            cells.retain(|_, tat| *tat > now);
        }
        let tat = cells.get(key).copied().unwrap_or(now).max(now);
        let ahead = tat - now;
        if ahead > self.burst {
            return Err(Exceeded {
                retry_after: ahead - self.burst,
                limit: self.limit,
                window: self.window,
            });
        }
        cells.insert(key.to_owned(), tat + self.interval);
        Ok(())
    }

    /// Whether `key` is over its limit now, without counting a request.
    pub fn peek(&self, key: &str) -> Result<(), Exceeded> {
        let now = Instant::now();
        let Ok(cells) = self.cells.lock() else {
            return Ok(());
        };
        match cells.get(key) {
            Some(tat) if *tat > now && *tat - now > self.burst => Err(Exceeded {
                retry_after: (*tat - now) - self.burst,
                limit: self.limit,
                window: self.window,
            }),
            _ => Ok(()),
        }
    }

    /// Forgets a key (e.g. after a successful login).
    pub fn reset(&self, key: &str) {
        if let Ok(mut cells) = self.cells.lock() {
            cells.remove(key);
        }
    }
}

impl From<Exceeded> for ApiError {
    fn from(e: Exceeded) -> Self {
        let seconds = e.retry_after.as_secs() + u64::from(e.retry_after.subsec_nanos() > 0);
        let seconds = seconds.max(1);
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            format!("too many requests; try again in {seconds} s"),
        )
        .with_header(header::RETRY_AFTER, seconds.to_string())
        .with_header(
            HeaderName::from_static("ratelimit-limit"),
            e.limit.to_string(),
        )
        .with_header(HeaderName::from_static("ratelimit-remaining"), "0")
        .with_header(
            HeaderName::from_static("ratelimit-reset"),
            seconds.to_string(),
        )
        .with_header(
            HeaderName::from_static("ratelimit-policy"),
            format!("{};w={}", e.limit, e.window.as_secs()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_burst_then_refuses_with_a_retry_time() {
        let limiter = RateLimiter::new(3, Duration::from_secs(60));
        let now = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at("a", now).is_ok());
        }
        let refused = limiter.check_at("a", now).unwrap_err();
        assert!(
            refused.retry_after <= Duration::from_secs(20) && refused.retry_after > Duration::ZERO
        );
        assert!(limiter.check_at("b", now).is_ok(), "keys are independent");
        assert!(
            limiter.check_at("a", now + Duration::from_secs(21)).is_ok(),
            "the allowance comes back"
        );
    }
}
