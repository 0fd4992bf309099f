//! Conversations: listing, reading and editing them, their messages, read markers, search
//! and statistics. Creation by messages happens in `MessageStore::insert_messages`.

use async_trait::async_trait;
use uuid::Uuid;

use super::{Listed, Page, StoreResult, Window};
use crate::domain::{
    ChannelFamily, Conversation, ConversationPatch, ConversationStatistics, ConversationStatus,
    Message, NewConversation, SearchQuery,
};

#[derive(Debug, Clone, Default)]
pub struct ConversationFilter {
    pub status: Option<ConversationStatus>,
    pub channel: Option<ChannelFamily>,
    /// A normalised address matching either participant.
    pub participant: Option<String>,
}

/// Order of a conversation's messages by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    #[default]
    Oldest,
    Newest,
}

/// A search hit: the conversation and how well it matched (higher is better).
#[derive(Debug, Clone)]
pub struct SearchHit {
    pub conversation: Conversation,
    pub rank: f64,
    /// Messages of the conversation whose text matched.
    pub matching_messages: i64,
}

#[async_trait]
pub trait ConversationStore: Send + Sync + 'static {
    /// Opens a conversation, or returns the one the pair already has on that channel
    /// (`false`: not created; title and metadata of the request are then not applied).
    async fn create_conversation(&self, new: &NewConversation)
    -> StoreResult<(Conversation, bool)>;

    async fn get_conversation(&self, id: Uuid) -> StoreResult<Option<Conversation>>;

    /// A window of conversations, most recent activity first (`last_message_at`
    /// descending, never-used ones last, then `id` ascending), with the total matching.
    async fn list_conversations(
        &self,
        filter: &ConversationFilter,
        window: Window,
    ) -> StoreResult<Listed<Conversation>>;

    /// A page of one conversation's messages with their total; `None` if it does not exist.
    async fn conversation_messages(
        &self,
        id: Uuid,
        order: SortOrder,
        page: Page,
    ) -> StoreResult<Option<(Vec<Message>, i64)>>;

    async fn update_conversation(
        &self,
        id: Uuid,
        patch: &ConversationPatch,
    ) -> StoreResult<Option<Conversation>>;

    /// Deletes the conversation with its messages and their events; `false` if none.
    async fn delete_conversation(&self, id: Uuid) -> StoreResult<bool>;

    /// Marks every unread inbound message read and zeroes `unread_count`; returns the
    /// conversation and how many messages were marked.
    async fn mark_conversation_read(&self, id: Uuid) -> StoreResult<Option<(Conversation, u64)>>;

    /// Conversations whose participant is the query's address, or whose messages contain
    /// its words, best match first.
    async fn search_conversations(
        &self,
        query: &SearchQuery,
        limit: i64,
    ) -> StoreResult<Vec<SearchHit>>;

    async fn conversation_statistics(
        &self,
        id: Uuid,
    ) -> StoreResult<Option<ConversationStatistics>>;
}
