//! Waiting for a condition instead of for the clock: poll until it holds, within a deadline.
//! Both test crates include this file (`#[path = "../common/wait.rs"]`).

use std::time::{Duration, Instant};

/// Calls `probe` every 20 ms until it answers `Some`; panics naming `what` after `within`.
pub async fn until<T>(
    what: &str,
    within: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
