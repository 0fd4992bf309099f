//! Scheduled sends, the client's side: canceling a message before it is due. (Accepting
//! `send_at` is part of [`super::send`]; promoting due messages is the worker's scheduler.)

use tracing::info;
use uuid::Uuid;

use super::{Context, ServiceError};
use crate::domain::Message;

/// Cancels a scheduled message and returns it (`canceled`). The store's update is guarded
/// by the status, so a cancel racing the scheduler's promotion has one winner: a message
/// already promoted (or sent, or canceled) is refused as not cancelable.
#[tracing::instrument(skip_all, fields(message_id = %id))]
pub async fn cancel(ctx: Context<'_>, id: Uuid) -> Result<Message, ServiceError> {
    if let Some(message) = ctx.store.cancel_scheduled(id).await? {
        info!("Scheduled message canceled");
        return Ok(message);
    }
    match ctx.store.get_message(id).await? {
        Some(m) => Err(ServiceError::NotCancelable { status: m.status }),
        None => Err(ServiceError::NotFound {
            resource: "message",
        }),
    }
}
