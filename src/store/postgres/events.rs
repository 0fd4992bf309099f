//! Events to the application on PostgreSQL: the outbox insert, endpoints, and the
//! deliveries workers claim with `for update skip locked`.

use async_trait::async_trait;
use serde_json::Value;
use sqlx::{AssertSqlSafe, PgConnection};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::{PgStore, classify};
use crate::domain::event::new_event_id;
use crate::store::outbox::{
    self, ATTEMPT_COLUMNS, AttemptRecord, AttemptResult, DueDelivery, Endpoint, EndpointPatch,
    EventStore, FailedDelivery, NewEndpoint, attempt_json, status_map,
};
use crate::store::rows::{self, Fetch};
use crate::store::{Page, StoreResult};

const ENDPOINT_COLUMNS: &str = "id, url, event_types::text as event_types, description, enabled, \
     disabled_reason, created_at, updated_at";

/// The deliveries of the events in the CTE `fresh (id, type, message_id, endpoint_id)`: one
/// per subscribed enabled endpoint (or the one a `test.ping` names) and one to the message's
/// status callback. Two CTEs, to follow `fresh` inside a `with`.
const FAN_OUT: &str = "to_endpoints as (
         insert into event_deliveries (event_id, endpoint_id)
         select p.id, e.id from fresh p join webhook_endpoints e
           on p.endpoint_id = e.id
           or (p.endpoint_id is null and e.enabled
               and (e.event_types is null or jsonb_exists(e.event_types, p.type)))
     ),
     to_callbacks as (
         insert into event_deliveries (event_id, url)
         select p.id, m.status_callback from fresh p join messages m on m.id = p.message_id
         where m.status_callback is not null
     )";

/// The outbox insert as CTEs (`fresh` and its deliveries) to follow a `with`: an event for
/// each row of the CTE `changed (id, status, status_callback)` whose status notifies the
/// application, written only when an enabled endpoint subscribes to its type or the message
/// has a status callback, and fanned out into its deliveries at once. `map` is the
/// parameter holding [`status_map`]. A statement that changes messages can add these to
/// its own (see `record_settlements`), saving a statement and a second read of the rows.
pub(super) fn outbox_of(changed: &str, map: &str) -> String {
    format!(
        "fresh as (
             insert into events (id, type, message_id, status, dispatched, created_at)
             select 'evt_' || replace(gen_random_uuid()::text, '-', ''), k.value, c.id, c.status, true, now()
             from {changed} c join jsonb_each_text({map}::jsonb) k on k.key = c.status
             where c.status_callback is not null
                or exists (select 1 from webhook_endpoints e
                           where e.enabled and (e.event_types is null or jsonb_exists(e.event_types, k.value)))
             returning id, type, message_id, endpoint_id
         ),
         {FAN_OUT}"
    )
}

/// The outbox insert ([`outbox_of`]) for the messages `ids` as they are now. Called inside
/// the transaction that changed them.
pub(super) async fn record_events(conn: &mut PgConnection, ids: &[uuid::Uuid]) -> StoreResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "with changed as (select id, status, status_callback from messages where id = any($1)),
         {}
         select count(*) from fresh",
        outbox_of("changed", "$2")
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(ids)
        .bind(status_map())
        .run(conn)
        .await?;
    Ok(())
}

fn types_json(events: &Option<Vec<String>>) -> Option<String> {
    events.as_ref().map(|e| Value::from(e.clone()).to_string())
}

fn rfc3339(at: Option<OffsetDateTime>) -> StoreResult<Option<String>> {
    Ok(at
        .map(|t| t.format(&Rfc3339))
        .transpose()
        .map_err(anyhow::Error::from)?)
}

