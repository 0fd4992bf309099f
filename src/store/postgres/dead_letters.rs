//! Dead letters on PostgreSQL: the redrive statement (one round trip for many messages).

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::PgStore;
use crate::domain::Message;
use crate::store::lifecycle::redrive_from;
use crate::store::rows::{self, Fetch, MESSAGE_COLUMNS};
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
        sqlx::query(AssertSqlSafe(sql))
            .bind(ids)
            .bind(from.as_str())
            .all(&self.pool, rows::message)
            .await
    }
}
