//! A provider that sends nothing: Twilio- and SendGrid-shaped ids, configurable latency and
//! the operations guide's error injection. The development default.
//!
//! With `MOCK_PROVIDER_SENT_LOG=path` (tests and development only) every delivery is also
//! appended to that file as `sent <message id>`, so deliveries can be counted across
//! restarts and crashes. The mock then behaves like a provider that honours an idempotency
//! key (the message id): a message it already delivered is acknowledged again without a
//! second delivery and logged as `repeat <message id>`. Repeats can only come from a message
//! whose outcome was not yet recorded when its process died.

use std::collections::HashSet;
use std::fmt::Write;
use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use uuid::Uuid;

use super::{Provider, ProviderError, Receipt};
use crate::config::MockProviderSettings;
use crate::domain::{Message, MessageType};

pub struct MockProvider {
    settings: MockProviderSettings,
    accepted: AtomicU64,
    sent_log: Option<Mutex<SentLog>>,
}

/// The append-only record of deliveries behind `MOCK_PROVIDER_SENT_LOG`.
struct SentLog {
    file: std::fs::File,
    delivered: HashSet<Uuid>,
}

impl SentLog {
    fn open(path: &Path) -> anyhow::Result<Self> {
        let delivered = match std::fs::read_to_string(path) {
            Ok(text) => text
                .lines()
                .filter_map(|l| l.strip_prefix("sent "))
                .filter_map(|id| Uuid::parse_str(id.trim()).ok())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashSet::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let file = std::fs::File::options()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("MOCK_PROVIDER_SENT_LOG: cannot open {}", path.display()))?;
        Ok(Self { file, delivered })
    }

    /// Records a delivery; false if this message was delivered before.
    fn record(&mut self, id: Uuid) -> bool {
        let first = self.delivered.insert(id);
        let line = format!("{} {id}\n", if first { "sent" } else { "repeat" });
        // One write(2) per line: the line is in the file even if the process dies right after.
        if let Err(e) = self.file.write_all(line.as_bytes()) {
            tracing::error!(error = %e, "cannot append to MOCK_PROVIDER_SENT_LOG");
        }
        first
    }
}

impl MockProvider {
    pub fn new(settings: MockProviderSettings) -> Self {
        Self {
            settings,
            accepted: AtomicU64::new(0),
            sent_log: None,
        }
    }

    /// The mock as configured, with its sent log opened if one is set.
    pub fn from_settings(settings: &MockProviderSettings) -> anyhow::Result<Self> {
        let sent_log = match &settings.sent_log {
            Some(path) => Some(Mutex::new(SentLog::open(path)?)),
            None => None,
        };
        Ok(Self {
            sent_log,
            ..Self::new(settings.clone())
        })
    }

    /// Messages accepted since start.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

fn random_hex(len: usize) -> String {
    let mut s = String::with_capacity(len);
    for _ in 0..len {
        let _ = write!(s, "{:x}", fastrand::u8(0..16));
    }
    s
}

fn provider_id(kind: MessageType) -> String {
    match kind {
        MessageType::Sms => format!("SM{}", random_hex(32)),
        MessageType::Mms => format!("MM{}", random_hex(32)),
        // SendGrid's X-Message-Id: 22 URL-safe characters.
        MessageType::Email => std::iter::repeat_with(|| {
            const ALPHABET: &[u8] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            ALPHABET[fastrand::usize(..ALPHABET.len())] as char
        })
        .take(22)
        .collect(),
    }
}

#[async_trait]
impl Provider for MockProvider {
    fn name(&self) -> &str {
        "mock"
    }

    async fn send(&self, message: &Message) -> Result<Receipt, ProviderError> {
        if !self.settings.latency.is_zero() {
            tokio::time::sleep(self.settings.latency).await;
        }
        let roll = fastrand::f64();
        let s = &self.settings;
        if roll < s.error_rate {
            return Err(ProviderError::Permanent {
                code: "21211".into(),
                message:
                    "The 'To' number is not a valid phone number (injected by PROVIDER_ERROR_RATE)"
                        .into(),
            });
        }
        if roll < s.error_rate + s.rate_429 {
            return Err(ProviderError::Transient {
                code: "20429".into(),
                message: "Too Many Requests (injected by PROVIDER_429_RATE)".into(),
                retry_after: Some(Duration::from_secs(1)),
            });
        }
        if roll < s.error_rate + s.rate_429 + s.rate_500 {
            return Err(ProviderError::Transient {
                code: "500".into(),
                message: "Internal Server Error (injected by PROVIDER_500_RATE)".into(),
                retry_after: None,
            });
        }
        let first = match &self.sent_log {
            Some(log) => log.lock().map(|mut l| l.record(message.id)).unwrap_or(true),
            None => true,
        };
        if first {
            self.accepted.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Receipt::new(provider_id(message.kind)))
    }
}
