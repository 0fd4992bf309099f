//! Scheduled sends on PostgreSQL: promotion claims due rows with `for update skip locked`,
//! so concurrent schedulers share the due messages instead of waiting on each other, and
//! every write is guarded by the status it moves from.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::PgStore;
use crate::domain::Message;
use crate::store::rows::{self, Fetch, MESSAGE_COLUMNS};
use crate::store::schedule::{cancellation, promotion};
use crate::store::{ScheduleStore, StoreResult, Stranded};

#[async_trait]
impl ScheduleStore for PgStore {
    #[tracing::instrument(skip_all)]
    async fn promote_due(&self, limit: i64) -> StoreResult<Vec<Stranded>> {
        let (from, to) = promotion()?;
        // The status is written out (not bound) so that every plan, generic ones included,
        // can use the partial index messages_scheduled_due_idx: only scheduled rows, by due time.
        let sql = format!(
            "with due as (
                 select id from messages
                 where status = '{from}' and send_at <= now()
                 order by send_at
                 limit $3
                 for update skip locked
             ),
             promoted as (
                 update messages m
                 set status = $2, enqueued_at = now(), updated_at = now()
                 from due where m.id = due.id and m.status = $1
                 returning m.id, m.type, m.send_at
             ),
             events as (
                 insert into message_events (message_id, event, from_status, to_status, detail)
                 select id, 'status_changed', $1, $2, jsonb_build_object('send_at', send_at)
                 from promoted
             )
             select id, type from promoted order by send_at, id"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(from.as_str())
            .bind(to.as_str())
            .bind(limit)
            .all(&self.pool, rows::stranded)
            .await
    }

    #[tracing::instrument(skip_all, fields(message_id = %id))]
    async fn cancel_scheduled(&self, id: Uuid) -> StoreResult<Option<Message>> {
        let (from, to) = cancellation()?;
        let sql = format!(
            "with canceled as (
                 update messages set status = $3, updated_at = now()
                 where id = $1 and status = $2
                 returning *
             ),
             events as (
                 insert into message_events (message_id, event, from_status, to_status, detail)
                 select id, 'status_changed', $2, $3, jsonb_build_object('canceled_by', 'api')
                 from canceled
             )
             select {MESSAGE_COLUMNS} from canceled"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .bind(from.as_str())
            .bind(to.as_str())
            .optional(&self.pool, rows::message)
            .await
    }
}
