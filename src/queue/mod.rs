//! The `Queue` trait: how the API hands work to workers. A task is a message id and its
//! type; the database row stays the truth about what to do with it. Entries also show the
//! people and tools reading the queue what they are about (`entry_data`): ids, type, masked
//! addresses and timestamps, never a body or a secret.

pub mod in_process;
pub mod redis;

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::domain::{Message, MessageType, address_mask};

/// Version of the task encoding carried in every entry: `2` entries also carry `data`
/// (`1` entries, written before it existed, are read as well).
pub const TASK_VERSION: &str = "2";

/// One unit of work: send this message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Task {
    pub message_id: Uuid,
    pub kind: MessageType,
}

impl Task {
    pub fn of(message: &Message) -> Self {
        Self {
            message_id: message.id,
            kind: message.kind,
        }
    }
}

fn rfc3339(at: OffsetDateTime) -> Value {
    at.format(&Rfc3339).map_or(Value::Null, Value::from)
}

/// The JSON an entry shows its readers, as the original service wrote it in the entry's
/// `data` field: `message_id` and `type` always, `queued_at` (when the entry was written);
/// with the message at hand also `conversation_id`, `direction`, the masked `from` and `to`
/// (`+1555***4567`, `j***@example.com`) and `created_at`. Never the body, subject,
/// attachments, metadata or anything secret: anyone with access to Redis can read it.
pub fn entry_data(task: &Task, message: Option<&Message>, queued_at: OffsetDateTime) -> String {
    let mut data = Map::new();
    data.insert("message_id".into(), task.message_id.to_string().into());
    data.insert("type".into(), task.kind.as_str().into());
    if let Some(m) = message.filter(|m| m.id == task.message_id) {
        data.insert(
            "conversation_id".into(),
            m.conversation_id.to_string().into(),
        );
        data.insert("direction".into(), m.direction.as_str().into());
        data.insert("from".into(), address_mask(&m.from).into());
        data.insert("to".into(), address_mask(&m.to).into());
        data.insert("created_at".into(), rfc3339(m.created_at));
    }
    data.insert("queued_at".into(), rfc3339(queued_at));
    Value::Object(data).to_string()
}

/// The message id in an entry's `data` JSON (ours, or the original service's), if any.
pub fn message_id_from_data(data: &str) -> Option<Uuid> {
    let value: Value = serde_json::from_str(data).ok()?;
    Uuid::parse_str(value.get("message_id")?.as_str()?).ok()
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

    /// Adds these messages' tasks, each entry also showing its readers what it is about
    /// (`entry_data` with the message at hand). Queues nobody reads from outside the
    /// process simply enqueue the tasks.
    async fn enqueue_messages(&self, messages: &[&Message]) -> anyhow::Result<()> {
        let tasks: Vec<Task> = messages.iter().map(|m| Task::of(m)).collect();
        self.enqueue(&tasks).await
    }

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
