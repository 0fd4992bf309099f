//! The `Queue` trait: how the API hands work to workers. Entries carry only a message id
//! (and its type); the database row stays the truth about what to do with it.

pub mod in_process;
pub mod redis;

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::MessageType;

/// Version of the task encoding carried in every entry.
pub const TASK_VERSION: &str = "1";

/// One unit of work: send this message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Task {
    pub message_id: Uuid,
    pub kind: MessageType,
}

/// A task handed to one consumer. It stays owned by that consumer until acknowledged, or
/// until another consumer reclaims it after the visibility timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub kind: MessageType,
    pub entry_id: String,
    /// `None` when the entry could not be decoded; it is acknowledged and dropped.
    pub message_id: Option<Uuid>,
}

/// A message that exhausted its retries or failed permanently.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub task: Task,
    pub reason: String,
}

/// One entry of the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetterEntry {
    /// The queue's own id of the entry (a cursor for paging).
    pub entry_id: String,
    /// `None` when the entry could not be decoded.
    pub message_id: Option<Uuid>,
    pub kind: Option<MessageType>,
    pub reason: String,
    pub failed_at: String,
}

/// Backlog figures for `/ready` and metrics.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct QueueDepths {
    pub sms: u64,
    pub mms: u64,
    pub email: u64,
    pub delayed: u64,
    pub dead_letter: u64,
}

#[async_trait]
pub trait Queue: Send + Sync + 'static {
    fn backend(&self) -> &'static str;

    async fn ping(&self) -> anyhow::Result<()>;

    /// Adds tasks to their streams; all or nothing is not promised, but each added task is durable.
    async fn enqueue(&self, tasks: &[Task]) -> anyhow::Result<()>;

    /// Up to `max` new tasks for `consumer`, waiting at most `block` for the first.
    async fn fetch(
        &self,
        consumer: &str,
        max: usize,
        block: Duration,
    ) -> anyhow::Result<Vec<Delivery>>;

    /// Takes over tasks another consumer has held unacknowledged for longer than `min_idle`.
    async fn reclaim(
        &self,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> anyhow::Result<Vec<Delivery>>;

    /// Acknowledges and removes finished tasks, so the stream length is the backlog.
    async fn ack(&self, deliveries: &[Delivery]) -> anyhow::Result<()>;

    /// Holds tasks until `due`, then they are enqueued again by `promote_due`.
    async fn schedule(&self, tasks: &[(Task, OffsetDateTime)]) -> anyhow::Result<()>;

    /// Moves scheduled tasks whose time has come into their streams; returns how many.
    async fn promote_due(&self, limit: usize) -> anyhow::Result<usize>;

    async fn dead_letter(&self, letters: &[DeadLetter]) -> anyhow::Result<()>;

    /// Up to `max` dead letters, oldest first, after the entry `after` (a previous page's
    /// last `entry_id`).
    async fn dead_letters(
        &self,
        after: Option<&str>,
        max: usize,
    ) -> anyhow::Result<Vec<DeadLetterEntry>>;

    /// Removes the dead letters of these messages (once redriven); returns how many.
    async fn remove_dead_letters(&self, message_ids: &[Uuid]) -> anyhow::Result<usize>;

    async fn depths(&self) -> anyhow::Result<QueueDepths>;
}
