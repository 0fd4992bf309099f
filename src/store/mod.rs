//! The `Store` trait: everything the API and the worker need from the database, with no
//! SQL dialect showing through. The logic is written once here — planners (`batch`,
//! `lifecycle`, `query`, the receipt sequence in `webhooks`) and row decoding (`rows`) —
//! and each backend (`postgres`, `sqlite`) only speaks its dialect: its statements, how it
//! stores a value, and which of its errors mean "unavailable".

mod api_keys;
mod audit;
mod batch;
mod conversations;
mod corrections;
mod dead_letters;
mod lifecycle;
mod messages;
pub mod outbox;
pub mod postgres;
mod query;
mod rows;
mod schedule;
mod sendgrid_reconcile;
pub mod sqlite;
mod suppressions;
mod webhooks;

pub use api_keys::ApiKeyStore;
pub use conversations::{ConversationFilter, ConversationStore, SearchHit, SortOrder};
pub use corrections::{Correction, CorrectionStore};
pub use dead_letters::DeadLetterStore;
pub use messages::MessageStore;
pub use outbox::EventStore;
pub use schedule::ScheduleStore;
pub use suppressions::{
    Suppressed, SuppressionFilter, SuppressionStore, lookup_addresses, matched, suppressions_of,
};
pub use webhooks::{
    EventOutcome, HistoryEntry, LogResult, ProviderEvent, ReceiptPlan, StatusChange,
    WebhookDelivery, WebhookLogEntry, WebhookStore, plan_receipts,
};

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::{Direction, ErrorInfo, Message, MessageStatus, MessageType, NewMessage};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or did not answer in time.
    #[error("the database is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The result of inserting one message of a batch.
#[derive(Debug, Clone)]
pub enum Inserted {
    Created(Message),
    /// The idempotency key was already used; the first message and its request fingerprint.
    Existing {
        message: Message,
        request_hash: Option<String>,
    },
}

#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    pub conversation_id: Option<Uuid>,
    pub status: Option<MessageStatus>,
    pub direction: Option<Direction>,
    pub kind: Option<MessageType>,
}

#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

/// Where a keyset page starts: just after the row with this sort key and id. The key is
/// the value of the listing's first sort column (`None` where that column is null).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct After {
    pub key: Option<OffsetDateTime>,
    pub id: Uuid,
}

/// Which rows of a list to read, and how far to count the rows its filter matches.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// With `after`, `page.offset` counts from the row after it (the API keeps it 0).
    pub page: Page,
    pub after: Option<After>,
    /// Count exactly up to this many rows and estimate beyond; `None`: always exact.
    pub count_limit: Option<i64>,
}

impl Window {
    /// An offset page with an exact total.
    pub fn exact(page: Page) -> Self {
        Self {
            page,
            after: None,
            count_limit: None,
        }
    }
}

/// A page of a list with the total its filter matches.
#[derive(Debug, Clone)]
pub struct Listed<T> {
    pub items: Vec<T>,
    /// Exact unless `total_is_estimate`; an estimate is above the window's count limit.
    pub total: i64,
    pub total_is_estimate: bool,
    /// Rows follow the last item.
    pub more: bool,
}

/// Messages a worker now owns, with the token that proves it when recording outcomes.
#[derive(Debug, Clone)]
pub struct Claim {
    pub token: Uuid,
    pub messages: Vec<Message>,
    /// Per claimed message: claims since its last recorded outcome, this one included.
    pub deliveries: std::collections::HashMap<Uuid, i32>,
    /// Messages taken over from a claim whose lease ran out, with the time that claim was
    /// taken: the earlier worker may have sent them since.
    pub reclaimed: std::collections::HashMap<Uuid, OffsetDateTime>,
}

/// One row a claim took, as the backends read it.
#[derive(Debug, Clone)]
pub(crate) struct ClaimedRow {
    pub message: Message,
    pub deliveries: i32,
    pub previous_claim: Option<OffsetDateTime>,
}

impl Claim {
    pub(crate) fn of_rows(token: Uuid, rows: Vec<ClaimedRow>) -> Self {
        let mut claim = Self {
            token,
            messages: Vec::with_capacity(rows.len()),
            deliveries: Default::default(),
            reclaimed: Default::default(),
        };
        for row in rows {
            claim.deliveries.insert(row.message.id, row.deliveries);
            if let Some(at) = row.previous_claim {
                claim.reclaimed.insert(row.message.id, at);
            }
            claim.messages.push(row.message);
        }
        claim
    }
}

