//! Conversations on PostgreSQL. Counters are written by the batched message insert (see
//! `messages.rs`); here they are only read, and zeroed when a conversation is marked read.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::{PgStore, classify};
use crate::domain::{
    Conversation, ConversationPatch, ConversationStatistics, ConversationStatus, Message,
    NewConversation, SearchQuery,
};
use crate::store::query::{Listing, POSTGRES, SearchTerms, by_id};
use crate::store::rows::{self, CONVERSATION_COLUMNS, Fetch, MESSAGE_COLUMNS};
use crate::store::{
    ConversationFilter, ConversationStore, Listed, Page, SearchHit, SortOrder, StoreResult, Window,
};

#[async_trait]
impl ConversationStore for PgStore {
    #[tracing::instrument(skip_all)]
    async fn create_conversation(
        &self,
        new: &NewConversation,
    ) -> StoreResult<(Conversation, bool)> {
        // `on conflict do nothing` waits for a concurrent insert of the same pair, so the
        // select that follows always finds the winner.
        let sql = format!(
            "insert into conversations (id, channel, participant_a, participant_b, title, metadata)
             values ($1, $2, $3, $4, $5, $6)
             on conflict (channel, participant_a, participant_b) do nothing
             returning {CONVERSATION_COLUMNS}"
        );
        let created = sqlx::query(AssertSqlSafe(sql))
            .bind(new.id)
            .bind(new.channel.as_str())
            .bind(&new.participants.0)
            .bind(&new.participants.1)
            .bind(&new.title)
            .bind(&new.metadata)
            .optional(&self.pool, rows::conversation)
            .await?;
        if let Some(conversation) = created {
            return Ok((conversation, true));
        }
        let sql = format!(
            "select {CONVERSATION_COLUMNS} from conversations
             where channel = $1 and participant_a = $2 and participant_b = $3"
        );
        let existing = sqlx::query(AssertSqlSafe(sql))
            .bind(new.channel.as_str())
            .bind(&new.participants.0)
            .bind(&new.participants.1)
            .one(&self.pool, rows::conversation)
            .await?;
        Ok((existing, false))
    }

    async fn list_conversations(
        &self,
        filter: &ConversationFilter,
        window: Window,
    ) -> StoreResult<Listed<Conversation>> {
        let listing = Listing::conversations(CONVERSATION_COLUMNS, filter, window);
        self.list(&listing, rows::conversation).await
    }

    async fn get_conversation(&self, id: Uuid) -> StoreResult<Option<Conversation>> {
        let lookup = by_id("conversations", CONVERSATION_COLUMNS, id, POSTGRES);
        rows::find(&self.pool, &lookup, rows::conversation).await
    }

