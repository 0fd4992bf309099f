//! In-process sliding-window log: exact within one process, nothing shared.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Decision, RateLimiter};

/// Forget idle clients every this many checks, so memory follows the active clients only.
const PRUNE_EVERY: u64 = 10_000;

#[derive(Default)]
pub struct MemoryRateLimiter {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    windows: HashMap<String, VecDeque<Instant>>,
    checks: u64,
}

impl MemoryRateLimiter {
    pub fn new() -> Self {
        Self::default()
    }

    /// The decision at `now`; separate from the clock so tests can move time.
    pub fn check_at(&self, key: &str, limit: u32, window: Duration, now: Instant) -> Decision {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.checks += 1;
        if state.checks.is_multiple_of(PRUNE_EVERY) {
            state.windows.retain(|_, w| {
                w.back()
                    .is_some_and(|last| now.saturating_duration_since(*last) < window)
            });
        }
        let entries = state.windows.entry(key.to_owned()).or_default();
        while entries
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            entries.pop_front();
        }
        let allowed = entries.len() < limit as usize;
        if allowed {
            entries.push_back(now);
        }
        let age = |t: Option<&Instant>| {
            t.map(|t| now.saturating_duration_since(*t))
                .unwrap_or_default()
        };
        Decision::from_window(
            allowed,
            limit,
            u32::try_from(entries.len()).unwrap_or(u32::MAX),
            window,
            age(entries.front()),
            age(entries.back()),
        )
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn check(&self, key: &str, limit: u32, window: Duration) -> anyhow::Result<Decision> {
        Ok(self.check_at(key, limit, window, Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_the_limit_then_refuses_until_the_oldest_request_leaves_the_window() {
        let limiter = MemoryRateLimiter::new();
        let window = Duration::from_secs(10);
        let t0 = Instant::now();
        for i in 0..3u32 {
            let d = limiter.check_at("k", 3, window, t0 + Duration::from_secs(u64::from(i)));
            assert!(d.allowed);
            assert_eq!(d.remaining, 2 - i);
            assert_eq!(d.reset, window);
        }
        let refused = limiter.check_at("k", 3, window, t0 + Duration::from_secs(4));
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert_eq!(refused.retry_after, Duration::from_secs(6));
        assert_eq!(refused.reset, Duration::from_secs(8));
        // Refusals are not counted: once the first request ages out, one slot opens.
        let later = limiter.check_at("k", 3, window, t0 + Duration::from_secs(10));
        assert!(later.allowed);
        assert_eq!(later.remaining, 0);
        assert!(
            !limiter
                .check_at("k", 3, window, t0 + Duration::from_secs(10))
                .allowed
        );
    }

    #[test]
    fn keys_are_counted_separately() {
        let limiter = MemoryRateLimiter::new();
        let now = Instant::now();
        let window = Duration::from_secs(60);
        assert!(limiter.check_at("a", 1, window, now).allowed);
        assert!(!limiter.check_at("a", 1, window, now).allowed);
        assert!(limiter.check_at("b", 1, window, now).allowed);
    }
}