#[async_trait]
impl EventStore for PgStore {
    async fn create_endpoint(&self, e: &NewEndpoint) -> StoreResult<Endpoint> {
        let sql = format!(
            "insert into webhook_endpoints (id, url, event_types, description, secret)
             values ($1, $2, $3::jsonb, $4, $5) returning {ENDPOINT_COLUMNS}"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(e.id)
            .bind(&e.url)
            .bind(types_json(&e.events))
            .bind(&e.description)
            .bind(&e.secret)
            .one(&self.pool, outbox::endpoint)
            .await
    }

    async fn list_endpoints(&self) -> StoreResult<Vec<Endpoint>> {
        let sql =
            format!("select {ENDPOINT_COLUMNS} from webhook_endpoints order by created_at, id");
        sqlx::query(AssertSqlSafe(sql))
            .all(&self.pool, outbox::endpoint)
            .await
    }

    async fn get_endpoint(&self, id: Uuid) -> StoreResult<Option<Endpoint>> {
        let sql = format!("select {ENDPOINT_COLUMNS} from webhook_endpoints where id = $1");
        sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .optional(&self.pool, outbox::endpoint)
            .await
    }

    async fn update_endpoint(
        &self,
        id: Uuid,
        patch: &EndpointPatch,
    ) -> StoreResult<Option<Endpoint>> {
        let sql = format!(
            "update webhook_endpoints set
                 url = coalesce($2, url),
                 event_types = case when $3 then $4::jsonb else event_types end,
                 enabled = coalesce($5, enabled),
                 disabled_reason = case when $5 then null else disabled_reason end,
                 failing_since = case when $5 then null else failing_since end,
                 description = case when $6 then $7 else description end,
                 updated_at = now()
             where id = $1
             returning {ENDPOINT_COLUMNS}"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .bind(&patch.url)
            .bind(patch.events.is_some())
            .bind(patch.events.as_ref().and_then(types_json))
            .bind(patch.enabled)
            .bind(patch.description.is_some())
            .bind(patch.description.clone().flatten())
            .optional(&self.pool, outbox::endpoint)
            .await
    }

    async fn delete_endpoint(&self, id: Uuid) -> StoreResult<bool> {
        // Its deliveries first, then the endpoint: the order a worker recording attempts
        // locks them in, so the two cannot deadlock (the cascade alone locks the other way).
        let mut tx = self.pool.begin().await.map_err(classify)?;
        sqlx::query("delete from event_deliveries where endpoint_id = $1")
            .bind(id)
            .run(&mut *tx)
            .await?;
        let n = sqlx::query("delete from webhook_endpoints where id = $1")
            .bind(id)
            .run(&mut *tx)
            .await?;
        tx.commit().await.map_err(classify)?;
        Ok(n > 0)
    }

    async fn rotate_secret(
        &self,
        id: Uuid,
        secret: &str,
        previous_until: OffsetDateTime,
    ) -> StoreResult<bool> {
        let n = sqlx::query(
            "update webhook_endpoints set previous_secret = secret, previous_secret_expires_at = $3,
                 secret = $2, updated_at = now()
             where id = $1",
        )
        .bind(id)
        .bind(secret)
        .bind(previous_until)
        .run(&self.pool)
        .await?;
        Ok(n > 0)
    }

    async fn endpoint_attempts(
        &self,
        id: Uuid,
        page: Page,
    ) -> StoreResult<(Vec<AttemptRecord>, i64)> {
        let sql = format!(
            "select {ATTEMPT_COLUMNS} from event_attempts where endpoint_id = $1
             order by id desc limit $2 offset $3"
        );
        let attempts = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .bind(page.limit)
            .bind(page.offset)
            .all(&self.pool, outbox::attempt)
            .await?;
        let total = sqlx::query("select count(*) from event_attempts where endpoint_id = $1")
            .bind(id)
            .one(&self.pool, rows::total)
            .await?;
        Ok((attempts, total))
    }

    async fn add_test_event(&self, endpoint_id: Uuid, payload: &Value) -> StoreResult<String> {
        let id = new_event_id();
        let sql = format!(
            "with fresh as (
                 insert into events (id, type, endpoint_id, payload, dispatched)
                 values ($1, 'test.ping', $2, $3::jsonb, true)
                 returning id, type, message_id, endpoint_id
             ),
             {FAN_OUT}
             select count(*) from fresh"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(&id)
            .bind(endpoint_id)
            .bind(payload.to_string())
            .run(&self.pool)
            .await?;
        Ok(id)
    }

    async fn dispatch_events(&self, limit: i64) -> StoreResult<usize> {
        // Usually there are none: the look costs an index probe, where the fan-out
        // statement's plan (built for the rows it expects) could read every message.
        let waiting = sqlx::query("select exists (select 1 from events where not dispatched)")
            .one(&self.pool, |r| rows::StoredRow::get::<bool>(r, "exists"))
            .await?;
        if !waiting {
            return Ok(0);
        }
        let sql = format!(
            "with fresh as (
                 select id, type, message_id, endpoint_id from events
                 where not dispatched order by created_at limit $1
                 for update skip locked
             ),
             {FAN_OUT}
             update events set dispatched = true where id in (select id from fresh)"
        );
        let n = sqlx::query(AssertSqlSafe(sql))
            .bind(limit)
            .run(&self.pool)
            .await?;
        Ok(n as usize)
    }

    async fn claim_deliveries(
        &self,
        limit: i64,
        lease: std::time::Duration,
        busy: &[Uuid],
        per_endpoint: i64,
    ) -> StoreResult<Vec<DueDelivery>> {
        sqlx::query(
            "with candidates as (
                 select id, endpoint_id, next_attempt_at from event_deliveries
                 where status = 'pending' and next_attempt_at <= now()
                   and (endpoint_id is null or not (endpoint_id = any($3)))
                 order by next_attempt_at limit $1
                 for update skip locked
             ),
             -- At most `per_endpoint` for one endpoint, so none waits long for its turn.
             due as (
                 select id from (
                     select id, endpoint_id,
                            row_number() over (partition by endpoint_id order by next_attempt_at, id) as n
                     from candidates) r
                 where endpoint_id is null or n <= $4
             ),
             claimed as (
                 update event_deliveries d set attempts = d.attempts + 1,
                     next_attempt_at = now() + make_interval(secs => $2), updated_at = now()
                 from due where d.id = due.id
                 returning d.id, d.event_id, d.endpoint_id, d.url, d.attempts
             )
             select c.id as delivery_id, c.event_id, ev.type, ev.message_id, ev.status,
                    ev.payload::text as payload, ev.created_at, c.endpoint_id,
                    coalesce(c.url, e.url) as url, e.secret,
                    case when e.previous_secret_expires_at > now() then e.previous_secret end as previous_secret,
                    c.attempts, e.enabled
             from claimed c join events ev on ev.id = c.event_id
             left join webhook_endpoints e on e.id = c.endpoint_id",
        )
        .bind(limit)
        .bind(lease.as_secs_f64())
        .bind(busy)
        .bind(per_endpoint)
        .all(&self.pool, outbox::due)
        .await
    }

