//! Events to the application: how webhook deliveries are retried and timed out, when a
//! failing endpoint is disabled, whether private addresses may receive events, and the
//! secret that signs per-message status callbacks.

use std::time::Duration;

use secrecy::SecretString;

use super::{ConfigError, Env, Environment};

/// The documented development default of `STATUS_CALLBACK_SECRET` (refused in production).
pub const DEFAULT_STATUS_CALLBACK_SECRET: &str =
    "whsec_ZGV2ZWxvcG1lbnQtb25seS1jYWxsYmFjay1zZWNyZXQ=";

/// Svix's schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
pub const DEFAULT_RETRY_SCHEDULE: &str = "5,300,1800,7200,18000,36000,36000";

#[derive(Debug, Clone)]
pub struct EventSettings {
    /// Delay before each retry; a chain fails after the last one.
    pub retry_schedule: Vec<Duration>,
    /// How long one POST may take.
    pub timeout: Duration,
    /// An endpoint failing without a success for this long is disabled.
    pub disable_after: Duration,
    /// Endpoint and callback URLs may name loopback, private and link-local addresses.
    pub allow_private_urls: bool,
    /// Signs per-message status callbacks (`whsec_…`).
    pub status_callback_secret: SecretString,
    /// Deliveries in flight to one endpoint at most.
    pub endpoint_concurrency: usize,
    /// Deliveries in flight per worker at most.
    pub concurrency: usize,
    /// How often an idle worker looks for due deliveries.
    pub poll_interval: Duration,
    /// How long a claimed delivery belongs to its worker; after that (a killed worker)
    /// another worker takes it.
    pub lease: Duration,
}

impl EventSettings {
    pub fn from_env(env: &Env, environment: Environment) -> Result<Self, ConfigError> {
        let production = environment == Environment::Production;
        let raw = env.string("EVENTS_RETRY_SCHEDULE", DEFAULT_RETRY_SCHEDULE);
        let retry_schedule = parse_schedule(&raw).ok_or_else(|| {
            ConfigError(format!(
                "EVENTS_RETRY_SCHEDULE={raw:?} must be comma-separated non-negative seconds (e.g. {DEFAULT_RETRY_SCHEDULE})"
            ))
        })?;
        let secret = env.string("STATUS_CALLBACK_SECRET", DEFAULT_STATUS_CALLBACK_SECRET);
        if production && secret == DEFAULT_STATUS_CALLBACK_SECRET {
            return Err(ConfigError(
                "STATUS_CALLBACK_SECRET must be set to your own whsec_ secret when ENVIRONMENT=production".into(),
            ));
        }
        if !valid_secret(&secret) {
            return Err(ConfigError(
                "STATUS_CALLBACK_SECRET must be whsec_ followed by the base64 of at least 24 bytes"
                    .into(),
            ));
        }
        let timeout = env.seconds("EVENTS_TIMEOUT", 15.0)?;
        if timeout.is_zero() {
            return Err(ConfigError("EVENTS_TIMEOUT must be more than 0".into()));
        }
        Ok(Self {
            retry_schedule,
            timeout,
            disable_after: env.seconds("EVENTS_DISABLE_AFTER", 5.0 * 24.0 * 3600.0)?,
            allow_private_urls: env.flag("EVENTS_ALLOW_PRIVATE_URLS", !production)?,
            status_callback_secret: SecretString::from(secret),
            endpoint_concurrency: env.positive("EVENTS_ENDPOINT_CONCURRENCY", 64)?,
            concurrency: env.positive("EVENTS_CONCURRENCY", 256)?,
            poll_interval: env.seconds("EVENTS_POLL_INTERVAL", 0.5)?,
            lease: env.seconds("EVENTS_LEASE", timeout.as_secs_f64() * 8.0 + 30.0)?,
        })
    }
}

fn parse_schedule(raw: &str) -> Option<Vec<Duration>> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .map(Duration::from_secs_f64)
        })
        .collect()
}

/// `whsec_` + base64 of 24 bytes or more (checked here: `config` is a leaf module).
fn valid_secret(secret: &str) -> bool {
    use base64::Engine;
    secret
        .strip_prefix("whsec_")
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .is_some_and(|k| k.len() >= 24)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_environment() {
        let dev = EventSettings::from_env(&Env::from_pairs([("X", "1")]), Environment::Development)
            .unwrap();
        assert_eq!(dev.retry_schedule.len(), 7);
        assert_eq!(dev.timeout, Duration::from_secs(15));
        assert!(dev.allow_private_urls);
        let err = EventSettings::from_env(&Env::from_pairs([("X", "1")]), Environment::Production)
            .unwrap_err();
        assert!(err.to_string().contains("STATUS_CALLBACK_SECRET"), "{err}");
        let prod = EventSettings::from_env(
            &Env::from_pairs([(
                "STATUS_CALLBACK_SECRET",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8G",
            )]),
            Environment::Production,
        )
        .unwrap();
        assert!(!prod.allow_private_urls);
    }

    #[test]
    fn schedules_are_seconds() {
        let env = Env::from_pairs([("EVENTS_RETRY_SCHEDULE", "0.1, 0.2")]);
        let s = EventSettings::from_env(&env, Environment::Development).unwrap();
        assert_eq!(
            s.retry_schedule,
            [Duration::from_millis(100), Duration::from_millis(200)]
        );
        let bad = Env::from_pairs([("EVENTS_RETRY_SCHEDULE", "5,soon")]);
        assert!(EventSettings::from_env(&bad, Environment::Development).is_err());
    }
}
