//! The `RateLimiter` trait: a sliding-window counter per client and endpoint. The Redis
//! implementation is shared by every API instance; the in-process one serves a single
//! process (the embedded deployment).

pub mod memory;
pub mod redis;

use std::time::Duration;

use async_trait::async_trait;

/// The verdict on one request, with what the response headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    /// Requests still allowed in the current window (after this one, if admitted).
    pub remaining: u32,
    /// Until the window is empty again, i.e. the whole quota is back.
    pub reset: Duration,
    /// Until the oldest counted request leaves the window: the earliest a refused client
    /// can succeed.
    pub retry_after: Duration,
}

impl Decision {
    /// What a window holding `count` requests (after this one, if admitted) means; the ages
    /// are those of the oldest and newest counted requests.
    pub fn from_window(
        allowed: bool,
        limit: u32,
        count: u32,
        window: Duration,
        oldest_age: Duration,
        newest_age: Duration,
    ) -> Self {
        Self {
            allowed,
            limit,
            remaining: limit.saturating_sub(count),
            reset: window.saturating_sub(newest_age),
            retry_after: if allowed {
                Duration::ZERO
            } else {
                window.saturating_sub(oldest_age)
            },
        }
    }
}

#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    fn backend(&self) -> &'static str;

    /// Counts one request under `key` if fewer than `limit` were counted in the last
    /// `window`; refused requests are not counted. Atomic per key.
    async fn check(&self, key: &str, limit: u32, window: Duration) -> anyhow::Result<Decision>;
}
