//! A provider that sends nothing: Twilio- and SendGrid-shaped ids, configurable latency and
//! the operations guide's error injection. The development default.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::{Provider, ProviderError, Receipt};
use crate::config::MockProviderSettings;
use crate::domain::{Message, MessageType};

pub struct MockProvider {
    settings: MockProviderSettings,
    accepted: AtomicU64,
}

impl MockProvider {
    pub fn new(settings: MockProviderSettings) -> Self {
        Self {
            settings,
            accepted: AtomicU64::new(0),
        }
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
        self.accepted.fetch_add(1, Ordering::Relaxed);
        Ok(Receipt::new(provider_id(message.kind)))
    }
}
