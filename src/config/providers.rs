//! Provider configuration: which providers serve each channel (in failover order), their
//! credentials and base URLs, timeouts, circuit breakers and per-sender pacing, and the
//! mock provider's behaviour (the development default).

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use secrecy::SecretString;

use super::{ConfigError, ConnectionUrl, Env, Environment};

pub const DEFAULT_TWILIO_API_BASE: &str = "https://api.twilio.com";
pub const DEFAULT_SENDGRID_API_BASE: &str = "https://api.sendgrid.com";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    Twilio,
    Sendgrid,
    Smtp,
    Mock,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Twilio => "twilio",
            Self::Sendgrid => "sendgrid",
            Self::Smtp => "smtp",
            Self::Mock => "mock",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        match raw {
            "twilio" => Some(Self::Twilio),
            "sendgrid" => Some(Self::Sendgrid),
            "smtp" => Some(Self::Smtp),
            "mock" => Some(Self::Mock),
            _ => None,
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct TwilioSettings {
    pub account_sid: String,
    pub auth_token: SecretString,
    pub messaging_service_sid: Option<String>,
    pub api_base: String,
}

#[derive(Debug, Clone)]
pub struct SendgridSettings {
    pub api_key: SecretString,
    pub api_base: String,
}

/// Messages per second allowed per sender.
#[derive(Debug, Clone)]
pub struct PacingSettings {
    /// `None`: on for a channel served by a real provider, off for the mock alone.
    pub enabled: Option<bool>,
    pub long_code: f64,
    pub toll_free: f64,
    /// Per email sender address; 0 means unpaced.
    pub email: f64,
    /// Explicit rates for given senders (short codes, numbers with a raised limit, ...).
    pub senders: HashMap<String, f64>,
    /// Longest a send waits in its task for its slot; later slots are deferred through
    /// the delayed-retry set instead of holding a worker slot.
    pub max_wait: Duration,
}

#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// For sms and mms, in failover order.
    pub sms: Vec<ProviderKind>,
    pub email: Vec<ProviderKind>,
    pub twilio: Option<TwilioSettings>,
    pub sendgrid: Option<SendgridSettings>,
    pub smtp_url: Option<ConnectionUrl>,
    /// The address providers reach this service at (status callbacks).
    pub public_base_url: Option<String>,
    /// One provider request, connection included.
    pub request_timeout: Duration,
    /// Attachments are fetched and attached to emails up to this many bytes in total.
    pub attachment_max_bytes: usize,
    pub breaker_threshold: u32,
    pub breaker_cooldown: Duration,
    pub pacing: PacingSettings,
}

/// Mock provider behaviour (the development default).
#[derive(Debug, Clone)]
pub struct MockProviderSettings {
    pub latency: Duration,
    pub error_rate: f64,
    pub rate_429: f64,
    pub rate_500: f64,
    /// `MOCK_PROVIDER_SENT_LOG`: append-only file of deliveries (tests and development).
    pub sent_log: Option<std::path::PathBuf>,
}

impl MockProviderSettings {
    /// `MOCK_PROVIDER_LATENCY_MS` and the guide's error injection (`PROVIDER_*_RATE`).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mock = Self {
            latency: Duration::from_millis(env.parse(
                "MOCK_PROVIDER_LATENCY_MS",
                100,
                "a number of milliseconds",
            )?),
            error_rate: env.rate("PROVIDER_ERROR_RATE")?,
            rate_429: env.rate("PROVIDER_429_RATE")?,
            rate_500: env.rate("PROVIDER_500_RATE")?,
            sent_log: env
                .raw("MOCK_PROVIDER_SENT_LOG")
                .map(std::path::PathBuf::from),
        };
        if mock.error_rate + mock.rate_429 + mock.rate_500 > 1.0 {
            return Err(ConfigError(
                "PROVIDER_ERROR_RATE + PROVIDER_429_RATE + PROVIDER_500_RATE must not exceed 1"
                    .into(),
            ));
        }
        Ok(mock)
    }
}

