//! Collecting concurrent writes into batches. Requests hand their validated message to a
//! few writer tasks; each writer takes everything waiting (up to a batch size), has the
//! store write it in one transaction (what that transaction writes is decided by
//! `store::batch`), enqueues the new outbound messages with one pipelined round trip, and
//! only then answers every request. Under load batches grow by themselves, so throughput
//! follows the database's commit rate times the batch size instead of one commit per request.
//!
//! [`submit`] is the one way a use-case stores a new message, sent or received.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use super::{Context, ServiceError};
use crate::domain::{Direction, Message, MessageStatus, NewMessage, address_mask};
use crate::queue::Queue;
use crate::store::{Guarded, Inserted, Store, StoreError, lookup_addresses, matched};

/// Stores one new message through the batch writers and logs what happened: a new
/// outbound message is accepted, a new inbound one received; an existing one (a repeated
/// idempotency key, a replayed provider id) is returned as it was stored.
pub async fn submit(ctx: Context<'_>, message: NewMessage) -> Result<Inserted, ServiceError> {
    let direction = message.direction;
    let provider = message.provider.clone().unwrap_or_default();
    let inserted = ctx.ingest.submit(message).await?;
    match (&inserted, direction) {
        (Inserted::Created(m), Direction::Outbound) => {
            info!(message_id = %m.id, r#type = %m.kind, to = %address_mask(&m.to), "Message accepted");
        }
        (Inserted::Created(m), Direction::Inbound) => {
            info!(provider, message_id = %m.id, conversation_id = %m.conversation_id, from = %address_mask(&m.from), "Inbound message received");
        }
        (Inserted::Existing { message: m, .. }, Direction::Outbound) => {
            info!(message_id = %m.id, "Repeated Idempotency-Key: the stored message is answered");
        }
        (Inserted::Existing { message: m, .. }, Direction::Inbound) => {
            info!(provider, message_id = %m.id, "Replayed inbound message ignored: already stored");
        }
    }
    Ok(inserted)
}

/// How long the send path waits for Redis before leaving the message to the sweeper.
const ENQUEUE_TIMEOUT: Duration = Duration::from_secs(1);
/// After an enqueue failure, skip Redis for this long so requests do not each wait a timeout.
const ENQUEUE_BACKOFF_MS: i64 = 1000;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IngestError {
    #[error("the database is unavailable")]
    Unavailable,
    #[error("the service is shutting down")]
    ShuttingDown,
    #[error("storing the message failed")]
    Failed,
    #[error("the recipient is suppressed")]
    Suppressed(crate::domain::compliance::Suppression),
}

type Reply = oneshot::Sender<Result<Inserted, IngestError>>;

struct Job {
    message: NewMessage,
    reply: Reply,
}

#[derive(Clone)]
pub struct Ingestor {
    tx: mpsc::Sender<Job>,
}

struct Writer {
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    enqueue: bool,
    /// Shared by the writer tasks: after an enqueue failure, none tries Redis until then.
    queue_down_until_ms: AtomicI64,
}

impl Ingestor {
    /// Starts `writers` writer tasks. With `enqueue` false (synchronous mode) messages are
    /// stored but not queued: the caller delivers them itself.
    pub fn start(
        store: Arc<dyn Store>,
        queue: Arc<dyn Queue>,
        max_batch: usize,
        writers: usize,
        enqueue: bool,
    ) -> Self {
        let writer = Arc::new(Writer {
            store,
            queue,
            enqueue,
            queue_down_until_ms: AtomicI64::new(0),
        });
        let tx = super::group_commit::start(writers, max_batch, move |jobs| {
            let writer = writer.clone();
            async move { writer.write(jobs).await }
        });
        Self { tx }
    }

    /// Stores one message (with others arriving at the same moment) and returns once the
    /// transaction holding it has committed.
    pub async fn submit(&self, message: NewMessage) -> Result<Inserted, IngestError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { message, reply })
            .await
            .map_err(|_| IngestError::ShuttingDown)?;
        rx.await.map_err(|_| IngestError::Failed)?
    }
}

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

