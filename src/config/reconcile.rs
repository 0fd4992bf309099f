//! Reconciling sends interrupted by a crash, where the provider cannot be asked.

use std::time::Duration;

use super::{ConfigError, Env};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileSettings {
    /// `SENDGRID_RECONCILE_WAIT` (seconds, default 120): how long after the earlier claim a
    /// SendGrid email whose worker died is held back, so that its events can arrive and record
    /// it `sent`; after the wait it is sent. 0 sends at once.
    pub sendgrid_wait: Duration,
}

impl ReconcileSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            sendgrid_wait: env.seconds("SENDGRID_RECONCILE_WAIT", 120.0)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sendgrid_wait_defaults_to_two_minutes() {
        let parse = |pairs: &[(&str, &str)]| {
            ReconcileSettings::from_env(&Env::from_pairs(pairs.iter().copied()))
                .map(|s| s.sendgrid_wait)
        };
        assert_eq!(parse(&[]).ok(), Some(Duration::from_secs(120)));
        assert_eq!(
            parse(&[("SENDGRID_RECONCILE_WAIT", "2")]).ok(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            parse(&[("SENDGRID_RECONCILE_WAIT", "0")]).ok(),
            Some(Duration::ZERO)
        );
        assert!(parse(&[("SENDGRID_RECONCILE_WAIT", "later")]).is_err());
    }
}
