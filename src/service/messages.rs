//! Reading messages: one message, a filtered page, and one message's audit trail.

use uuid::Uuid;

use super::listing::{self, ListPage, PageRequest};
use super::{Context, ServiceError};
use crate::domain::{CursorPosition, Message, MessageEvent};
use crate::store::MessageFilter;

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
    request: &PageRequest,
) -> Result<ListPage<Message>, ServiceError> {
    let scope = scope(filter);
    let window = listing::window(ctx, &scope, request)?;
    let listed = ctx.store.page_messages(filter, window).await?;
    Ok(listing::answer(&scope, listed, |m| CursorPosition {
        key: Some(m.created_at),
        id: m.id,
    }))
}

/// What a cursor of this listing is valid for: the list and every filter.
fn scope(f: &MessageFilter) -> String {
    format!(
        "messages conversation_id={} status={} direction={} type={}",
        f.conversation_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        f.status.map(|s| s.as_str()).unwrap_or_default(),
        f.direction.map(|d| d.as_str()).unwrap_or_default(),
        f.kind.map(|k| k.as_str()).unwrap_or_default(),
    )
}

/// Every transition and receipt of a message, oldest first; not found if the message is not.
pub async fn events(ctx: Context<'_>, id: Uuid) -> Result<Vec<MessageEvent>, ServiceError> {
    get(ctx, id).await?;
    Ok(ctx.store.message_events(id).await?)
}
