//! Redis sliding window: one sorted set per client and endpoint (member = request, score =
//! arrival in ms by the Redis clock), trimmed, counted, added to and expired by one Lua
//! script, so the count is exact under concurrency and across API instances.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{Client, Script};
use uuid::Uuid;

use super::{Decision, RateLimiter};
use crate::config::ConnectionUrl;

/// Trim, count, add if under the limit, expire. Time comes from the Redis server so API
/// instances with skewed clocks still share one window.
const SLIDING_WINDOW_SCRIPT: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local allowed = 0
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  count = count + 1
  allowed = 1
end
redis.call('PEXPIRE', KEYS[1], window)
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local oldest_age = 0
local newest_age = 0
if oldest[2] then oldest_age = now - tonumber(oldest[2]) end
if newest[2] then newest_age = now - tonumber(newest[2]) end
return {allowed, count, oldest_age, newest_age}
";

/// A check that takes longer than this fails open rather than slowing every request.
const CHECK_TIMEOUT: Duration = Duration::from_millis(500);
/// After a failure, skip Redis for this long so requests do not each wait for a timeout.
const BACKOFF: Duration = Duration::from_secs(1);

pub struct RedisRateLimiter {
    prefix: String,
    conn: ConnectionManager,
    script: Script,
    /// Unix ms before which Redis is not tried again.
    down_until_ms: AtomicU64,
}

impl RedisRateLimiter {
    /// Connects lazily, like the queue: the API starts even while Redis is down.
    pub fn new(url: &ConnectionUrl, prefix: &str) -> anyhow::Result<Self> {
        let client = Client::open(url.expose()).context("REDIS_URL is not a valid Redis URL")?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CHECK_TIMEOUT))
            .set_response_timeout(Some(CHECK_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        Ok(Self {
            prefix: prefix.to_owned(),
            conn: ConnectionManager::new_lazy_with_config(client, config)?,
            script: Script::new(SLIDING_WINDOW_SCRIPT),
            down_until_ms: AtomicU64::new(0),
        })
    }

    /// The Redis key of one client-and-endpoint window.
    pub fn key(&self, key: &str) -> String {
        format!("{}rate_limit:{key}", self.prefix)
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn check(&self, key: &str, limit: u32, window: Duration) -> anyhow::Result<Decision> {
        if unix_ms() < self.down_until_ms.load(Ordering::Relaxed) {
            anyhow::bail!("Redis failed moments ago; not retried yet");
        }
        let window_ms = window.as_millis().max(1) as u64;
        let mut conn = self.conn.clone();
        let mut invocation = self.script.key(self.key(key));
        invocation
            .arg(window_ms)
            .arg(limit)
            .arg(Uuid::new_v4().simple().to_string());
        let reply: anyhow::Result<(u8, u64, u64, u64)> =
            match tokio::time::timeout(CHECK_TIMEOUT, invocation.invoke_async(&mut conn)).await {
                Ok(r) => r.context("rate limit script"),
                Err(_) => Err(anyhow::anyhow!(
                    "no answer from Redis within {CHECK_TIMEOUT:?}"
                )),
            };
        let (allowed, count, oldest_age, newest_age) = match reply {
            Ok(r) => r,
            Err(e) => {
                self.down_until_ms
                    .store(unix_ms() + BACKOFF.as_millis() as u64, Ordering::Relaxed);
                return Err(e);
            }
        };
        Ok(Decision::from_window(
            allowed == 1,
            limit,
            u32::try_from(count).unwrap_or(u32::MAX),
            window,
            Duration::from_millis(oldest_age),
            Duration::from_millis(newest_age),
        ))
    }
}
