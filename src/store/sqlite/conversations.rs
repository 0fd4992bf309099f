//! Conversations on SQLite. Counters are written by the batched message insert (see
//! `messages.rs`); here they are only read, and zeroed when a conversation is marked read.
//! Search uses the FTS5 index `message_text`, keyed on each message's stable search key in
//! `message_search_keys` (see the migrations 20261128160000 and 20261202140000).

use async_trait::async_trait;
use serde_json::Value;
use sqlx::AssertSqlSafe;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{SqliteStore, classify, ts};
use crate::domain::{
    Conversation, ConversationPatch, ConversationStatistics, ConversationStatus, Message,
    NewConversation, SearchQuery,
};
use crate::store::query::{Listing, SQLITE, SearchTerms, by_id};
use crate::store::rows::{self, CONVERSATION_COLUMNS, Fetch, MESSAGE_COLUMNS};
use crate::store::{
    ConversationFilter, ConversationStore, Listed, Page, SearchHit, SortOrder, StoreResult, Window,
};

/// The words of `text` as an FTS5 query requiring all of them, or `None` if it has none.
/// Words are split as the index's `unicode61` tokenizer splits them (on anything that is
/// not a letter or digit), and each is quoted, so no input is ever read as query syntax.
fn fts_query(text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| format!("\"{w}\""))
        .collect();
    (!words.is_empty()).then(|| words.join(" AND "))
}

