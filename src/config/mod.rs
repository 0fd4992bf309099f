//! Settings: read once at start-up from the environment (and `.env`), validated, immutable.
//! Variable names are the operations guide's.
//!
//! A leaf: every setting of the service is parsed here (`providers` for the mock and the real
//! providers, `webhooks` for provider callbacks, `security` for hosts, keys and rate limits),
//! and nothing here imports another module of the crate, so every layer may read it.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

pub mod attachments;
mod compliance;
pub mod delivery;
mod docs;
pub mod events;
pub mod listing;
pub mod providers;
pub mod receipts;
pub mod reconcile;
mod schedule;
mod security;
pub mod webhooks;

pub use compliance::ComplianceSettings;
pub use providers::{MockProviderSettings, ProviderSettings};
pub use security::{
    HostPattern, IpNet, RateLimitSettings, SecuritySettings, canonical as canonical_ip,
};
pub use webhooks::{InboundAttachments, SendgridKey, WebhookSettings};

pub const DEFAULT_SECRET_KEY: &str = "change-me-in-production";

/// Where the single-process mode keeps its data when no database is configured.
pub const EMBEDDED_DATABASE_URL: &str = "sqlite://data/messaging.db";

/// Which queue hands messages from the API to the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueBackend {
    /// Redis Streams: shared by any number of API and worker processes.
    Redis,
    /// In the process's memory, durable through the database: one process runs API and worker.
    InProcess,
}

impl QueueBackend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Redis => "redis",
            Self::InProcess => "in-process",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Test,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A connection URL whose password never reaches a log line.
#[derive(Clone)]
pub struct ConnectionUrl(SecretString);

impl ConnectionUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(SecretString::from(url.into()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        match url::Url::parse(self.expose()) {
            Ok(mut u) => {
                if u.password().is_some() {
                    let _ = u.set_password(Some("***"));
                }
                u.to_string()
            }
            Err(_) => "<unparseable url>".to_owned(),
        }
    }
}

impl fmt::Debug for ConnectionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Queue and worker tuning.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// Prepended to every Redis key; isolates deployments and parallel tests.
    pub key_prefix: String,
    pub max_retries: u32,
    /// Base of the exponential backoff.
    pub retry_delay: Duration,
    /// Longest wait between two attempts.
    pub max_retry_delay: Duration,
    /// Entries read from the streams per fetch.
    pub batch_size: usize,
    /// Messages a worker sends at once (`WORKER_CONCURRENCY`): with providers answering in
    /// 100 ms, 1024 in flight allow about 10,000 sends/s; each costs a task and its message
    /// (a few KB), so the default holds a few MB.
    pub worker_concurrency: usize,
    /// A claim older than this is considered abandoned by a dead worker.
    pub visibility_timeout: Duration,
    pub sweep_interval: Duration,
    /// A `pending` message older than this without a worker's claim is enqueued again.
    pub sweep_age: Duration,
    /// How long a blocking stream read waits before looping.
    pub block: Duration,
    /// How often the scheduler promotes due scheduled messages (`SCHEDULER_INTERVAL_MS`).
    pub scheduler_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub environment: Environment,
    pub debug: bool,
    pub log_level: String,
    pub log_format: LogFormat,
    pub host: String,
    pub port: u16,
    pub database_url: ConnectionUrl,
    pub db_max_connections: u32,
    pub redis_url: ConnectionUrl,
    /// `DATABASE_URL` or a `POSTGRES_*` part was given (otherwise the URL is a default).
    pub database_configured: bool,
    /// `REDIS_URL` or a `REDIS_*` part was given (otherwise the URL is a default).
    pub redis_configured: bool,
    pub queue_backend: QueueBackend,
    /// `QUEUE_BACKEND` was given (otherwise the backend follows the other settings).
    pub queue_backend_configured: bool,
    pub sync_message_processing: bool,
    pub secret_key: SecretString,
    pub queue: QueueSettings,
    pub mock_provider: MockProviderSettings,
    /// Send requests committed together in one transaction, at most.
    pub ingest_batch_size: usize,
    /// Transactions the send path keeps in flight at once, when `INGEST_WRITERS` is set;
    /// see [`Settings::ingest_writers`] for the default.
    pub ingest_writers_configured: Option<usize>,
    /// The worker's outcome writers, when `OUTCOME_WRITERS` is set; see
    /// [`Settings::outcome_writers`] for the default.
    pub outcome_writers_configured: Option<usize>,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
    /// Real providers, their selection per channel, failover and pacing.
    pub providers: ProviderSettings,
    /// Port of the worker process's own `/metrics` listener (0 picks a free port).
    pub worker_metrics_port: u16,
    /// How far list endpoints count before estimating.
    pub listing: listing::ListingSettings,
    /// How often queue depths and pool usage are sampled for metrics.
    pub metrics_sample_interval: Duration,
    pub security: SecuritySettings,
    pub webhooks: WebhookSettings,
    pub attachments: attachments::AttachmentSettings,
    pub receipts: receipts::ReceiptSettings,
    pub reconcile: reconcile::ReconcileSettings,
    /// Opt-out keywords' replies and SMS sizing.
    pub compliance: ComplianceSettings,
    pub events: events::EventSettings,
    pub delivery: delivery::DeliverySettings,
    /// Serve `GET /openapi.json` and `GET /docs` (`API_DOCS_ENABLED`).
    pub api_docs: bool,
}

