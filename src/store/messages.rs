//! Messages: storing, reading, and the worker's claim/outcome cycle.

use async_trait::async_trait;
use std::time::Duration;

use uuid::Uuid;

use super::{
    Claim, Inserted, Listed, MessageFilter, Outcome, Page, Settlement, StoreResult, Stranded,
    SweepQuery, Waiting, Window,
};
use crate::domain::{Message, MessageEvent, NewMessage};

#[async_trait]
pub trait MessageStore: Send + Sync + 'static {
    /// Stores a batch of new messages in one transaction, threading each into its
    /// conversation. Messages whose idempotency key was already used are not stored again.
    /// The result is in the order of `batch`.
    async fn insert_messages(&self, batch: &[NewMessage]) -> StoreResult<Vec<Inserted>>;

    async fn get_message(&self, id: Uuid) -> StoreResult<Option<Message>>;

    /// The stored messages among `ids`, in no particular order (absent ids are skipped):
    /// one query for a batch, as the event dispatcher reads them.
    async fn get_messages(&self, ids: &[Uuid]) -> StoreResult<Vec<Message>>;

    /// A window of messages, newest first (`created_at`, then `id`, descending), with the
    /// total matching the filter.
    async fn page_messages(
        &self,
        filter: &MessageFilter,
        window: Window,
    ) -> StoreResult<Listed<Message>>;

    /// An offset page of messages, newest first, with the exact total matching the filter.
    async fn list_messages(
        &self,
        filter: &MessageFilter,
        page: Page,
    ) -> StoreResult<(Vec<Message>, i64)> {
        let listed = self.page_messages(filter, Window::exact(page)).await?;
        Ok((listed.items, listed.total))
    }

    async fn message_events(&self, id: Uuid) -> StoreResult<Vec<MessageEvent>>;

    /// Moves the claimable ones among `ids` to `sending` (pending, due retries, and claims
    /// whose lease ran out) under a lease of `lease` and returns them. Others are left
    /// untouched. Leases are measured on the database's clock only.
    async fn claim(&self, ids: &[Uuid], lease: Duration) -> StoreResult<Claim>;

    /// Extends the leases of the claims `tokens` still hold to `lease` from now (the
    /// database's clock); returns how many messages were renewed.
    async fn renew_leases(&self, tokens: &[Uuid], lease: Duration) -> StoreResult<u64>;

    /// Ends every lease now. Only for a process that knows it is the database's only user
    /// (the embedded deployment's lock-file holder, at start-up): the claims it finds were
    /// its own before a crash, so nobody is sending those messages.
    async fn expire_leases(&self) -> StoreResult<u64>;

    /// Those among `ids` a claim skipped that still wait for a delivery: held by some
    /// worker (`sending`), or retries not yet due by the database's clock. Messages that
    /// are finished, unknown or claimable are left out.
    async fn unclaimed(&self, ids: &[Uuid]) -> StoreResult<Vec<(Uuid, Waiting)>>;

    /// Records the outcomes of several claims in one transaction, each for a message still
    /// held under its claim's token; returns the ids applied.
    async fn record_settlements(&self, settlements: &[Settlement]) -> StoreResult<Vec<Uuid>>;

    /// Records one claim's outcomes (see `record_settlements`).
    async fn record_outcomes(&self, token: Uuid, outcomes: &[Outcome]) -> StoreResult<Vec<Uuid>> {
        self.record_settlements(&[Settlement {
            token,
            outcomes: outcomes.to_vec(),
        }])
        .await
    }

    /// Finds messages that should be in the queue but may not be, and marks them as
    /// enqueued now so that concurrent sweepers do not repeat the work.
    async fn sweep(&self, query: SweepQuery) -> StoreResult<Vec<Stranded>>;
}