    async fn conversation_messages(
        &self,
        id: Uuid,
        order: SortOrder,
        page: Page,
    ) -> StoreResult<Option<(Vec<Message>, i64)>> {
        let total: Option<i64> = sqlx::query_scalar(
            "select (select count(*) from messages m where m.conversation_id = c.id)
             from conversations c where c.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        let Some(total) = total else {
            return Ok(None);
        };
        let direction = match order {
            SortOrder::Oldest => "asc",
            SortOrder::Newest => "desc",
        };
        let sql = format!(
            "select {MESSAGE_COLUMNS} from messages where conversation_id = $1
             order by created_at {direction}, id {direction} limit $2 offset $3"
        );
        let messages = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .bind(page.limit)
            .bind(page.offset)
            .all(&self.pool, rows::message)
            .await?;
        Ok(Some((messages, total)))
    }

    #[tracing::instrument(skip_all, fields(conversation_id = %id))]
    async fn update_conversation(
        &self,
        id: Uuid,
        patch: &ConversationPatch,
    ) -> StoreResult<Option<Conversation>> {
        let sql = format!(
            "update conversations set
                 title = case when $2 then $3 else title end,
                 status = coalesce($4, status),
                 metadata = (metadata || $5::jsonb) - $6::text[],
                 updated_at = now()
             where id = $1
             returning {CONVERSATION_COLUMNS}"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .bind(patch.title.is_some())
            .bind(patch.title.clone().flatten())
            .bind(patch.status.map(ConversationStatus::as_str))
            .bind(serde_json::Value::Object(patch.metadata_set.clone()))
            .bind(&patch.metadata_remove)
            .optional(&self.pool, rows::conversation)
            .await
    }

    #[tracing::instrument(skip_all, fields(conversation_id = %id))]
    async fn delete_conversation(&self, id: Uuid) -> StoreResult<bool> {
        // Its messages, their audit trails and their search documents have no foreign keys
        // (see the migrations `message_texts`, `message_events_without_foreign_key` and
        // `messages_without_conversation_foreign_key`): they are deleted here, each by a
        // statement of its own, so that each sees what the one before waited for.
        // - The conversation first: that waits for a batch storing a message in it (the
        //   batch holds the conversation's row), whose messages the next statement then sees.
        //   A later batch finds no conversation and makes a new one.
        // - Then the messages: that waits for a claim or an outcome changing one of them,
        //   whose trail rows the next statement then sees.
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let deleted = sqlx::query("delete from conversations where id = $1")
            .bind(id)
            .run(&mut *tx)
            .await?;
        let messages: Vec<Uuid> =
            sqlx::query("delete from messages where conversation_id = $1 returning id")
                .bind(id)
                .all(&mut *tx, rows::id)
                .await?;
        sqlx::query("delete from message_events where message_id = any($1)")
            .bind(&messages)
            .run(&mut *tx)
            .await?;
        sqlx::query("delete from message_texts where conversation_id = $1")
            .bind(id)
            .run(&mut *tx)
            .await?;
        tx.commit().await.map_err(classify)?;
        Ok(deleted > 0)
    }

    #[tracing::instrument(skip_all, fields(conversation_id = %id))]
    async fn mark_conversation_read(&self, id: Uuid) -> StoreResult<Option<(Conversation, u64)>> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        // Zero the counter first: that takes the conversation's row lock, so a batch of
        // inbound messages either committed before (its messages are marked below) or
        // waits and counts its messages unread after this commit. Never both or neither.
        let sql = format!(
            "update conversations set unread_count = 0, updated_at = now() where id = $1
             returning {CONVERSATION_COLUMNS}"
        );
        let Some(conversation) = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .optional(&mut *tx, rows::conversation)
            .await?
        else {
            return Ok(None);
        };
        let marked = sqlx::query(
            "update messages set read_at = now(), updated_at = now()
             where conversation_id = $1 and direction = 'inbound' and read_at is null",
        )
        .bind(id)
        .run(&mut *tx)
        .await?;
        tx.commit().await.map_err(classify)?;
        Ok(Some((conversation, marked)))
    }

    #[tracing::instrument(skip_all)]
    async fn search_conversations(
        &self,
        query: &SearchQuery,
        limit: i64,
    ) -> StoreResult<Vec<SearchHit>> {
        // Rank: an exact participant match counts 1, a participant prefix 0.5, and each
        // matching message adds its full-text rank, so more (and closer) mentions rank higher.
        let terms = SearchTerms::of(query);
        let sql = format!(
            "with q as (select websearch_to_tsquery('simple', $1) as query),
             text_hits as (
                 select t.conversation_id, sum(ts_rank(t.document, q.query))::float8 as rank,
                        count(*) as hits
                 from message_texts t, q
                 where t.document @@ q.query
                 group by t.conversation_id
             ),
             participant_hits as (
                 select id as conversation_id,
                        case when participant_a = $2 or participant_b = $2 then 1.0 else 0.5 end::float8 as rank
                 from conversations
                 where participant_a = $2 or participant_b = $2
                    or participant_a like $3 or participant_b like $3
             ),
             scored as (
                 select coalesce(t.conversation_id, p.conversation_id) as id,
                        coalesce(t.rank, 0) + coalesce(p.rank, 0) as rank,
                        coalesce(t.hits, 0) as hits
                 from text_hits t full join participant_hits p on p.conversation_id = t.conversation_id
             )
             select {CONVERSATION_COLUMNS}, s.rank, s.hits
             from scored s join conversations c using (id)
             order by s.rank desc, c.last_message_at desc nulls last, c.id
             limit $4"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(terms.words)
            .bind(terms.address)
            .bind(terms.prefix)
            .bind(limit)
            .all(&self.pool, rows::search_hit)
            .await
    }

    async fn conversation_statistics(
        &self,
        id: Uuid,
    ) -> StoreResult<Option<ConversationStatistics>> {
        sqlx::query(
            "select c.id,
                    count(m.id) as total,
                    count(*) filter (where m.direction = 'inbound') as inbound,
                    count(*) filter (where m.direction = 'outbound') as outbound,
                    count(*) filter (where m.status = 'failed') as failed,
                    (avg(extract(epoch from m.sent_at - m.created_at))
                        filter (where m.direction = 'outbound' and m.sent_at is not null))::float8 as avg_to_sent
             from conversations c left join messages m on m.conversation_id = c.id
             where c.id = $1
             group by c.id",
        )
        .bind(id)
        .optional(&self.pool, rows::statistics)
        .await
    }
}