fn provider_list(
    env: &Env,
    name: &str,
    allowed: &[ProviderKind],
) -> Result<Vec<ProviderKind>, ConfigError> {
    let raw = env.string(name, "mock");
    let mut list = Vec::new();
    for part in raw.split(',').map(|p| p.trim().to_ascii_lowercase()) {
        if part.is_empty() {
            continue;
        }
        let kind = ProviderKind::parse(&part)
            .filter(|k| allowed.contains(k))
            .ok_or_else(|| {
                let names: Vec<&str> = allowed.iter().map(|k| k.as_str()).collect();
                ConfigError(format!(
                    "{name}={raw:?}: {part:?} is not one of {}",
                    names.join(", ")
                ))
            })?;
        if list.contains(&kind) {
            return Err(ConfigError(format!("{name}={raw:?} names {part} twice")));
        }
        list.push(kind);
    }
    if list.is_empty() {
        return Err(ConfigError(format!(
            "{name} must name at least one provider"
        )));
    }
    Ok(list)
}

fn positive_rate(env: &Env, name: &str, default: f64) -> Result<f64, ConfigError> {
    let r: f64 = env.parse(name, default, "a number of messages per second")?;
    if !r.is_finite() || r < 0.0 {
        return Err(ConfigError(format!(
            "{name}={r} must be a non-negative number of messages per second"
        )));
    }
    Ok(r)
}

