//! Synchronous mode (`SYNC_MESSAGE_PROCESSING=true`): a just-stored message is claimed,
//! sent and settled within the request, exactly as a worker would, and its resulting state
//! is the answer.

use super::{Context, ServiceError};
use crate::domain::Message;

/// Delivers `message` now and returns it as stored afterwards.
pub async fn deliver_now(ctx: Context<'_>, message: Message) -> Result<Message, ServiceError> {
    let claim = ctx
        .store
        .claim(&[message.id], ctx.settings.queue.visibility_timeout)
        .await?;
    let outcomes = ctx.deliverer.send_all(&claim.messages).await;
    ctx.deliverer
        .settle(&claim, &outcomes)
        .await
        .map_err(ServiceError::from_anyhow)?;
    ctx.store
        .get_message(message.id)
        .await?
        .ok_or(ServiceError::NotFound {
            resource: "message",
        })
}
