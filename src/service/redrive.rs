//! Dead-letter redrive: failed messages back to `pending` and into the queue, their dead
//! letters removed. Used by `POST /api/v1/messages/{id}/retry` ([`retry`]) and by
//! `messaging-service dlq redrive`.

use tracing::{info, warn};
use uuid::Uuid;

use super::ServiceError;
use crate::domain::{Message, MessageStatus};
use crate::queue::Queue;
use crate::store::Store;

/// What a redrive did.
#[derive(Debug, Default)]
pub struct Redrive {
    /// Messages moved from `failed` to `pending`.
    pub messages: Vec<Message>,
    /// False when Redis refused the tasks: the messages stay `pending` and the sweeper
    /// enqueues them once Redis is back.
    pub enqueued: bool,
}

/// Redrives those of `ids` that are failed (others are left alone).
pub async fn redrive(
    store: &dyn Store,
    queue: &dyn Queue,
    ids: &[Uuid],
) -> Result<Redrive, ServiceError> {
    let messages = store.redrive(ids).await?;
    if messages.is_empty() {
        return Ok(Redrive {
            messages,
            enqueued: true,
        });
    }
    let redriven: Vec<&Message> = messages.iter().collect();
    let enqueued = match queue.enqueue_messages(&redriven).await {
        Ok(()) => true,
        Err(e) => {
            warn!(error = %format!("{e:#}"), count = redriven.len(), "could not enqueue redriven messages; the sweeper will");
            false
        }
    };
    let moved: Vec<Uuid> = messages.iter().map(|m| m.id).collect();
    if let Err(e) = queue.remove_dead_letters(&moved).await {
        warn!(error = %format!("{e:#}"), "could not remove dead letters of redriven messages");
    }
    info!(count = messages.len(), "Redrove failed messages");
    Ok(Redrive { messages, enqueued })
}

/// Puts one failed message back in line and returns it (`pending`). Any other status is
/// refused, also when another caller retried it first.
#[tracing::instrument(skip_all, fields(message_id = %id))]
pub async fn retry(
    store: &dyn Store,
    queue: &dyn Queue,
    id: Uuid,
) -> Result<Message, ServiceError> {
    let current = store.get_message(id).await?.ok_or(ServiceError::NotFound {
        resource: "message",
    })?;
    if current.status != MessageStatus::Failed {
        return Err(ServiceError::NotFailed {
            status: current.status,
        });
    }
    match redrive(store, queue, &[id])
        .await?
        .messages
        .into_iter()
        .next()
    {
        Some(message) => Ok(message),
        // Someone else retried it between our read and our update.
        None => {
            let now = store.get_message(id).await?;
            Err(ServiceError::NotFailed {
                status: now.map_or(MessageStatus::Pending, |m| m.status),
            })
        }
    }
}