fn base_url(env: &Env, name: &str, default: &str) -> Result<String, ConfigError> {
    let raw = env.string(name, default);
    let parsed = url::Url::parse(&raw)
        .map_err(|e| ConfigError(format!("{name} is not a valid URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ConfigError(format!("{name} must be an http(s) URL")));
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

fn sender_rates(env: &Env) -> Result<HashMap<String, f64>, ConfigError> {
    let mut map = HashMap::new();
    let Some(raw) = env.raw("PACING_SENDER_RATES") else {
        return Ok(map);
    };
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (sender, rate) = pair.rsplit_once('=').ok_or_else(|| {
            ConfigError(format!("PACING_SENDER_RATES: {pair:?} is not SENDER=RATE"))
        })?;
        let rate: f64 = rate
            .trim()
            .parse()
            .ok()
            .filter(|r: &f64| r.is_finite() && *r >= 0.0)
            .ok_or_else(|| {
                ConfigError(format!(
                    "PACING_SENDER_RATES: {pair:?} needs a non-negative rate"
                ))
            })?;
        map.insert(sender.trim().to_ascii_lowercase(), rate);
    }
    Ok(map)
}

impl ProviderSettings {
    pub fn from_env(env: &Env, environment: Environment) -> Result<Self, ConfigError> {
        use ProviderKind::*;
        let sms = provider_list(env, "SMS_PROVIDERS", &[Twilio, Mock])?;
        let email = provider_list(env, "EMAIL_PROVIDERS", &[Sendgrid, Smtp, Mock])?;
        let uses = |k: ProviderKind| sms.contains(&k) || email.contains(&k);

        if environment == Environment::Production
            && uses(Mock)
            && !env.flag("ALLOW_MOCK_PROVIDERS", false)?
        {
            let var = if sms.contains(&Mock) {
                "SMS_PROVIDERS"
            } else {
                "EMAIL_PROVIDERS"
            };
            return Err(ConfigError(format!(
                "{var} uses the mock provider, which sends nothing; in production name real providers (twilio, sendgrid, smtp) or set ALLOW_MOCK_PROVIDERS=true"
            )));
        }

        let required = |name: &str, by: &str| -> Result<String, ConfigError> {
            env.raw(name)
                .map(|v| v.trim().to_owned())
                .ok_or_else(|| ConfigError(format!("{name} is required when {by} includes it")))
        };
        let twilio = if uses(Twilio) {
            Some(TwilioSettings {
                account_sid: required("TWILIO_ACCOUNT_SID", "SMS_PROVIDERS")?,
                auth_token: SecretString::from(required("TWILIO_AUTH_TOKEN", "SMS_PROVIDERS")?),
                messaging_service_sid: env
                    .raw("TWILIO_MESSAGING_SERVICE_SID")
                    .map(|v| v.trim().to_owned()),
                api_base: base_url(env, "TWILIO_API_BASE", DEFAULT_TWILIO_API_BASE)?,
            })
        } else {
            None
        };
        let sendgrid = if uses(Sendgrid) {
            Some(SendgridSettings {
                api_key: SecretString::from(required("SENDGRID_API_KEY", "EMAIL_PROVIDERS")?),
                api_base: base_url(env, "SENDGRID_API_BASE", DEFAULT_SENDGRID_API_BASE)?,
            })
        } else {
            None
        };
        let smtp_url = if uses(Smtp) {
            let raw = required("SMTP_URL", "EMAIL_PROVIDERS")?;
            let parsed = url::Url::parse(&raw)
                .map_err(|e| ConfigError(format!("SMTP_URL is not a valid URL ({e})")))?;
            if !matches!(parsed.scheme(), "smtp" | "smtps") {
                return Err(ConfigError(
                    "SMTP_URL must start with smtp:// (add ?tls=required for STARTTLS) or smtps://"
                        .into(),
                ));
            }
            Some(ConnectionUrl::new(raw))
        } else {
            None
        };
        let public_base_url = match env.raw("PUBLIC_BASE_URL") {
            Some(_) => Some(base_url(env, "PUBLIC_BASE_URL", "")?),
            None => None,
        };

        let request_timeout = env.seconds("PROVIDER_TIMEOUT", 30.0)?;
        if request_timeout.is_zero() {
            return Err(ConfigError(
                "PROVIDER_TIMEOUT must be greater than 0".into(),
            ));
        }
        let breaker_threshold: u32 =
            env.parse("CIRCUIT_BREAKER_THRESHOLD", 5, "a positive integer")?;
        if breaker_threshold == 0 {
            return Err(ConfigError(
                "CIRCUIT_BREAKER_THRESHOLD must be at least 1".into(),
            ));
        }
        let pacing_enabled = match env.raw("PACING_ENABLED") {
            None => None,
            Some(_) => Some(env.flag("PACING_ENABLED", true)?),
        };
        let pacing = PacingSettings {
            enabled: pacing_enabled,
            long_code: positive_rate(env, "PACING_RATE_LONG_CODE", 1.0)?,
            toll_free: positive_rate(env, "PACING_RATE_TOLL_FREE", 3.0)?,
            email: positive_rate(env, "PACING_RATE_EMAIL", 0.0)?,
            senders: sender_rates(env)?,
            max_wait: env.seconds("PACING_MAX_WAIT", 2.0)?,
        };

        Ok(Self {
            sms,
            email,
            twilio,
            sendgrid,
            smtp_url,
            public_base_url,
            request_timeout,
            attachment_max_bytes: env.positive("ATTACHMENT_MAX_BYTES", 10 * 1024 * 1024)?,
            breaker_threshold,
            breaker_cooldown: env.seconds("CIRCUIT_BREAKER_COOLDOWN", 30.0)?,
            pacing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<ProviderSettings, ConfigError> {
        let env = Env::from_pairs(pairs.iter().copied());
        let environment = if pairs.contains(&("ENVIRONMENT", "production")) {
            Environment::Production
        } else {
            Environment::Development
        };
        ProviderSettings::from_env(&env, environment)
    }

    #[test]
    fn the_mock_serves_every_channel_by_default() {
        let s = load(&[]).unwrap();
        assert_eq!(s.sms, [ProviderKind::Mock]);
        assert_eq!(s.email, [ProviderKind::Mock]);
    }

    #[test]
    fn lists_keep_their_failover_order() {
        let s = load(&[
            ("EMAIL_PROVIDERS", "sendgrid, smtp"),
            ("SENDGRID_API_KEY", "SG.x"),
            ("SMTP_URL", "smtp://localhost:2525"),
        ])
        .unwrap();
        assert_eq!(s.email, [ProviderKind::Sendgrid, ProviderKind::Smtp]);
        assert_eq!(s.sendgrid.unwrap().api_base, DEFAULT_SENDGRID_API_BASE);
    }

    #[test]
    fn a_provider_without_its_credentials_names_the_missing_variable() {
        let err = load(&[("SMS_PROVIDERS", "twilio"), ("TWILIO_ACCOUNT_SID", "AC1")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("TWILIO_AUTH_TOKEN"), "{err}");
        let err = load(&[("SMS_PROVIDERS", "sendgrid")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("SMS_PROVIDERS"), "{err}");
    }

    #[test]
    fn production_refuses_the_mock_unless_allowed() {
        let err = load(&[("ENVIRONMENT", "production")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("ALLOW_MOCK_PROVIDERS"), "{err}");
        assert!(
            load(&[
                ("ENVIRONMENT", "production"),
                ("ALLOW_MOCK_PROVIDERS", "true")
            ])
            .is_ok()
        );
    }

    #[test]
    fn sender_rates_parse_and_reject_garbage() {
        let s = load(&[(
            "PACING_SENDER_RATES",
            "+15551234567=10, News@Example.com=2.5",
        )])
        .unwrap();
        assert_eq!(s.pacing.senders["+15551234567"], 10.0);
        assert_eq!(s.pacing.senders["news@example.com"], 2.5);
        let err = load(&[("PACING_SENDER_RATES", "+1555=fast")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("PACING_SENDER_RATES"));
    }
}