/// A bad configuration value; the message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub(crate) String);

/// Reads variables from a map: the process environment overlaid on `.env`.
pub struct Env(HashMap<String, String>);

impl Env {
    /// The process environment, with `.env` (if present) filling in what is unset.
    pub fn load() -> Self {
        let mut vars: HashMap<String, String> = HashMap::new();
        if let Ok(iter) = dotenvy::dotenv_iter() {
            for (k, v) in iter.flatten() {
                vars.insert(k, v);
            }
        }
        vars.extend(std::env::vars());
        Self(vars)
    }

    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    pub(crate) fn raw(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    pub(crate) fn string(&self, name: &str, default: &str) -> String {
        self.raw(name).unwrap_or(default).to_owned()
    }

    pub(crate) fn parse<T: FromStr>(
        &self,
        name: &str,
        default: T,
        expected: &str,
    ) -> Result<T, ConfigError> {
        match self.raw(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| ConfigError(format!("{name}={v:?} is not {expected}"))),
        }
    }

    pub(crate) fn flag(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.raw(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) => match v.as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(ConfigError(format!(
                    "{name}={v:?} is not a boolean (true/false)"
                ))),
            },
        }
    }

    pub(crate) fn seconds(&self, name: &str, default: f64) -> Result<Duration, ConfigError> {
        let secs: f64 = self.parse(name, default, "a number of seconds")?;
        if !secs.is_finite() || secs < 0.0 {
            return Err(ConfigError(format!(
                "{name}={secs} must be a non-negative number of seconds"
            )));
        }
        Ok(Duration::from_secs_f64(secs))
    }

    fn rate(&self, name: &str) -> Result<f64, ConfigError> {
        let r: f64 = self.parse(name, 0.0, "a number between 0 and 1")?;
        if !(0.0..=1.0).contains(&r) {
            return Err(ConfigError(format!("{name}={r} must be between 0 and 1")));
        }
        Ok(r)
    }

    pub(crate) fn positive(&self, name: &str, default: usize) -> Result<usize, ConfigError> {
        let n: usize = self.parse(name, default, "a positive integer")?;
        if n == 0 {
            return Err(ConfigError(format!("{name} must be at least 1")));
        }
        Ok(n)
    }
}

