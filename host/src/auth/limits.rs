//! Rate limits per identity: a token bucket for each caller (issuer and subject), refilled at a
//! steady rate up to a burst.
//!
//! The buckets live in this process by default. With `[limits] redis = "redis://…"` they live
//! in Redis instead, so replicas behind one load balancer share each caller's budget: one Lua
//! script takes a token atomically (read, refill, take, write, in one step on the Redis
//! server, timed by the server's clock so replicas' clocks do not matter), and N a minute is N
//! in total however the calls are spread.
//!
//! When Redis cannot be reached (or does not answer within [`REDIS_DEADLINE`]), the use is
//! refused: failing closed keeps the limit a limit. Letting calls through unmetered while
//! Redis is down would turn an outage of the limiter into unlimited use for every caller.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `[limits]`: how many uses of tools, resources and prompts each caller may make.
#[derive(Debug, Clone, PartialEq)]
pub struct RateSettings {
    pub per_minute: u32,
    /// How many may come at once after a quiet spell (default: a tenth of a minute's worth,
    /// at least 1).
    pub burst: u32,
    /// `redis://host:port[/db]`: keep the buckets in this Redis, shared by every replica that
    /// names it; `None` keeps them in this process.
    pub redis: Option<String>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Callers idle this long are forgotten (their bucket would be full anyway).
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Above this many callers, idle ones are swept.
const SWEEP_ABOVE: usize = 10_000;

/// The longest one rate-limit decision waits on Redis (connecting included) before the use
/// is refused.
pub(crate) const REDIS_DEADLINE: Duration = Duration::from_secs(2);

/// Where the buckets are kept.
enum Store {
    Local(Mutex<HashMap<String, Bucket>>),
    Redis(RedisBuckets),
}

pub struct RateLimiter {
    settings: RateSettings,
    store: Store,
}

/// A refused use: how long until one more is allowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Exceeded {
    pub retry_after: Duration,
    pub per_minute: u32,
}

/// Why a use was not admitted by the rate limit.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Refused {
    /// The caller's budget is spent.
    Exceeded(Exceeded),
    /// The shared store (Redis) could not decide: the use is refused rather than let past
    /// its limit.
    Unavailable(String),
}

impl RateLimiter {
    /// A limiter with `settings`; with `settings.redis`, one that keeps its buckets there
    /// (connecting on first use, and again after a lost connection). Must be called within a
    /// Tokio runtime when Redis is named.
    pub(crate) fn new(settings: RateSettings) -> Result<Self, String> {
        let store = match &settings.redis {
            None => Store::Local(Mutex::default()),
            Some(url) => Store::Redis(RedisBuckets::new(url)?),
        };
        Ok(Self { settings, store })
    }

    /// A limiter that keeps its buckets in this process.
    #[cfg(test)]
    pub(crate) fn local(per_minute: u32, burst: u32) -> Self {
        Self { settings: RateSettings { per_minute, burst, redis: None }, store: Store::Local(Mutex::default()) }
    }

    pub(crate) fn per_minute(&self) -> u32 {
        self.settings.per_minute
    }

    /// Take one token from `caller`'s bucket.
    pub(crate) async fn check(&self, caller: &str) -> Result<(), Refused> {
        match &self.store {
            Store::Local(buckets) => self.check_at(buckets, caller, Instant::now()).map_err(Refused::Exceeded),
            Store::Redis(redis) => redis.take(caller, &self.settings).await,
        }
    }

