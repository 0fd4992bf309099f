//! Retry timing: exponential backoff with jitter, never sooner than the provider asked.

use std::time::Duration;

/// Delay before retry number `attempt` (1 for the first retry).
///
/// The exponential step is `base * 2^(attempt-1)`, capped at `max`; half of it is fixed and
/// half random ("equal jitter") so that a burst of failures does not retry in lockstep. A
/// provider's `Retry-After` is a floor.
pub fn retry_delay(
    base: Duration,
    max: Duration,
    attempt: u32,
    retry_after: Option<Duration>,
) -> Duration {
    let exponent = attempt.saturating_sub(1).min(30);
    let step = base.saturating_mul(1u32 << exponent).min(max);
    let half = step / 2;
    let jitter = half.mul_f64(fastrand::f64());
    let delay = half + jitter;
    match retry_after {
        Some(floor) if floor > delay => floor,
        _ => delay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_within_their_jitter_band() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(300);
        for attempt in 1..=5u32 {
            let step = Duration::from_secs(1 << (attempt - 1));
            for _ in 0..50 {
                let d = retry_delay(base, max, attempt, None);
                assert!(
                    d >= step / 2 && d <= step,
                    "attempt {attempt}: {d:?} outside [{:?}, {step:?}]",
                    step / 2
                );
            }
        }
    }

    #[test]
    fn delays_are_capped() {
        let d = retry_delay(Duration::from_secs(1), Duration::from_secs(10), 20, None);
        assert!(d <= Duration::from_secs(10));
    }

    #[test]
    fn retry_after_is_a_floor() {
        let d = retry_delay(
            Duration::from_millis(10),
            Duration::from_secs(1),
            1,
            Some(Duration::from_secs(7)),
        );
        assert_eq!(d, Duration::from_secs(7));
    }

    #[test]
    fn jitter_spreads_delays() {
        let samples: std::collections::HashSet<Duration> = (0..20)
            .map(|_| retry_delay(Duration::from_secs(8), Duration::from_secs(60), 1, None))
            .collect();
        assert!(samples.len() > 1);
    }
}
