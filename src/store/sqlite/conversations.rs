//! Conversations on SQLite. Counters are written by the batched message insert (see
//! `messages.rs`); here they are only read, and zeroed when a conversation is marked read.
//! Search uses the FTS5 index `message_text` (see the migration 20261128160000).

use async_trait::async_trait;
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::messages::{MESSAGE_COLUMNS, message_from_row};
use super::{SqliteStore, classify, get_opt_ts, get_ts, get_uuid, parse_enum, ts};
use crate::domain::{
    ChannelFamily, Conversation, ConversationPatch, ConversationStatistics, ConversationStatus,
    Message, NewConversation, SearchQuery,
};
use crate::store::query::{Listing, SearchTerms};
use crate::store::{
    ConversationFilter, ConversationStore, Page, SearchHit, SortOrder, StoreResult,
};

const CONVERSATION_COLUMNS: &str = "id, channel, participant_a, participant_b, status, title, \
     message_count, unread_count, last_message_at, metadata, created_at, updated_at";

fn conversation_from_row(row: &SqliteRow) -> anyhow::Result<Conversation> {
    let metadata: String = row.try_get("metadata")?;
    Ok(Conversation {
        id: get_uuid(row, "id")?,
        channel: parse_enum(row, "channel", ChannelFamily::parse)?,
        participants: [row.try_get("participant_a")?, row.try_get("participant_b")?],
        status: parse_enum(row, "status", ConversationStatus::parse)?,
        title: row.try_get("title")?,
        message_count: row.try_get("message_count")?,
        unread_count: row.try_get("unread_count")?,
        last_message_at: get_opt_ts(row, "last_message_at")?,
        metadata: serde_json::from_str(&metadata)?,
        created_at: get_ts(row, "created_at")?,
        updated_at: get_ts(row, "updated_at")?,
    })
}

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
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
        let (row, created) = match created {
            Some(row) => (row, true),
            None => {
                let sql = format!(
                    "select {CONVERSATION_COLUMNS} from conversations
                     where channel = ?1 and participant_a = ?2 and participant_b = ?3"
                );
                let row = sqlx::query(AssertSqlSafe(sql))
                    .bind(new.channel.as_str())
                    .bind(&new.participants.0)
                    .bind(&new.participants.1)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(classify)?;
                (row, false)
            }
        };
        tx.commit().await.map_err(classify)?;
        Ok((conversation_from_row(&row)?, created))
    }

    async fn get_conversation(&self, id: Uuid) -> StoreResult<Option<Conversation>> {
        let sql = format!("select {CONVERSATION_COLUMNS} from conversations where id = ?1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(classify)?;
        Ok(row.as_ref().map(conversation_from_row).transpose()?)
    }

    async fn list_conversations(
        &self,
        filter: &ConversationFilter,
        page: Page,
    ) -> StoreResult<(Vec<Conversation>, i64)> {
        let listing = Listing::conversations(CONVERSATION_COLUMNS, filter, page);
        self.list(&listing, conversation_from_row).await
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
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .bind(page.limit)
            .bind(page.offset)
            .fetch_all(&self.reader)
            .await
            .map_err(classify)?;
        let messages = rows
            .iter()
            .map(message_from_row)
            .collect::<anyhow::Result<Vec<_>>>()?;
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
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .bind(patch.title.is_some())
            .bind(patch.title.clone().flatten())
            .bind(patch.status.map(ConversationStatus::as_str))
            .bind(Value::Object(metadata).to_string())
            .bind(&now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(row.as_ref().map(conversation_from_row).transpose()?)
    }

    #[tracing::instrument(skip_all, fields(conversation_id = %id))]
    async fn delete_conversation(&self, id: Uuid) -> StoreResult<bool> {
        // Messages and their events go with it (`on delete cascade`), and their search
        // entries with them (trigger `messages_text_delete`).
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("delete from conversations where id = ?1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(done.rows_affected() > 0)
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
        let Some(row) = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .bind(&now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?
        else {
            return Ok(None);
        };
        let marked = sqlx::query(
            "update messages set read_at = ?2, updated_at = ?2
             where conversation_id = ?1 and direction = 'inbound' and read_at is null",
        )
        .bind(id.to_string())
        .bind(&now)
        .execute(&mut *tx)
        .await
        .map_err(classify)?
        .rows_affected();
        tx.commit().await.map_err(classify)?;
        Ok(Some((conversation_from_row(&row)?, marked)))
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
                 from matches t join messages m on m.rowid = t.rowid
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
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(words)
            .bind(terms.address)
            .bind(terms.prefix)
            .bind(limit)
            .fetch_all(&self.reader)
            .await
            .map_err(classify)?;
        rows.iter()
            .map(|row| {
                Ok(SearchHit {
                    conversation: conversation_from_row(row)?,
                    rank: row.try_get("rank")?,
                    matching_messages: row.try_get("hits")?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()
            .map_err(Into::into)
    }

    async fn conversation_statistics(
        &self,
        id: Uuid,
    ) -> StoreResult<Option<ConversationStatistics>> {
        let row = sqlx::query(
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
        .fetch_optional(&self.reader)
        .await
        .map_err(classify)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let stats = (|| -> anyhow::Result<_> {
            Ok(ConversationStatistics {
                conversation_id: get_uuid(&row, "id")?,
                total_messages: row.try_get("total")?,
                inbound: row.try_get("inbound")?,
                outbound: row.try_get("outbound")?,
                failed: row.try_get("failed")?,
                average_seconds_to_sent: row.try_get("avg_to_sent")?,
            })
        })()?;
        Ok(Some(stats))
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
