//! Provider callbacks: the durable delivery log and applying receipts to messages.

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Page, StoreResult};
use crate::domain::{ErrorInfo, MessageStatus};

/// One thing a provider told us about a message we sent.
#[derive(Debug, Clone)]
pub struct ProviderEvent {
    pub provider: &'static str,
    /// What makes a replay recognisable (e.g. `SM…:delivered`, an `sg_event_id`).
    pub dedupe_key: String,
    /// The provider's id for the message, as stored when it was sent.
    pub provider_message_id: String,
    /// The provider's own name for the event (`delivered`, `undelivered`, `open`, …).
    pub event: String,
    /// The status this event moves the message to, if any; events that only inform
    /// (opens, clicks, deferrals) have none.
    pub target: Option<MessageStatus>,
    pub error: Option<ErrorInfo>,
    pub detail: Value,
}

/// What became of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventOutcome {
    /// The message moved to the event's status.
    Applied,
    /// Recorded in the message's history without a status change (informational, or the
    /// message is already further along: callbacks never move a message backwards).
    Recorded,
    /// Seen before: nothing done.
    Duplicate,
    /// No message has this provider id: logged only.
    UnknownMessage,
}

impl EventOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Recorded => "recorded",
            Self::Duplicate => "duplicate",
            Self::UnknownMessage => "unknown_message",
        }
    }
}

/// A logged callback that is not a receipt (a rejected call, an inbound message).
#[derive(Debug, Clone)]
pub struct WebhookLogEntry {
    pub provider: &'static str,
    pub kind: &'static str,
    pub dedupe_key: Option<String>,
    pub verified: bool,
    pub outcome: String,
    pub message_id: Option<Uuid>,
    pub detail: Value,
}

/// A row of the delivery log, as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookDelivery {
    pub id: i64,
    pub provider: String,
    pub kind: String,
    pub dedupe_key: Option<String>,
    pub verified: bool,
    pub outcome: String,
    pub message_id: Option<Uuid>,
    pub detail: Value,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
}

#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Applies receipts in one transaction: replays are recognised by their dedupe key,
    /// messages are found by provider id and only ever move forward, every event lands in
    /// the message's history and in the delivery log. Results are in input order.
    async fn apply_provider_events(
        &self,
        events: &[ProviderEvent],
    ) -> StoreResult<Vec<EventOutcome>>;

    async fn log_webhook(&self, entry: &WebhookLogEntry) -> StoreResult<()>;

    /// The delivery log, newest first, optionally for one provider.
    async fn webhook_deliveries(
        &self,
        provider: Option<&str>,
        page: Page,
    ) -> StoreResult<(Vec<WebhookDelivery>, i64)>;
}