impl Settings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let environment = match env
            .string("ENVIRONMENT", "development")
            .to_ascii_lowercase()
            .as_str()
        {
            "development" | "dev" | "local" => Environment::Development,
            "test" | "testing" => Environment::Test,
            "production" | "prod" => Environment::Production,
            other => {
                return Err(ConfigError(format!(
                    "ENVIRONMENT={other:?} must be development, test or production"
                )));
            }
        };
        let log_format = match env
            .raw("LOG_FORMAT")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None if environment == Environment::Production => LogFormat::Json,
            None | Some("text") | Some("pretty") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError(format!(
                    "LOG_FORMAT={other:?} must be text or json"
                )));
            }
        };
        let log_level = env.string("LOG_LEVEL", "info").to_ascii_lowercase();
        if !["trace", "debug", "info", "warn", "warning", "error"].contains(&log_level.as_str()) {
            return Err(ConfigError(format!(
                "LOG_LEVEL={log_level:?} must be one of trace, debug, info, warn, error"
            )));
        }

        let database_url = match env.raw("DATABASE_URL") {
            Some(url) => url.to_owned(),
            None => {
                let port: u16 = env.parse("POSTGRES_PORT", 5432, "a port number")?;
                format!(
                    "postgres://{}:{}@{}:{}/{}",
                    encode(&env.string("POSTGRES_USER", "messaging_user")),
                    encode(&env.string("POSTGRES_PASSWORD", "messaging_password")),
                    env.string("POSTGRES_HOST", "localhost"),
                    port,
                    env.string("POSTGRES_DB", "messaging_service"),
                )
            }
        };
        check_url(
            "DATABASE_URL",
            &database_url,
            &["postgres", "postgresql", "sqlite"],
        )?;
        let database_configured = env.raw("DATABASE_URL").is_some()
            || ["HOST", "PORT", "USER", "PASSWORD", "DB"]
                .iter()
                .any(|part| env.raw(&format!("POSTGRES_{part}")).is_some());
        let redis_configured = env.raw("REDIS_URL").is_some()
            || ["HOST", "PORT", "PASSWORD", "DB"]
                .iter()
                .any(|part| env.raw(&format!("REDIS_{part}")).is_some());

        let redis_url = match env.raw("REDIS_URL") {
            Some(url) => url.to_owned(),
            None => {
                let port: u16 = env.parse("REDIS_PORT", 6379, "a port number")?;
                let db: u32 = env.parse("REDIS_DB", 0, "a database number")?;
                let auth = env
                    .raw("REDIS_PASSWORD")
                    .map(|p| format!(":{}@", encode(p)))
                    .unwrap_or_default();
                format!(
                    "redis://{auth}{}:{port}/{db}",
                    env.string("REDIS_HOST", "localhost")
                )
            }
        };
        check_url("REDIS_URL", &redis_url, &["redis", "rediss"])?;

        // Redis when it is configured or the database is PostgreSQL (the guide's layout); the
        // in-process queue when the database is a SQLite file and Redis is not mentioned.
        let queue_backend_configured = env.raw("QUEUE_BACKEND").is_some();
        let queue_backend = match env
            .raw("QUEUE_BACKEND")
            .map(|v| v.trim().to_ascii_lowercase())
        {
            Some(v) if v == "redis" => QueueBackend::Redis,
            Some(v) if v == "in-process" || v == "memory" => QueueBackend::InProcess,
            Some(v) => {
                return Err(ConfigError(format!(
                    "QUEUE_BACKEND={v:?} must be redis or in-process"
                )));
            }
            None if !redis_configured && is_sqlite(&database_url) => QueueBackend::InProcess,
            None => QueueBackend::Redis,
        };

        let secret_key = env.string("SECRET_KEY", DEFAULT_SECRET_KEY);
        if environment == Environment::Production && secret_key == DEFAULT_SECRET_KEY {
            return Err(ConfigError(
                "SECRET_KEY must be set to a strong secret when ENVIRONMENT=production".into(),
            ));
        }

        let security = SecuritySettings::from_env(env, environment)?;

        let queue = QueueSettings {
            key_prefix: env.string("QUEUE_KEY_PREFIX", ""),
            max_retries: env.parse("QUEUE_MAX_RETRIES", 3, "a non-negative integer")?,
            retry_delay: env.seconds("QUEUE_RETRY_DELAY", 1.0)?,
            max_retry_delay: env.seconds("QUEUE_MAX_RETRY_DELAY", 300.0)?,
            batch_size: env.positive("QUEUE_BATCH_SIZE", 100)?,
            worker_concurrency: env.positive("WORKER_CONCURRENCY", 1024)?,
            visibility_timeout: env.seconds("QUEUE_VISIBILITY_TIMEOUT", 60.0)?,
            sweep_interval: env.seconds("QUEUE_SWEEP_INTERVAL", 10.0)?,
            sweep_age: env.seconds("QUEUE_SWEEP_AGE", 30.0)?,
            block: env.seconds("QUEUE_BLOCK", 1.0)?,
            scheduler_interval: schedule::scheduler_interval(env)?,
        };
        if queue.visibility_timeout.is_zero() {
            return Err(ConfigError(
                "QUEUE_VISIBILITY_TIMEOUT must be greater than 0".into(),
            ));
        }

        let mock_provider = MockProviderSettings::from_env(env)?;
        let providers = ProviderSettings::from_env(env, environment)?;
        let port: u16 = env.parse("PORT", 8080, "a port number")?;
        let webhooks = WebhookSettings::from_env(
            env,
            environment,
            port,
            providers.public_base_url.as_deref(),
        )?;

        Ok(Self {
            environment,
            debug: env.flag("DEBUG", false)?,
            log_level,
            log_format,
            host: env.string("HOST", "0.0.0.0"),
            port,
            database_url: ConnectionUrl::new(database_url),
            db_max_connections: env.parse("DB_MAX_CONNECTIONS", 20, "a positive integer")?,
            redis_url: ConnectionUrl::new(redis_url),
            database_configured,
            redis_configured,
            queue_backend,
            queue_backend_configured,
            sync_message_processing: env.flag("SYNC_MESSAGE_PROCESSING", false)?,
            secret_key: SecretString::from(secret_key),
            queue,
            mock_provider,
            ingest_batch_size: env.positive("INGEST_BATCH_SIZE", 256)?,
            ingest_writers_configured: env
                .raw("INGEST_WRITERS")
                .map(|_| env.positive("INGEST_WRITERS", 1))
                .transpose()?,
            outcome_writers_configured: env
                .raw("OUTCOME_WRITERS")
                .map(|_| env.positive("OUTCOME_WRITERS", 1))
                .transpose()?,
            request_timeout: env.seconds("REQUEST_TIMEOUT", 30.0)?,
            shutdown_grace: env.seconds("SHUTDOWN_GRACE", 25.0)?,
            providers,
            worker_metrics_port: env.parse("WORKER_METRICS_PORT", 9091, "a port number")?,
            listing: listing::ListingSettings::from_env(env)?,
            metrics_sample_interval: env.seconds("METRICS_SAMPLE_INTERVAL", 5.0)?,
            security,
            webhooks,
            attachments: attachments::AttachmentSettings::from_env(env, environment)?,
            receipts: receipts::ReceiptSettings::from_env(env)?,
            reconcile: reconcile::ReconcileSettings::from_env(env)?,
            compliance: ComplianceSettings::from_env(env)?,
            events: events::EventSettings::from_env(env, environment)?,
            delivery: delivery::DeliverySettings::from_env(env)?,
            api_docs: docs::api_docs_enabled(env, environment)?,
        })
    }
}

