//! Status corrections on PostgreSQL: one statement moves the message and records the
//! history event; the application's event (if any) is written in the same transaction.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;

use super::{PgStore, classify};
use crate::domain::Message;
use crate::store::rows::{self, Fetch, MESSAGE_COLUMNS};
use crate::store::{Correction, CorrectionStore, StoreResult};

#[async_trait]
impl CorrectionStore for PgStore {
    #[tracing::instrument(skip_all, fields(message_id = %correction.id))]
    async fn correct_status(&self, correction: &Correction<'_>) -> StoreResult<Option<Message>> {
        let sql = format!(
            "with moved as (
                 update messages set
                     status = $3,
                     sent_at = case when $3 = 'sent' then coalesce(sent_at, now()) else sent_at end,
                     delivered_at = case when $3 = 'delivered' then now() else delivered_at end,
                     failed_at = case when $3 = 'failed' then now() when $3 = 'pending' then null else failed_at end,
                     claimed_at = case when $3 = 'sending' then now() else null end,
                     claim_token = null,
                     next_attempt_at = null,
                     updated_at = now()
                 where id = $1 and status = $2
                 returning *
             ),
             events as (
                 insert into message_events (message_id, event, from_status, to_status, detail)
                 select id, 'corrected', $2, $3, $4 from moved
             )
             select {MESSAGE_COLUMNS} from moved"
        );
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let moved = sqlx::query(AssertSqlSafe(sql))
            .bind(correction.id)
            .bind(correction.from.as_str())
            .bind(correction.to.as_str())
            .bind(correction.detail())
            .optional(&mut *tx, rows::message)
            .await?;
        if moved.is_some() {
            super::events::record_events(&mut tx, &[correction.id]).await?;
        }
        tx.commit().await.map_err(classify)?;
        Ok(moved)
    }
}
