//! Status corrections: an operator setting a message's status by hand
//! (`PATCH /api/v1/messages/{id}/status`). The caller has already asked the lifecycle
//! table; the statement only applies the move if the message is still in `from`.

use async_trait::async_trait;
use uuid::Uuid;

use super::StoreResult;
use crate::domain::{Message, MessageStatus};

/// One correction: the status the caller saw, the one it sets, and why.
#[derive(Debug, Clone)]
pub struct Correction<'a> {
    pub id: Uuid,
    pub from: MessageStatus,
    pub to: MessageStatus,
    pub reason: Option<&'a str>,
}

impl Correction<'_> {
    /// The audit detail recorded with the `corrected` event.
    pub(crate) fn detail(&self) -> serde_json::Value {
        match self.reason {
            Some(reason) => serde_json::json!({ "reason": reason }),
            None => serde_json::json!({}),
        }
    }
}

#[async_trait]
pub trait CorrectionStore: Send + Sync + 'static {
    /// Moves the message from `from` to `to`, stamping the matching time (`sent_at`,
    /// `delivered_at`, `failed_at`), and records a `corrected` event with the reason.
    /// `None` when the message is no longer in `from` (someone else moved it first).
    async fn correct_status(&self, correction: &Correction<'_>) -> StoreResult<Option<Message>>;
}