impl Settings {
    /// The settings of the single-process mode (API and worker together, the binary's
    /// default): what is not configured is embedded — a SQLite file under `./data` instead of
    /// the default PostgreSQL, the in-process queue instead of the default Redis.
    pub fn single_process(mut self) -> Self {
        if !self.database_configured {
            self.database_url = ConnectionUrl::new(EMBEDDED_DATABASE_URL);
        }
        if !self.redis_configured && !self.queue_backend_configured {
            self.queue_backend = QueueBackend::InProcess;
        }
        self
    }

    pub fn database_is_sqlite(&self) -> bool {
        is_sqlite(self.database_url.expose())
    }

    /// Transactions the send path keeps in flight at once: `INGEST_WRITERS`, else 2 on
    /// PostgreSQL and 1 on SQLite, which writes through one connection: more writers only
    /// split the waiting requests into smaller batches that queue for it (measured: 2,344–
    /// 2,779 accepted/s with one, 1,428–1,955 with four). On PostgreSQL two keep a commit
    /// overlapping the next batch; four made smaller batches for the same CPU (measured at
    /// c=16: 6,410–6,864 accepted/s with two, 5,531–5,857 with four).
    pub fn ingest_writers(&self) -> usize {
        self.ingest_writers_configured
            .unwrap_or(if self.database_is_sqlite() { 1 } else { 2 })
    }

