//! Scheduled sends on SQLite: each write is one `begin immediate` transaction guarded by
//! the status it moves from (SQLite has one writer at a time, so that is the whole claim).

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{SqliteStore, classify, id_list, ts};
use crate::domain::Message;
use crate::store::rows::{self, Fetch, MESSAGE_COLUMNS};
use crate::store::schedule::{cancellation, promotion};
use crate::store::{ScheduleStore, StoreResult, Stranded};

#[async_trait]
impl ScheduleStore for SqliteStore {
    #[tracing::instrument(skip_all)]
    async fn promote_due(&self, limit: i64) -> StoreResult<Vec<Stranded>> {
        let (from, to) = promotion()?;
        let now = ts(OffsetDateTime::now_utc())?;
        // A read first, so that a scheduler with nothing due never takes the write lock. The
        // status is written out (not bound) so the partial index applies, and named, as the
        // planner would otherwise take the wider status index and sort every scheduled row.
        let sql = format!(
            "select id, type from messages indexed by messages_scheduled_due_idx
             where status = '{from}' and send_at <= ?1
             order by send_at
             limit ?2"
        );
        let due = sqlx::query(AssertSqlSafe(sql))
            .bind(&now)
            .bind(limit)
            .all(&self.reader, rows::stranded)
            .await?;
        if due.is_empty() {
            return Ok(due);
        }
        let ids: Vec<Uuid> = due.iter().map(|s| s.id).collect();
        let mut tx = self.begin_write().await?;
        let promoted = sqlx::query(
            "update messages set status = ?2, enqueued_at = ?3, updated_at = ?3
             where id in (select value from json_each(?4)) and status = ?1
             returning id, type, send_at",
        )
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(&now)
        .bind(id_list(&ids))
        .all(&mut *tx, rows::stranded)
        .await?;
        let promoted_ids: Vec<Uuid> = promoted.iter().map(|s| s.id).collect();
        sqlx::query(
            "insert into message_events (message_id, event, from_status, to_status, detail, created_at)
             select id, 'status_changed', ?1, ?2, json_object('send_at', send_at), ?3
             from messages where id in (select value from json_each(?4))",
        )
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(&now)
        .bind(id_list(&promoted_ids))
        .run(&mut *tx)
        .await?;
        tx.commit().await.map_err(classify)?;
        // In due order, as read.
        Ok(due
            .into_iter()
            .filter(|s| promoted_ids.contains(&s.id))
            .collect())
    }

    #[tracing::instrument(skip_all, fields(message_id = %id))]
    async fn cancel_scheduled(&self, id: Uuid) -> StoreResult<Option<Message>> {
        let (from, to) = cancellation()?;
        let now = ts(OffsetDateTime::now_utc())?;
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "update messages set status = ?3, updated_at = ?4
             where id = ?1 and status = ?2
             returning {MESSAGE_COLUMNS}"
        );
        let canceled = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .bind(from.as_str())
            .bind(to.as_str())
            .bind(&now)
            .optional(&mut *tx, rows::message)
            .await?;
        if canceled.is_some() {
            sqlx::query(
                "insert into message_events (message_id, event, from_status, to_status, detail, created_at)
                 values (?1, 'status_changed', ?2, ?3, json_object('canceled_by', 'api'), ?4)",
            )
            .bind(id.to_string())
            .bind(from.as_str())
            .bind(to.as_str())
            .bind(&now)
            .run(&mut *tx)
            .await?;
        }
        tx.commit().await.map_err(classify)?;
        Ok(canceled)
    }
}
