//! Login throttling. Failed sign-ins are counted per client address and per (account,
//! address) pair; past either limit that address waits before trying again. Nothing is ever
//! locked for good, and an attacker failing from their own addresses cannot stop the account's
//! owner signing in from theirs.

use std::net::IpAddr;
use std::time::Duration;
use web::ratelimit::{Exceeded, RateLimiter};

pub struct LoginThrottle {
    per_address: RateLimiter,
    per_account_address: RateLimiter,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self::new(30, 5, Duration::from_secs(15 * 60))
    }
}

impl LoginThrottle {
    /// At most `per_address` failures from one address and `per_account` failures for one
    /// account from one address, per `window`.
    pub fn new(per_address: u32, per_account: u32, window: Duration) -> Self {
        Self {
            per_address: RateLimiter::new(per_address, window),
            per_account_address: RateLimiter::new(per_account, window),
        }
    }

    fn pair(account: &str, ip: Option<IpAddr>) -> String {
        format!(
            "{account}@{}",
            ip.map(|i| i.to_string()).unwrap_or_default()
        )
    }

    /// Refuses before any password work when this address, or this account from this
    /// address, failed too often recently.
    pub fn check(&self, account: &str, ip: Option<IpAddr>) -> Result<(), Exceeded> {
        if let Some(ip) = ip {
            self.per_address.peek(&ip.to_string())?;
        }
        self.per_account_address.peek(&Self::pair(account, ip))
    }

    pub fn failed(&self, account: &str, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            let _ = self.per_address.check(&ip.to_string());
        }
        let _ = self.per_account_address.check(&Self::pair(account, ip));
    }

    pub fn succeeded(&self, account: &str, ip: Option<IpAddr>) {
        self.per_account_address.reset(&Self::pair(account, ip));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_throttle_the_pair_and_the_address_but_not_others() {
        let throttle = LoginThrottle::new(10, 3, Duration::from_secs(60));
        let attacker: Option<IpAddr> = "198.51.100.7".parse().ok();
        let owner: Option<IpAddr> = "203.0.113.9".parse().ok();
        for _ in 0..3 {
            assert!(throttle.check("victim", attacker).is_ok());
            throttle.failed("victim", attacker);
        }
        assert!(throttle.check("victim", attacker).is_err());
        assert!(
            throttle.check("victim", owner).is_ok(),
            "the owner is not locked out"
        );
        for n in 0..7 {
            throttle.failed(&format!("other{n}"), attacker);
        }
        assert!(
            throttle.check("someone", attacker).is_err(),
            "the address is throttled"
        );
        assert!(throttle.check("someone", owner).is_ok());
    }
}