    /// The worker's outcome writers (transactions recording outcomes in flight at once):
    /// `OUTCOME_WRITERS`, else 4 on PostgreSQL and 1 on SQLite. A worker's outcomes come
    /// from many sends finishing at once, and on PostgreSQL two writers drained a backlog
    /// at about 11,000 msgs/s where four drained 18,600–19,600.
    pub fn outcome_writers(&self) -> usize {
        self.outcome_writers_configured
            .unwrap_or(if self.database_is_sqlite() { 1 } else { 4 })
    }
}

fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}

fn check_url(name: &str, raw: &str, schemes: &[&str]) -> Result<(), ConfigError> {
    let parsed = url::Url::parse(raw)
        .map_err(|e| ConfigError(format!("{name} is not a valid URL ({e})")))?;
    if !schemes.contains(&parsed.scheme()) {
        return Err(ConfigError(format!(
            "{name} must use one of the schemes {}",
            schemes.join(", ")
        )));
    }
    Ok(())
}

/// Percent-encodes user info so passwords with `@` or `:` survive URL assembly.
fn encode(raw: &str) -> String {
    url::form_urlencoded::byte_serialize(raw.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_operations_guide() {
        let s = Settings::from_env(&Env::from_pairs::<_, &str, &str>([])).unwrap();
        assert_eq!(s.port, 8080);
        assert_eq!(
            s.database_url.expose(),
            "postgres://messaging_user:messaging_password@localhost:5432/messaging_service"
        );
        assert_eq!(s.redis_url.expose(), "redis://localhost:6379/0");
        assert!(!s.sync_message_processing);
        assert_eq!(s.queue.max_retries, 3);
    }

    #[test]
    fn parts_compose_the_urls_and_passwords_are_redacted() {
        let s = Settings::from_env(&Env::from_pairs([
            ("POSTGRES_HOST", "db.internal"),
            ("POSTGRES_PASSWORD", "p@ss:word"),
            ("REDIS_HOST", "cache"),
            ("REDIS_PASSWORD", "sekret"),
        ]))
        .unwrap();
        assert_eq!(
            s.database_url.expose(),
            "postgres://messaging_user:p%40ss%3Aword@db.internal:5432/messaging_service"
        );
        assert!(!format!("{:?}", s.database_url).contains("p%40ss"));
        assert!(!format!("{:?}", s.redis_url).contains("sekret"));
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        for (name, value) in [
            ("PORT", "eighty"),
            ("SYNC_MESSAGE_PROCESSING", "maybe"),
            ("QUEUE_MAX_RETRIES", "-1"),
            ("PROVIDER_429_RATE", "2"),
            ("DATABASE_URL", "mysql://x/y"),
            ("ENVIRONMENT", "staging"),
            ("LOG_LEVEL", "loud"),
            ("WORKER_METRICS_PORT", "70000"),
            ("RATE_LIMIT_REQUESTS", "0"),
            ("RATE_LIMIT_PERIOD", "soon"),
            ("RATE_LIMIT_ENABLED", "perhaps"),
            ("TRUSTED_PROXIES", "10.0.0.0/40"),
        ] {
            let err = Settings::from_env(&Env::from_pairs([(name, value)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(name), "{err} should name {name}");
        }
    }

    #[test]
    fn serve_and_worker_keep_the_guides_postgresql_and_redis_defaults() {
        let s = Settings::from_env(&Env::from_pairs::<_, &str, &str>([])).unwrap();
        assert_eq!(s.queue_backend, QueueBackend::Redis);
        assert!(!s.database_is_sqlite());
    }

    #[test]
    fn the_single_process_mode_is_embedded_unless_backends_are_configured() {
        let s = Settings::from_env(&Env::from_pairs::<_, &str, &str>([]))
            .unwrap()
            .single_process();
        assert_eq!(s.database_url.expose(), EMBEDDED_DATABASE_URL);
        assert_eq!(s.queue_backend, QueueBackend::InProcess);

        let s = Settings::from_env(&Env::from_pairs([("POSTGRES_HOST", "db")]))
            .unwrap()
            .single_process();
        assert!(s.database_url.expose().starts_with("postgres://"));
        assert_eq!(s.queue_backend, QueueBackend::InProcess);

        let s = Settings::from_env(&Env::from_pairs([("REDIS_URL", "redis://cache:6379")]))
            .unwrap()
            .single_process();
        assert!(s.database_is_sqlite());
        assert_eq!(s.queue_backend, QueueBackend::Redis);
    }

    #[test]
    fn writers_default_to_one_on_sqlite_and_to_two_and_four_on_postgres() {
        let sqlite =
            Settings::from_env(&Env::from_pairs([("DATABASE_URL", "sqlite://x.db")])).unwrap();
        assert_eq!((sqlite.ingest_writers(), sqlite.outcome_writers()), (1, 1));
        let pg =
            Settings::from_env(&Env::from_pairs([("DATABASE_URL", "postgres://u@h/d")])).unwrap();
        assert_eq!((pg.ingest_writers(), pg.outcome_writers()), (2, 4));
        let set = Settings::from_env(&Env::from_pairs([
            ("DATABASE_URL", "sqlite://x.db"),
            ("INGEST_WRITERS", "3"),
            ("OUTCOME_WRITERS", "5"),
        ]))
        .unwrap();
        assert_eq!((set.ingest_writers(), set.outcome_writers()), (3, 5));
        for name in ["INGEST_WRITERS", "OUTCOME_WRITERS"] {
            let zero = Settings::from_env(&Env::from_pairs([(name, "0")]));
            assert!(zero.is_err(), "{name}=0");
        }
    }

    #[test]
    fn a_sqlite_database_without_redis_means_the_in_process_queue() {
        let s = Settings::from_env(&Env::from_pairs([("DATABASE_URL", "sqlite://x.db")])).unwrap();
        assert_eq!(s.queue_backend, QueueBackend::InProcess);
        let err = Settings::from_env(&Env::from_pairs([("QUEUE_BACKEND", "kafka")])).unwrap_err();
        assert!(err.to_string().contains("QUEUE_BACKEND"));
    }

    #[test]
    fn production_requires_allowed_hosts_and_api_keys() {
        let base = [
            ("ENVIRONMENT", "production"),
            ("SECRET_KEY", "s3cret-for-tests"),
            ("ALLOW_MOCK_PROVIDERS", "true"),
        ];
        let err = Settings::from_env(&Env::from_pairs(base)).unwrap_err();
        assert!(err.to_string().contains("ALLOWED_HOSTS"), "{err}");
        let with_hosts = [
            base[0],
            base[1],
            base[2],
            ("ALLOWED_HOSTS", "api.example.com"),
            (
                "STATUS_CALLBACK_SECRET",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8G",
            ),
        ];
        let s = Settings::from_env(&Env::from_pairs(with_hosts)).unwrap();
        assert!(s.security.require_api_keys);
        let err = Settings::from_env(&Env::from_pairs([
            base[0],
            base[1],
            base[2],
            ("ALLOWED_HOSTS", "*"),
            ("REQUIRE_API_KEYS", "false"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("REQUIRE_API_KEYS"), "{err}");
        let dev = Settings::from_env(&Env::from_pairs::<_, &str, &str>([])).unwrap();
        assert!(!dev.security.require_api_keys);
        assert!(dev.security.rate_limit.enabled);
        assert_eq!(dev.security.rate_limit.requests, 100);
        assert_eq!(dev.security.rate_limit.period, Duration::from_secs(60));
    }

    #[test]
    fn config_is_a_leaf_that_imports_no_other_module_of_the_crate() {
        let needle = concat!("crate", "::");
        for (file, text) in [
            ("mod.rs", include_str!("mod.rs")),
            ("providers.rs", include_str!("providers.rs")),
            ("security.rs", include_str!("security.rs")),
            ("webhooks.rs", include_str!("webhooks.rs")),
            ("events.rs", include_str!("events.rs")),
        ] {
            let outside: Vec<&str> = text
                .lines()
                .filter(|l| l.contains(needle) && !l.contains(concat!("crate", "::config")))
                .collect();
            assert!(
                outside.is_empty(),
                "src/config/{file} reaches out: {outside:?}"
            );
        }
    }

    #[test]
    fn production_refuses_the_default_secret_key() {
        let err =
            Settings::from_env(&Env::from_pairs([("ENVIRONMENT", "production")])).unwrap_err();
        assert!(err.to_string().contains("SECRET_KEY"));
    }
}