#[async_trait]
impl ConversationStore for SqliteStore {
    #[tracing::instrument(skip_all)]
    async fn create_conversation(
        &self,
        new: &NewConversation,
    ) -> StoreResult<(Conversation, bool)> {
        let now = ts(OffsetDateTime::now_utc())?;
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "insert into conversations
                 (id, channel, participant_a, participant_b, title, metadata, created_at, updated_at)
             values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
             on conflict (channel, participant_a, participant_b) do nothing
             returning {CONVERSATION_COLUMNS}"
        );
        let created = sqlx::query(AssertSqlSafe(sql))
            .bind(new.id.to_string())
            .bind(new.channel.as_str())
            .bind(&new.participants.0)
            .bind(&new.participants.1)
            .bind(&new.title)
            .bind(new.metadata.to_string())
            .bind(&now)
            .optional(&mut *tx, rows::conversation)
            .await?;
        let (conversation, created) = match created {
            Some(conversation) => (conversation, true),
            None => {
                let sql = format!(
                    "select {CONVERSATION_COLUMNS} from conversations
                     where channel = ?1 and participant_a = ?2 and participant_b = ?3"
                );
                let existing = sqlx::query(AssertSqlSafe(sql))
                    .bind(new.channel.as_str())
                    .bind(&new.participants.0)
                    .bind(&new.participants.1)
                    .one(&mut *tx, rows::conversation)
                    .await?;
                (existing, false)
            }
        };
        tx.commit().await.map_err(classify)?;
        Ok((conversation, created))
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
        let lookup = by_id("conversations", CONVERSATION_COLUMNS, id, SQLITE);
        rows::find(&self.reader, &lookup, rows::conversation).await
    }

    async fn conversation_messages(
        &self,
        id: Uuid,
        order: SortOrder,
        page: Page,
    ) -> StoreResult<Option<(Vec<Message>, i64)>> {
        let total: Option<i64> = sqlx::query_scalar(
            "select (select count(*) from messages m where m.conversation_id = c.id)
             from conversations c where c.id = ?1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.reader)
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
            "select {MESSAGE_COLUMNS} from messages where conversation_id = ?1
             order by created_at {direction}, id {direction} limit ?2 offset ?3"
        );
        let messages = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .bind(page.limit)
            .bind(page.offset)
            .all(&self.reader, rows::message)
            .await?;
        Ok(Some((messages, total)))
    }

    #[tracing::instrument(skip_all, fields(conversation_id = %id))]
    async fn update_conversation(
        &self,
        id: Uuid,
        patch: &ConversationPatch,
    ) -> StoreResult<Option<Conversation>> {
        let now = ts(OffsetDateTime::now_utc())?;
        let mut tx = self.begin_write().await?;
        // The metadata merge (top-level keys set, then removed, as PostgreSQL's
        // `(metadata || set) - remove`) is done here, under the write lock.
        let current: Option<String> =
            sqlx::query_scalar("select metadata from conversations where id = ?1")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(classify)?;
        let Some(current) = current else {
            return Ok(None);
        };
        let mut metadata = match serde_json::from_str::<Value>(&current)
            .map_err(|e| anyhow::anyhow!("metadata column: {e}"))?
        {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        for (k, v) in &patch.metadata_set {
            metadata.insert(k.clone(), v.clone());
        }
        for k in &patch.metadata_remove {
            metadata.remove(k);
        }
        let sql = format!(
            "update conversations set
                 title = case when ?2 then ?3 else title end,
                 status = coalesce(?4, status),
                 metadata = ?5,
                 updated_at = ?6
             where id = ?1
             returning {CONVERSATION_COLUMNS}"
        );
        let updated = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .bind(patch.title.is_some())
            .bind(patch.title.clone().flatten())
            .bind(patch.status.map(ConversationStatus::as_str))
            .bind(Value::Object(metadata).to_string())
            .bind(&now)
            .optional(&mut *tx, rows::conversation)
            .await?;
        tx.commit().await.map_err(classify)?;
        Ok(updated)
    }

    #[tracing::instrument(skip_all, fields(conversation_id = %id))]
    async fn delete_conversation(&self, id: Uuid) -> StoreResult<bool> {
        // Messages and their events go with it (`on delete cascade`), and their search
        // entries with them (trigger `messages_text_delete`).
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query("delete from conversations where id = ?1")
            .bind(id.to_string())
            .run(&mut *tx)
            .await?;
        tx.commit().await.map_err(classify)?;
        Ok(deleted > 0)
    }

    #[tracing::instrument(skip_all, fields(conversation_id = %id))]
    async fn mark_conversation_read(&self, id: Uuid) -> StoreResult<Option<(Conversation, u64)>> {
        let now = ts(OffsetDateTime::now_utc())?;
        // One write transaction: no batch of inbound messages can commit in between, so
        // every message is either marked here or counted unread after.
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "update conversations set unread_count = 0, updated_at = ?2 where id = ?1
             returning {CONVERSATION_COLUMNS}"
        );
        let Some(conversation) = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .bind(&now)
            .optional(&mut *tx, rows::conversation)
            .await?
        else {
            return Ok(None);
        };
        let marked = sqlx::query(
            "update messages set read_at = ?2, updated_at = ?2
             where conversation_id = ?1 and direction = 'inbound' and read_at is null",
        )
        .bind(id.to_string())
        .bind(&now)
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
        // Rank as on PostgreSQL: an exact participant match counts 1, a participant prefix
        // 0.5, and each matching message adds a text rank below 0.1 (higher when BM25 finds
        // the words rarer and denser), so more (and closer) mentions rank higher.
        let terms = SearchTerms::of(query);
        let words = fts_query(terms.words);
        // `materialized`: BM25 can only be computed by the full-text scan itself, not
        // inside the aggregate the query would otherwise be flattened into.
        let matches = if words.is_some() {
            "select rowid, -bm25(message_text) as score from message_text where message_text match ?1"
        } else {
            // Nothing to match in the text (no letters or digits): participants only.
            "select null as rowid, 0.0 as score where ?1 is not null"
        };
        let sql = format!(
            "with matches as materialized ({matches}),
             text_hits as (
                 select m.conversation_id as id,
                        sum(0.05 + 0.05 * t.score / (1.0 + t.score)) as rank,
                        count(*) as hits
                 from matches t
                 join message_search_keys k on k.key = t.rowid
                 join messages m on m.id = k.message_id
                 group by m.conversation_id
             ),
             participant_hits as (
                 select id,
                        case when participant_a = ?2 or participant_b = ?2 then 1.0 else 0.5 end as rank,
                        0 as hits
                 from conversations
                 where participant_a = ?2 or participant_b = ?2
                    or participant_a like ?3 escape '\\' or participant_b like ?3 escape '\\'
             ),
             scored as (
                 select id, sum(rank) as rank, sum(hits) as hits
                 from (select * from text_hits union all select * from participant_hits)
                 group by id
             )
             select {CONVERSATION_COLUMNS}, s.rank as rank, s.hits as hits
             from scored s join conversations c using (id)
             order by s.rank desc, c.last_message_at is null, c.last_message_at desc, c.id
             limit ?4"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(words)
            .bind(terms.address)
            .bind(terms.prefix)
            .bind(limit)
            .all(&self.reader, rows::search_hit)
            .await
    }

    async fn conversation_statistics(
        &self,
        id: Uuid,
    ) -> StoreResult<Option<ConversationStatistics>> {
        sqlx::query(
            "select c.id,
                    count(m.id) as total,
                    count(case when m.direction = 'inbound' then 1 end) as inbound,
                    count(case when m.direction = 'outbound' then 1 end) as outbound,
                    count(case when m.status = 'failed' then 1 end) as failed,
                    avg(case when m.direction = 'outbound' and m.sent_at is not null
                             then (julianday(m.sent_at) - julianday(m.created_at)) * 86400.0 end) as avg_to_sent
             from conversations c left join messages m on m.conversation_id = c.id
             where c.id = ?1
             group by c.id",
        )
        .bind(id.to_string())
        .optional(&self.reader, rows::statistics)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_words_are_quoted_so_no_input_is_query_syntax() {
        assert_eq!(
            fts_query("\"unbalanced & | ! ( :* NEAR"),
            Some("\"unbalanced\" AND \"NEAR\"".to_owned())
        );
        assert_eq!(
            fts_query("+15550000001"),
            Some("\"15550000001\"".to_owned())
        );
        assert_eq!(fts_query(" &| "), None);
    }
}