    fn check_at(&self, buckets: &Mutex<HashMap<String, Bucket>>, caller: &str, now: Instant) -> Result<(), Exceeded> {
        let rate = f64::from(self.settings.per_minute) / 60.0;
        let burst = f64::from(self.settings.burst.max(1));
        let Ok(mut buckets) = buckets.lock() else { return Ok(()) };
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

/// Check `[limits] redis` when the config is read: a URL the client accepts, plain `redis://`
/// or `unix://` (this build has no TLS for Redis).
pub(crate) fn check_redis_url(url: &str) -> Result<(), String> {
    if url.starts_with("rediss://") || url.starts_with("valkeys://") {
        return Err("TLS to Redis (rediss://) is not built in: use redis:// on a trusted network".to_owned());
    }
    redis::Client::open(url)
        .map(drop)
        // Not the URL itself: it may hold a password.
        .map_err(|e| format!("not a Redis URL like redis://127.0.0.1:6379 ({e})"))
}

/// Every key this host writes in Redis starts with this, then the caller's limit key.
const KEY_PREFIX: &str = "fedmcp:rate:";

/// The token bucket, run atomically by Redis. KEYS[1]: the caller's bucket (a hash of
/// `tokens` and `at`, the server's time in ms of the last update). ARGV: tokens per ms, burst.
/// Returns `{1, 0}` when a token was taken, `{0, ms until one is due}` when none was left.
/// The key expires once the bucket would be full again, so idle callers cost nothing.
const TOKEN_BUCKET: &str = r"
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local saved = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(saved[1]) or burst
local at = tonumber(saved[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local taken = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  taken = 1
else
  wait = math.ceil((1 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate) + 1000)
return {taken, wait}
";

/// The buckets kept in Redis, through one multiplexed connection that reconnects by itself.
struct RedisBuckets {
    /// The URL without its password, for messages.
    shown: String,
    connection: redis::aio::ConnectionManager,
    script: redis::Script,
    /// Whether the last use reached Redis: an outage is logged when it starts and when it
    /// ends, not once per refused use.
    reachable: std::sync::atomic::AtomicBool,
}

impl RedisBuckets {
    fn new(url: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("limits.redis: {e}"))?;
        let shown = {
            let info = client.get_connection_info();
            format!("{}", info.addr())
        };
        // Each attempt is bounded; the manager connects on first use, not here, so a host
        // starts while Redis is down and serves (refusing limited uses) until it is back.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let connection = redis::aio::ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| format!("limits.redis: {e}"))?;
        let reachable = std::sync::atomic::AtomicBool::new(true);
        Ok(Self { shown, connection, script: redis::Script::new(TOKEN_BUCKET), reachable })
    }

    async fn take(&self, caller: &str, settings: &RateSettings) -> Result<(), Refused> {
        let rate_per_ms = f64::from(settings.per_minute) / 60_000.0;
        let burst = settings.burst.max(1);
        let mut connection = self.connection.clone();
        let mut invocation = self.script.key(format!("{KEY_PREFIX}{caller}"));
        invocation.arg(rate_per_ms).arg(burst);
        let answer = tokio::time::timeout(REDIS_DEADLINE, invocation.invoke_async::<(i64, i64)>(&mut connection)).await;
        use std::sync::atomic::Ordering;
        // The caller learns that the store is down, not where it is or what it said.
        let unavailable = |why: String| {
            if self.reachable.swap(false, Ordering::Relaxed) {
                tracing::warn!(redis = %self.shown, "rate limit store unavailable: {why}; limited uses are refused");
            } else {
                tracing::debug!(redis = %self.shown, "rate limit store still unavailable: {why}");
            }
            Refused::Unavailable("the shared rate limit store is unavailable".to_owned())
        };
        if answer.as_ref().is_ok_and(Result::is_ok) && !self.reachable.swap(true, Ordering::Relaxed) {
            tracing::info!(redis = %self.shown, "rate limit store reachable again");
        }
        match answer {
            Err(_) => Err(unavailable(format!("did not answer within {} s", REDIS_DEADLINE.as_secs()))),
            Ok(Err(error)) => Err(unavailable(format!("failed: {error}"))),
            Ok(Ok((1, _))) => Ok(()),
            Ok(Ok((_, wait_ms))) => Err(Refused::Exceeded(Exceeded {
                retry_after: Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0)),
                per_minute: settings.per_minute,
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_gets_its_burst_then_the_steady_rate_and_others_are_unaffected() {
        let limiter = RateLimiter::local(60, 3);
        let Store::Local(buckets) = &limiter.store else { panic!("a local limiter") };
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at(buckets, "alice", start).is_ok());
        }
        let refused = limiter.check_at(buckets, "alice", start).expect_err("the burst is spent");
        assert!(refused.retry_after <= Duration::from_secs(1) && refused.retry_after > Duration::ZERO);
        assert!(limiter.check_at(buckets, "bob", start).is_ok(), "buckets are per caller");
        assert!(
            limiter.check_at(buckets, "alice", start + Duration::from_millis(1001)).is_ok(),
            "one per second refills"
        );
        assert!(limiter.check_at(buckets, "alice", start + Duration::from_millis(1002)).is_err());
    }

    #[test]
    fn redis_urls_are_checked() {
        assert!(check_redis_url("redis://127.0.0.1:6379").is_ok());
        assert!(check_redis_url("redis://127.0.0.1:6379/2").is_ok());
        assert!(check_redis_url("rediss://cache.example:6380").unwrap_err().contains("TLS"));
        assert!(check_redis_url("http://127.0.0.1:6379").is_err());
    }

    #[tokio::test]
    async fn an_unreachable_redis_refuses_within_the_deadline() {
        // A port nothing listens on: connecting is refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a port").port();
        let settings = RateSettings { per_minute: 10, burst: 10, redis: Some(format!("redis://127.0.0.1:{port}")) };
        let limiter = RateLimiter::new(settings).expect("a lazy client");
        let started = Instant::now();
        let refused = limiter.check("alice").await.expect_err("fails closed");
        assert!(started.elapsed() <= REDIS_DEADLINE + Duration::from_millis(500), "{:?}", started.elapsed());
        let Refused::Unavailable(message) = refused else { panic!("{refused:?}") };
        // The caller is not told where the store is, nor what it said (the log is).
        assert!(message.contains("unavailable") && !message.contains(&port.to_string()), "{message}");
    }
}
