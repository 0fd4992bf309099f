//! Dead letters on SQLite: the redrive, one write transaction for many messages.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{SqliteStore, classify, id_list, ts};
use crate::domain::Message;
use crate::store::lifecycle::redrive_from;
use crate::store::rows::{self, Fetch, MESSAGE_COLUMNS};
use crate::store::{DeadLetterStore, StoreResult};

#[async_trait]
impl DeadLetterStore for SqliteStore {
    #[tracing::instrument(skip_all, fields(count = ids.len()))]
    async fn redrive(&self, ids: &[Uuid]) -> StoreResult<Vec<Message>> {
        // The lifecycle table decides; the statement's guard follows it.
        let from = redrive_from()?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let now = ts(OffsetDateTime::now_utc())?;
        let list = id_list(ids);
        let mut tx = self.begin_write().await?;
        // The events first, while the previous error is still on the row.
        sqlx::query(
            "insert into message_events (message_id, event, from_status, to_status, detail, created_at)
             select id, 'redriven', 'failed', 'pending', json_object(
                        'previous_retry_count', retry_count,
                        'previous_error_code', error_code,
                        'previous_error_message', error_message),
                    ?3
             from messages
             where id in (select value from json_each(?1)) and status = ?2
             order by id",
        )
        .bind(&list)
        .bind(from.as_str())
        .bind(&now)
        .run(&mut *tx)
        .await?;
        // `enqueued_at` is set because the caller enqueues right away: the sweeper leaves
        // the message alone unless that enqueue is lost.
        let sql = format!(
            "update messages set
                 status = 'pending', retry_count = 0, error_code = null, error_message = null,
                 next_attempt_at = null, failed_at = null, claimed_at = null, claim_token = null,
                 enqueued_at = ?3, updated_at = ?3
             where id in (select value from json_each(?1)) and status = ?2
             returning {MESSAGE_COLUMNS}"
        );
        let mut moved = sqlx::query(AssertSqlSafe(sql))
            .bind(&list)
            .bind(from.as_str())
            .bind(&now)
            .all(&mut *tx, rows::message)
            .await?;
        tx.commit().await.map_err(classify)?;
        moved.sort_by_key(|m| m.id);
        Ok(moved)
    }
}
