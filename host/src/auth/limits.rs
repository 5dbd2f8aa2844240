//! Rate limits per identity: a token bucket for each caller (issuer and subject), refilled at a
//! steady rate up to a burst.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `[limits]`: how many uses of tools, resources and prompts each caller may make.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSettings {
    pub per_minute: u32,
    /// How many may come at once after a quiet spell (default: a tenth of a minute's worth,
    /// at least 1).
    pub burst: u32,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Callers idle this long are forgotten (their bucket would be full anyway).
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Above this many callers, idle ones are swept.
const SWEEP_ABOVE: usize = 10_000;

pub struct RateLimiter {
    settings: RateSettings,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// A refused use: how long until one more is allowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Exceeded {
    pub retry_after: Duration,
    pub per_minute: u32,
}

impl RateLimiter {
    pub(crate) fn new(settings: RateSettings) -> Self {
        Self { settings, buckets: Mutex::default() }
    }

    /// Take one token from `caller`'s bucket.
    pub(crate) fn check(&self, caller: &str) -> Result<(), Exceeded> {
        self.check_at(caller, Instant::now())
    }

    fn check_at(&self, caller: &str, now: Instant) -> Result<(), Exceeded> {
        let rate = f64::from(self.settings.per_minute) / 60.0;
        let burst = f64::from(self.settings.burst.max(1));
        let Ok(mut buckets) = self.buckets.lock() else { return Ok(()) };
        if buckets.len() > SWEEP_ABOVE {
            buckets.retain(|_, b| now.saturating_duration_since(b.updated) < FORGET_AFTER);
        }
        let bucket = buckets.entry(caller.to_owned()).or_insert(Bucket { tokens: burst, updated: now });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = if rate > 0.0 { (1.0 - bucket.tokens) / rate } else { f64::from(u32::MAX) };
        Err(Exceeded { retry_after: Duration::from_secs_f64(wait), per_minute: self.settings.per_minute })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_gets_its_burst_then_the_steady_rate_and_others_are_unaffected() {
        let limiter = RateLimiter::new(RateSettings { per_minute: 60, burst: 3 });
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at("alice", start).is_ok());
        }
        let refused = limiter.check_at("alice", start).expect_err("the burst is spent");
        assert!(refused.retry_after <= Duration::from_secs(1) && refused.retry_after > Duration::ZERO);
        assert!(limiter.check_at("bob", start).is_ok(), "buckets are per caller");
        assert!(limiter.check_at("alice", start + Duration::from_millis(1001)).is_ok(), "one per second refills");
        assert!(limiter.check_at("alice", start + Duration::from_millis(1002)).is_err());
    }
}
