//! Scheduled sends: how often the worker's scheduler looks for due messages.

use std::time::Duration;

use super::{ConfigError, Env};

/// Default `SCHEDULER_INTERVAL_MS`: a due message is promoted at most this long after its
/// `send_at`, well inside the one second the API promises.
pub const DEFAULT_SCHEDULER_INTERVAL_MS: u64 = 200;
/// Past this the promise of sending within a second of `send_at` cannot hold.
pub const MAX_SCHEDULER_INTERVAL_MS: u64 = 1000;

/// `SCHEDULER_INTERVAL_MS`: 10 to 1000 milliseconds (default 200).
pub fn scheduler_interval(env: &Env) -> Result<Duration, ConfigError> {
    let ms: u64 = env.parse(
        "SCHEDULER_INTERVAL_MS",
        DEFAULT_SCHEDULER_INTERVAL_MS,
        "a number of milliseconds",
    )?;
    if !(10..=MAX_SCHEDULER_INTERVAL_MS).contains(&ms) {
        return Err(ConfigError(format!(
            "SCHEDULER_INTERVAL_MS={ms} must be between 10 and {MAX_SCHEDULER_INTERVAL_MS}"
        )));
    }
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_defaults_to_200_ms_and_stays_within_a_second() {
        let none = Env::from_pairs(Vec::<(String, String)>::new());
        assert_eq!(
            scheduler_interval(&none).unwrap(),
            Duration::from_millis(200)
        );
        let set = Env::from_pairs([("SCHEDULER_INTERVAL_MS", "50")]);
        assert_eq!(scheduler_interval(&set).unwrap(), Duration::from_millis(50));
        for bad in ["0", "1001", "fast", "-5"] {
            let env = Env::from_pairs([("SCHEDULER_INTERVAL_MS", bad)]);
            let err = scheduler_interval(&env).unwrap_err().to_string();
            assert!(err.contains("SCHEDULER_INTERVAL_MS"), "{err}");
        }
    }
}
