//! Messages: storing, reading, and the worker's claim/outcome cycle.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Claim, Inserted, MessageFilter, Outcome, Page, StoreResult, Stranded, SweepQuery};
use crate::domain::{Message, MessageEvent, NewMessage};

#[async_trait]
pub trait MessageStore: Send + Sync + 'static {
    /// Stores a batch of new messages in one transaction, threading each into its
    /// conversation. Messages whose idempotency key was already used are not stored again.
    /// The result is in the order of `batch`.
    async fn insert_messages(&self, batch: &[NewMessage]) -> StoreResult<Vec<Inserted>>;

    async fn get_message(&self, id: Uuid) -> StoreResult<Option<Message>>;

    /// A page of messages, newest first, with the total matching the filter.
    async fn list_messages(
        &self,
        filter: &MessageFilter,
        page: Page,
    ) -> StoreResult<(Vec<Message>, i64)>;

    async fn message_events(&self, id: Uuid) -> StoreResult<Vec<MessageEvent>>;

    /// Moves the claimable ones among `ids` to `sending` (pending, due retries, and claims
    /// older than `stale_before`) and returns them. Others are left untouched.
    async fn claim(&self, ids: &[Uuid], stale_before: OffsetDateTime) -> StoreResult<Claim>;

    /// Those among `ids` currently held by some worker (`sending`).
    async fn in_flight(&self, ids: &[Uuid]) -> StoreResult<Vec<Uuid>>;

    /// Records send outcomes for messages still held under `token`; returns the ids applied.
    async fn record_outcomes(&self, token: Uuid, outcomes: &[Outcome]) -> StoreResult<Vec<Uuid>>;

    /// Finds messages that should be in the queue but may not be, and marks them as
    /// enqueued now so that concurrent sweepers do not repeat the work.
    async fn sweep(&self, query: SweepQuery) -> StoreResult<Vec<Stranded>>;
}