    async fn record_attempts(
        &self,
        results: &[AttemptResult],
        disable_before: OffsetDateTime,
    ) -> StoreResult<()> {
        if results.is_empty() {
            return Ok(());
        }
        let input = results
            .iter()
            .map(|r| Ok(attempt_json(r, "", rfc3339(r.outcome.next_attempt_at())?)))
            .collect::<StoreResult<Vec<_>>>()?;
        let input = Value::from(input).to_string();
        let mut tx = self.pool.begin().await.map_err(classify)?;
        sqlx::query(
            "update event_deliveries d set status = r.status,
                 next_attempt_at = coalesce(r.next_attempt_at, d.next_attempt_at), updated_at = now()
             from jsonb_to_recordset($1::jsonb) as r(delivery_id int8, status text, next_attempt_at timestamptz)
             where d.id = r.delivery_id",
        )
        .bind(&input)
        .run(&mut *tx)
        .await?;
        sqlx::query(
            "insert into event_attempts (delivery_id, endpoint_id, event_id, event_type, attempt,
                                         status_code, error, duration_ms, next_attempt_at)
             select delivery_id, endpoint_id, event_id, event_type, attempt, status_code, error,
                    duration_ms, next_attempt_at
             from jsonb_to_recordset($1::jsonb) as r(delivery_id int8, endpoint_id uuid, event_id text,
                  event_type text, attempt int4, status_code int4, error text, duration_ms int8,
                  next_attempt_at timestamptz)
             -- An endpoint deleted meanwhile took its deliveries with it.
             where exists (select 1 from event_deliveries d where d.id = r.delivery_id)",
        )
        .bind(&input)
        .run(&mut *tx)
        .await?;
        sqlx::query(
            "update events ev set payload = r.payload::jsonb
             from (select distinct on (event_id) event_id, payload
                   from jsonb_to_recordset($1::jsonb) as r(event_id text, payload text)
                   where payload is not null) r
             where ev.id = r.event_id and ev.payload is null",
        )
        .bind(&input)
        .run(&mut *tx)
        .await?;
        sqlx::query(
            "update webhook_endpoints e set
                 failing_since = case when r.ok then null else coalesce(e.failing_since, now()) end,
                 enabled = e.enabled and not r.gone,
                 disabled_reason = case when r.gone then 'the endpoint answered 410 Gone' else e.disabled_reason end,
                 updated_at = case when r.gone then now() else e.updated_at end
             from (select endpoint_id, bool_or(ok) as ok, bool_or(gone) as gone
                   from jsonb_to_recordset($1::jsonb) as r(endpoint_id uuid, ok bool, gone bool)
                   where endpoint_id is not null group by endpoint_id) r
             -- Written only when something changes, so a healthy endpoint's row stays cold.
             where e.id = r.endpoint_id
               and (r.gone or (r.ok and e.failing_since is not null)
                    or (not r.ok and e.failing_since is null))",
        )
        .bind(&input)
        .run(&mut *tx)
        .await?;
        sqlx::query(
            "update webhook_endpoints set enabled = false, updated_at = now(),
                 disabled_reason = 'failing without pause since ' || to_char(failing_since at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
             where enabled and failing_since < $1",
        )
        .bind(disable_before)
        .run(&mut *tx)
        .await?;
        tx.commit().await.map_err(classify)
    }

    async fn events_pending(&self) -> StoreResult<i64> {
        sqlx::query(
            "select (select count(*) from event_deliveries where status = 'pending')
                  + (select count(*) from events where not dispatched)",
        )
        .one(&self.pool, rows::total)
        .await
    }

    async fn failed_deliveries(&self, page: Page) -> StoreResult<Vec<FailedDelivery>> {
        sqlx::query(
            "select d.id, d.event_id, ev.type, d.endpoint_id, coalesce(d.url, e.url) as url,
                    d.attempts, d.updated_at
             from event_deliveries d join events ev on ev.id = d.event_id
             left join webhook_endpoints e on e.id = d.endpoint_id
             where d.status = 'failed' order by d.id desc limit $1 offset $2",
        )
        .bind(page.limit)
        .bind(page.offset)
        .all(&self.pool, outbox::failed)
        .await
    }

    async fn redrive_deliveries(&self, ids: Option<&[i64]>) -> StoreResult<u64> {
        sqlx::query(
            "update event_deliveries set status = 'pending', attempts = 0, next_attempt_at = now(),
                 updated_at = now()
             where status = 'failed' and ($1::int8[] is null or id = any($1))",
        )
        .bind(ids)
        .run(&self.pool)
        .await
    }
}
