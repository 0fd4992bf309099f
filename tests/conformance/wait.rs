//! Waiting for a condition instead of for the clock: poll until it holds, within a deadline.

use std::time::{Duration, Instant};

/// Calls `probe` every 10 ms until it answers `Some`; panics naming `what` after 10 s.
pub async fn until<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