/// One claim's outcomes: each is recorded only if the claim's token still holds its message.
#[derive(Debug, Clone)]
pub struct Settlement {
    pub token: Uuid,
    pub outcomes: Vec<Outcome>,
}

/// What happened when a worker tried to send a claimed message.
#[derive(Debug, Clone)]
pub enum Outcome {
    Sent {
        id: Uuid,
        provider: String,
        provider_message_id: String,
        num_segments: Option<i32>,
    },
    Retry {
        id: Uuid,
        provider: String,
        error: ErrorInfo,
        next_attempt_at: OffsetDateTime,
    },
    Failed {
        id: Uuid,
        provider: Option<String>,
        error: ErrorInfo,
    },
    /// Not attempted yet (the sender's pace): back to `retry` until `next_attempt_at`,
    /// without counting a retry.
    Deferred {
        id: Uuid,
        reason: String,
        next_attempt_at: OffsetDateTime,
    },
}

impl Outcome {
    pub fn id(&self) -> Uuid {
        match self {
            Self::Sent { id, .. }
            | Self::Retry { id, .. }
            | Self::Failed { id, .. }
            | Self::Deferred { id, .. } => *id,
        }
    }

    pub fn status(&self) -> MessageStatus {
        match self {
            Self::Sent { .. } => MessageStatus::Sent,
            Self::Retry { .. } | Self::Deferred { .. } => MessageStatus::Retry,
            Self::Failed { .. } => MessageStatus::Failed,
        }
    }
}

/// Why a message a task named was not claimed, when the task still has work to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// Some worker holds it (`sending`): if that worker dies, the task brings it back.
    Held,
    /// A retry not yet due by the database's clock: the task came early (a worker whose
    /// clock runs ahead of the database's let it out) and must wait until then.
    DueAt(time::OffsetDateTime),
}

/// A message the sweeper found stranded and is about to enqueue again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stranded {
    pub id: Uuid,
    pub kind: MessageType,
}

#[derive(Debug, Clone, Copy)]
pub struct SweepQuery {
    /// How long a message may wait in `pending` (or overdue in `retry`) before it counts as lost.
    pub age: std::time::Duration,
    /// Claims older than this belong to a dead worker.
    pub visibility_timeout: std::time::Duration,
    pub limit: i64,
}

/// What [`Store::insert_messages_unless_suppressed`] did.
#[derive(Debug)]
pub enum Guarded {
    /// The batch is stored: one result per message, in batch order.
    Stored(Vec<Inserted>),
    /// Nothing is stored: these entries of the suppression list name recipients of the batch.
    Suppressed(Vec<crate::domain::compliance::Suppression>),
}

/// Everything the service needs from its database. Each aggregate has its own trait (one
/// file per aggregate); a backend implements them all and is then a `Store`.
#[async_trait]
pub trait Store:
    MessageStore
    + ConversationStore
    + DeadLetterStore
    + CorrectionStore
    + ApiKeyStore
    + WebhookStore
    + SuppressionStore
    + ScheduleStore
    + EventStore
    + Send
    + Sync
    + 'static
{
    /// Name of the backend, for start-up logs and `/ready`.
    fn backend(&self) -> &'static str;

    /// Stores a batch as [`MessageStore::insert_messages`] does, unless one of `addresses`
    /// (normalised recipients, see [`lookup_addresses`]) is on the suppression list: then
    /// nothing is stored and the entries found are answered, for the caller to refuse those
    /// messages and store the others. By default a lookup, then the insert; a backend that
    /// can do both in one round trip does.
    async fn insert_messages_unless_suppressed(
        &self,
        batch: &[NewMessage],
        addresses: &[String],
    ) -> StoreResult<Guarded> {
        let found = self.find_suppressions(addresses).await?;
        if !found.is_empty() {
            return Ok(Guarded::Suppressed(found));
        }
        Ok(Guarded::Stored(self.insert_messages(batch).await?))
    }

    async fn ping(&self) -> StoreResult<()>;

    /// Connection pool figures for metrics; `None` for a backend without a pool.
    fn pool_usage(&self) -> Option<PoolUsage> {
        None
    }

    /// Folds what the search index has gathered since the last call into the index proper,
    /// so that no accepted message's insert has to (see "Search" in the README). Called by
    /// the API about once a second (`service::search_index`); a no-op where the index needs
    /// no help.
    async fn maintain_search_index(&self) -> StoreResult<()> {
        Ok(())
    }
}

/// Open and idle connections of a pool, and its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}
