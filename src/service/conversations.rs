//! Conversations: open, list, read (optionally with their latest messages), edit, delete,
//! mark read, search and count.

use uuid::Uuid;

use super::listing::{self, ListPage, PageRequest};
use super::{Context, ServiceError};
use crate::domain::{
    Conversation, ConversationPatch, ConversationStatistics, CursorPosition, Message,
    NewConversation, SearchQuery,
};
use crate::store::{ConversationFilter, Page, SearchHit, SortOrder};

const NOT_FOUND: ServiceError = ServiceError::NotFound {
    resource: "conversation",
};

/// The conversation of the pair on that channel; `true` if it was opened now (creating is
/// idempotent: an existing one is returned unchanged).
pub async fn open(
    ctx: Context<'_>,
    new: &NewConversation,
) -> Result<(Conversation, bool), ServiceError> {
    Ok(ctx.store.create_conversation(new).await?)
}

/// A page of conversations, most recent activity first, with the total matching.
pub async fn list(
    ctx: Context<'_>,
    filter: &ConversationFilter,
    request: &PageRequest,
) -> Result<ListPage<Conversation>, ServiceError> {
    let scope = format!(
        "conversations status={} channel={} participant={}",
        filter.status.map(|s| s.as_str()).unwrap_or_default(),
        filter.channel.map(|c| c.as_str()).unwrap_or_default(),
        filter.participant.as_deref().unwrap_or_default(),
    );
    let window = listing::window(ctx, &scope, request)?;
    let listed = ctx.store.list_conversations(filter, window).await?;
    Ok(listing::answer(&scope, listed, |c| CursorPosition {
        key: c.last_message_at,
        id: c.id,
    }))
}

/// One conversation and, when `messages` gives a page, its newest messages.
pub async fn get(
    ctx: Context<'_>,
    id: Uuid,
    messages: Option<Page>,
) -> Result<(Conversation, Option<Vec<Message>>), ServiceError> {
    let conversation = ctx.store.get_conversation(id).await?.ok_or(NOT_FOUND)?;
    let Some(page) = messages else {
        return Ok((conversation, None));
    };
    // Deleted meanwhile: the conversation above is still a truthful answer.
    let (messages, _) = ctx
        .store
        .conversation_messages(id, SortOrder::Newest, page)
        .await?
        .unwrap_or_default();
    Ok((conversation, Some(messages)))
}

/// A page of one conversation's messages in `order`, with their total.
pub async fn messages(
    ctx: Context<'_>,
    id: Uuid,
    order: SortOrder,
    page: Page,
) -> Result<(Vec<Message>, i64), ServiceError> {
    ctx.store
        .conversation_messages(id, order, page)
        .await?
        .ok_or(NOT_FOUND)
}

#[tracing::instrument(skip_all, fields(conversation_id = %id))]
pub async fn update(
    ctx: Context<'_>,
    id: Uuid,
    patch: &ConversationPatch,
) -> Result<Conversation, ServiceError> {
    ctx.store
        .update_conversation(id, patch)
        .await?
        .ok_or(NOT_FOUND)
}

/// Deletes the conversation with its messages and their events.
#[tracing::instrument(skip_all, fields(conversation_id = %id))]
pub async fn delete(ctx: Context<'_>, id: Uuid) -> Result<(), ServiceError> {
    if !ctx.store.delete_conversation(id).await? {
        return Err(NOT_FOUND);
    }
    tracing::info!(conversation_id = %id, "Conversation deleted");
    Ok(())
}

/// Marks every unread inbound message read; the conversation (now `unread_count: 0`) and
/// how many messages were marked.
#[tracing::instrument(skip_all, fields(conversation_id = %id))]
pub async fn mark_read(ctx: Context<'_>, id: Uuid) -> Result<(Conversation, u64), ServiceError> {
    ctx.store.mark_conversation_read(id).await?.ok_or(NOT_FOUND)
}

/// Best match first.
pub async fn search(
    ctx: Context<'_>,
    query: &SearchQuery,
    limit: i64,
) -> Result<Vec<SearchHit>, ServiceError> {
    Ok(ctx.store.search_conversations(query, limit).await?)
}

pub async fn statistics(
    ctx: Context<'_>,
    id: Uuid,
) -> Result<ConversationStatistics, ServiceError> {
    ctx.store
        .conversation_statistics(id)
        .await?
        .ok_or(NOT_FOUND)
}
