//! Dead letters on PostgreSQL: the redrive statement (one round trip for many messages).

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::messages::{MESSAGE_COLUMNS, message_from_row};
use super::{PgStore, classify, from_rows};
use crate::domain::Message;
use crate::store::lifecycle::redrive_from;
use crate::store::{DeadLetterStore, StoreResult};

#[async_trait]
impl DeadLetterStore for PgStore {
    #[tracing::instrument(skip_all, fields(count = ids.len()))]
    async fn redrive(&self, ids: &[Uuid]) -> StoreResult<Vec<Message>> {
        // The lifecycle table decides; the statement's guard follows it.
        let from = redrive_from()?;
        // `enqueued_at` is set because the caller enqueues right away: the sweeper leaves
        // the message alone unless that enqueue is lost.
        let sql = format!(
            "with target as (
                 select id, error_code, error_message, retry_count from messages
                 where id = any($1) and status = $2
                 order by id
                 for update
             ),
             moved as (
                 update messages m set
                     status = 'pending', retry_count = 0, error_code = null, error_message = null,
                     next_attempt_at = null, failed_at = null, claimed_at = null, claim_token = null,
                     enqueued_at = now(), updated_at = now()
                 from target t
                 where m.id = t.id
                 returning m.*
             ),
             events as (
                 insert into message_events (message_id, event, from_status, to_status, detail)
                 select t.id, 'redriven', 'failed', 'pending', jsonb_strip_nulls(jsonb_build_object(
                     'previous_error_code', t.error_code,
                     'previous_error_message', t.error_message,
                     'previous_retry_count', t.retry_count))
                 from target t
             )
             select {MESSAGE_COLUMNS} from moved"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(ids)
            .bind(from.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        from_rows(&rows, message_from_row)
    }
}
