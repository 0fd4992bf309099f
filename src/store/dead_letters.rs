//! Dead letters: putting failed messages back in line (manual retry and DLQ redrive).

use async_trait::async_trait;
use uuid::Uuid;

use super::StoreResult;
use crate::domain::Message;

#[async_trait]
pub trait DeadLetterStore: Send + Sync + 'static {
    /// Moves those of `ids` that are `failed` back to `pending` with a fresh retry budget,
    /// recording a `redriven` event, and returns them. Others are left untouched.
    async fn redrive(&self, ids: &[Uuid]) -> StoreResult<Vec<Message>>;
}