impl Writer {
    async fn write(&self, jobs: Vec<Job>) {
        if jobs.is_empty() {
            return;
        }
        // The messages move to the store; the replies wait for its answer. The store checks
        // the suppression list in the same round trip (see `Store::insert_messages_unless_suppressed`).
        let (messages, replies): (Vec<NewMessage>, Vec<Reply>) =
            jobs.into_iter().map(|j| (j.message, j.reply)).unzip();
        let keys = super::compliance::suppression_keys(&messages);
        let result = self
            .store
            .insert_messages_unless_suppressed(&messages, &lookup_addresses(&keys))
            .await;
        let results = match result {
            Ok(Guarded::Stored(results)) => results,
            // Nothing was stored: refuse the suppressed recipients, then store the others.
            Ok(Guarded::Suppressed(found)) => {
                let mut others = Vec::new();
                for ((message, reply), suppression) in messages
                    .into_iter()
                    .zip(replies)
                    .zip(matched(&keys, &found))
                {
                    match suppression {
                        Some(s) => {
                            info!(to = %address_mask(&s.address), reason = s.reason.as_str(), "Send refused: recipient suppressed");
                            let _ = reply.send(Err(IngestError::Suppressed(s)));
                        }
                        None => others.push(Job { message, reply }),
                    }
                }
                Box::pin(self.write(others)).await;
                return;
            }
            // One bad message must not fail the requests that happened to share its
            // transaction: store them one by one so only the culprit fails.
            Err(StoreError::Other(e)) if messages.len() > 1 => {
                warn!(error = %format!("{e:#}"), batch = messages.len(), "storing a batch failed; storing its messages one by one");
                for (message, reply) in messages.into_iter().zip(replies) {
                    Box::pin(self.write(vec![Job { message, reply }])).await;
                }
                return;
            }
            Err(e) => {
                let reply = match &e {
                    StoreError::Unavailable(_) => IngestError::Unavailable,
                    StoreError::Other(_) => IngestError::Failed,
                };
                error!(error = %format!("{:#}", anyhow::Error::from(e)), batch = messages.len(), "storing a batch of messages failed");
                for job in replies {
                    let _ = job.send(Err(reply.clone()));
                }
                return;
            }
        };

        if self.enqueue {
            let created: Vec<&Message> = results
                .iter()
                .filter_map(|r| match r {
                    // Received messages are stored, never delivered; scheduled ones are
                    // enqueued by the scheduler when due.
                    Inserted::Created(m)
                        if m.direction == Direction::Outbound
                            && m.status != MessageStatus::Scheduled =>
                    {
                        Some(m)
                    }
                    Inserted::Created(_) | Inserted::Existing { .. } => None,
                })
                .collect();
            self.enqueue(&created).await;
        }

        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(Ok(result));
        }
    }

    /// Best effort: the messages are already safe in the database, and the sweeper enqueues
    /// any that miss the queue here.
    async fn enqueue(&self, messages: &[&Message]) {
        if messages.is_empty() || now_ms() < self.queue_down_until_ms.load(Ordering::Relaxed) {
            return;
        }
        let result =
            tokio::time::timeout(ENQUEUE_TIMEOUT, self.queue.enqueue_messages(messages)).await;
        let error = match result {
            Ok(Ok(())) => {
                if self.queue_down_until_ms.swap(0, Ordering::Relaxed) != 0 {
                    info!("queue reachable again");
                }
                return;
            }
            Ok(Err(e)) => format!("{e:#}"),
            Err(_) => "timed out".to_owned(),
        };
        let previous = self
            .queue_down_until_ms
            .swap(now_ms() + ENQUEUE_BACKOFF_MS, Ordering::Relaxed);
        if previous == 0 {
            warn!(error = %error, count = messages.len(), "could not enqueue messages; they stay pending and the sweeper will enqueue them");
        }
    }
}
