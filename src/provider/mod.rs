//! Providers deliver messages to the outside world. Each adapter classifies its own errors
//! into transient (retry later) and permanent (give up now).

pub mod attachments;
pub mod build;
pub mod failover;
pub mod http;
pub mod mock;
pub mod pacing;
pub mod sendgrid;
pub mod smtp;
pub mod twilio;

pub use build::{build_providers, install_crypto_provider};

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::{Message, MessageType};

/// What a provider says when it accepts a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub provider_message_id: String,
    /// The provider that actually sent it, when a wrapper chose among several.
    pub provider: Option<String>,
    /// Billed segments, when the provider reports them (Twilio).
    pub num_segments: Option<i32>,
}

impl Receipt {
    pub fn new(provider_message_id: impl Into<String>) -> Self {
        Self {
            provider_message_id: provider_message_id.into(),
            provider: None,
            num_segments: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Worth retrying: rate limits, server errors, timeouts, connection failures.
    #[error("transient provider error {code}: {message}")]
    Transient {
        code: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help: the request itself was refused.
    #[error("permanent provider error {code}: {message}")]
    Permanent { code: String, message: String },
    /// Not attempted: the sender's pace allows it only after `retry_after`. Does not count
    /// as a retry.
    #[error("deferred: {reason}")]
    Deferred {
        reason: String,
        retry_after: Duration,
    },
}

#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Short stable name stored on the message (`mock`, `twilio`, `sendgrid`, `smtp`).
    fn name(&self) -> &str;

    async fn send(&self, message: &Message) -> Result<Receipt, ProviderError>;

    /// Before sending again a message whose earlier claim expired: has this provider
    /// already accepted it (sent at or after `since`)? Providers that cannot tell answer
    /// `None`, and the message is sent.
    async fn find_sent(
        &self,
        _message: &Message,
        _since: time::OffsetDateTime,
    ) -> Result<Option<Receipt>, ProviderError> {
        Ok(None)
    }
}

/// What is left of a reconcile wait that began with the earlier claim (`since`), if any.
pub fn reconcile_wait_left(
    since: time::OffsetDateTime,
    wait: std::time::Duration,
    now: time::OffsetDateTime,
) -> Option<std::time::Duration> {
    let left = since + wait - now;
    (left > time::Duration::ZERO).then(|| left.unsigned_abs())
}

/// The provider used for each message type.
#[derive(Clone)]
pub struct Providers {
    pub sms: Arc<dyn Provider>,
    pub mms: Arc<dyn Provider>,
    pub email: Arc<dyn Provider>,
}

impl Providers {
    /// Every type served by one provider (tests, simple set-ups).
    pub fn all(provider: Arc<dyn Provider>) -> Self {
        Self {
            sms: provider.clone(),
            mms: provider.clone(),
            email: provider,
        }
    }

    pub fn for_type(&self, kind: MessageType) -> &Arc<dyn Provider> {
        match kind {
            MessageType::Sms => &self.sms,
            MessageType::Mms => &self.mms,
            MessageType::Email => &self.email,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconcile_wait_counts_from_the_earlier_claim() {
        let since = time::macros::datetime!(2026-12-02 10:00:00 UTC);
        let wait = std::time::Duration::from_secs(120);
        let at = |secs| since + time::Duration::seconds(secs);
        assert_eq!(
            reconcile_wait_left(since, wait, at(30)),
            Some(std::time::Duration::from_secs(90))
        );
        assert_eq!(reconcile_wait_left(since, wait, at(120)), None);
        assert_eq!(reconcile_wait_left(since, wait, at(500)), None);
        assert_eq!(
            reconcile_wait_left(since, std::time::Duration::ZERO, since),
            None
        );
    }
}
