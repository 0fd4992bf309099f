//! Reading messages: one message, a filtered page, and one message's audit trail.

use uuid::Uuid;

use super::{Context, ServiceError};
use crate::domain::{Message, MessageEvent};
use crate::store::{MessageFilter, Page};

const NOT_FOUND: ServiceError = ServiceError::NotFound {
    resource: "message",
};

pub async fn get(ctx: Context<'_>, id: Uuid) -> Result<Message, ServiceError> {
    ctx.store.get_message(id).await?.ok_or(NOT_FOUND)
}

/// A page of messages, newest first, with the total matching `filter`.
pub async fn list(
    ctx: Context<'_>,
    filter: &MessageFilter,
    page: Page,
) -> Result<(Vec<Message>, i64), ServiceError> {
    Ok(ctx.store.list_messages(filter, page).await?)
}

/// Every transition and receipt of a message, oldest first; not found if the message is not.
pub async fn events(ctx: Context<'_>, id: Uuid) -> Result<Vec<MessageEvent>, ServiceError> {
    get(ctx, id).await?;
    Ok(ctx.store.message_events(id).await?)
}
