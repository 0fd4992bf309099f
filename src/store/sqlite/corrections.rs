//! Status corrections on SQLite: the move and its event in one write transaction.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use time::OffsetDateTime;

use super::{SqliteStore, classify, ts};
use crate::domain::Message;
use crate::store::rows::{self, Fetch, MESSAGE_COLUMNS};
use crate::store::{Correction, CorrectionStore, StoreResult};

#[async_trait]
impl CorrectionStore for SqliteStore {
    #[tracing::instrument(skip_all, fields(message_id = %correction.id))]
    async fn correct_status(&self, correction: &Correction<'_>) -> StoreResult<Option<Message>> {
        let now = ts(OffsetDateTime::now_utc())?;
        let id = correction.id.hyphenated().to_string();
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "update messages set
                 status = ?3,
                 sent_at = case when ?3 = 'sent' then coalesce(sent_at, ?4) else sent_at end,
                 delivered_at = case when ?3 = 'delivered' then ?4 else delivered_at end,
                 failed_at = case when ?3 = 'failed' then ?4 when ?3 = 'pending' then null else failed_at end,
                 claimed_at = case when ?3 = 'sending' then ?4 else null end,
                 claim_token = null,
                 next_attempt_at = null,
                 updated_at = ?4
             where id = ?1 and status = ?2
             returning {MESSAGE_COLUMNS}"
        );
        let moved = sqlx::query(AssertSqlSafe(sql))
            .bind(&id)
            .bind(correction.from.as_str())
            .bind(correction.to.as_str())
            .bind(&now)
            .optional(&mut *tx, rows::message)
            .await?;
        if moved.is_some() {
            sqlx::query(
                "insert into message_events (message_id, event, from_status, to_status, detail, created_at)
                 values (?1, 'corrected', ?2, ?3, ?4, ?5)",
            )
            .bind(&id)
            .bind(correction.from.as_str())
            .bind(correction.to.as_str())
            .bind(correction.detail().to_string())
            .bind(&now)
            .run(&mut *tx)
            .await?;
            super::events::record_events(&mut tx, &[correction.id]).await?;
        }
        tx.commit().await.map_err(classify)?;
        Ok(moved)
    }
}
