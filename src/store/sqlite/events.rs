//! Events to the application on SQLite: the outbox insert, endpoints and deliveries. Every
//! write goes through the single writer, so a claim is a plain conditional update.

use async_trait::async_trait;
use serde_json::Value;
use sqlx::{AssertSqlSafe, SqliteConnection};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{SqliteStore, classify, id_list, ts};
use crate::domain::event::new_event_id;
use crate::store::outbox::{
    self, ATTEMPT_COLUMNS, AttemptRecord, AttemptResult, DueDelivery, ENDPOINT_COLUMNS, Endpoint,
    EndpointPatch, EventStore, FailedDelivery, NewEndpoint, attempt_json, status_map,
};
use crate::store::rows::{self, Fetch};
use crate::store::{Page, StoreResult};

fn now() -> StoreResult<String> {
    Ok(ts(OffsetDateTime::now_utc())?)
}

/// The outbox insert: an event for each of `ids` whose status notifies the application,
/// written only when an enabled endpoint subscribes to its type or the message has a
/// status callback, and fanned out into its deliveries at once. Called inside the
/// transaction that changed the messages.
pub(super) async fn record_events(conn: &mut SqliteConnection, ids: &[Uuid]) -> StoreResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let now = now()?;
    let fresh: Vec<String> = sqlx::query(
        "insert into events (id, type, message_id, status, dispatched, created_at)
         select 'evt_' || lower(hex(randomblob(16))), k.value, m.id, m.status, 1, ?3
         from messages m join json_each(?2) k on k.key = m.status
         where m.id in (select value from json_each(?1))
           and (m.status_callback is not null
                or exists (select 1 from webhook_endpoints e
                           where e.enabled and (e.event_types is null
                                 or exists (select 1 from json_each(e.event_types) j where j.value = k.value))))
         returning id",
    )
    .bind(id_list(ids))
    .bind(status_map())
    .bind(&now)
    .all(&mut *conn, |r| rows::StoredRow::get(r, "id"))
    .await?;
    fan_out(conn, &fresh, &now).await
}

/// The deliveries of these events: one per subscribed enabled endpoint (or the one a
/// `test.ping` names) and one to the message's status callback.
async fn fan_out(conn: &mut SqliteConnection, events: &[String], now: &str) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let list = Value::from(events.to_vec()).to_string();
    sqlx::query(
        "insert into event_deliveries (event_id, endpoint_id, next_attempt_at, created_at, updated_at)
         select p.id, e.id, ?2, ?2, ?2
         from events p join webhook_endpoints e
           on p.endpoint_id = e.id
           or (p.endpoint_id is null and e.enabled
               and (e.event_types is null
                    or exists (select 1 from json_each(e.event_types) j where j.value = p.type)))
         where p.id in (select value from json_each(?1))",
    )
    .bind(&list)
    .bind(now)
    .run(&mut *conn)
    .await?;
    sqlx::query(
        "insert into event_deliveries (event_id, url, next_attempt_at, created_at, updated_at)
         select p.id, m.status_callback, ?2, ?2, ?2
         from events p join messages m on m.id = p.message_id
         where p.id in (select value from json_each(?1)) and m.status_callback is not null",
    )
    .bind(&list)
    .bind(now)
    .run(&mut *conn)
    .await?;
    Ok(())
}

fn types_json(events: &Option<Vec<String>>) -> Option<String> {
    events.as_ref().map(|e| Value::from(e.clone()).to_string())
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn create_endpoint(&self, e: &NewEndpoint) -> StoreResult<Endpoint> {
        let now = now()?;
        let sql = format!(
            "insert into webhook_endpoints (id, url, event_types, description, secret, created_at, updated_at)
             values (?1, ?2, ?3, ?4, ?5, ?6, ?6) returning {ENDPOINT_COLUMNS}"
        );
        let mut tx = self.begin_write().await?;
        let created = sqlx::query(AssertSqlSafe(sql))
            .bind(e.id.to_string())
            .bind(&e.url)
            .bind(types_json(&e.events))
            .bind(&e.description)
            .bind(&e.secret)
            .bind(&now)
            .one(&mut *tx, outbox::endpoint)
            .await?;
        tx.commit().await.map_err(classify)?;
        Ok(created)
    }

    async fn list_endpoints(&self) -> StoreResult<Vec<Endpoint>> {
        let sql =
            format!("select {ENDPOINT_COLUMNS} from webhook_endpoints order by created_at, id");
        sqlx::query(AssertSqlSafe(sql))
            .all(&self.reader, outbox::endpoint)
            .await
    }

    async fn get_endpoint(&self, id: Uuid) -> StoreResult<Option<Endpoint>> {
        let sql = format!("select {ENDPOINT_COLUMNS} from webhook_endpoints where id = ?1");
        sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .optional(&self.reader, outbox::endpoint)
            .await
    }

    async fn update_endpoint(
        &self,
        id: Uuid,
        patch: &EndpointPatch,
    ) -> StoreResult<Option<Endpoint>> {
        let sql = format!(
            "update webhook_endpoints set
                 url = coalesce(?2, url),
                 event_types = case when ?3 then ?4 else event_types end,
                 enabled = coalesce(?5, enabled),
                 disabled_reason = case when ?5 then null else disabled_reason end,
                 failing_since = case when ?5 then null else failing_since end,
                 description = case when ?6 then ?7 else description end,
                 updated_at = ?8
             where id = ?1
             returning {ENDPOINT_COLUMNS}"
        );
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .bind(&patch.url)
            .bind(patch.events.is_some())
            .bind(patch.events.as_ref().and_then(types_json))
            .bind(patch.enabled)
            .bind(patch.description.is_some())
            .bind(patch.description.clone().flatten())
            .bind(now()?)
            .optional(&mut *tx, outbox::endpoint)
            .await?;
        tx.commit().await.map_err(classify)?;
        Ok(updated)
    }

    async fn delete_endpoint(&self, id: Uuid) -> StoreResult<bool> {
        let n = sqlx::query("delete from webhook_endpoints where id = ?1")
            .bind(id.to_string())
            .run(&self.writer)
            .await?;
        Ok(n > 0)
    }

    async fn rotate_secret(
        &self,
        id: Uuid,
        secret: &str,
        previous_until: OffsetDateTime,
    ) -> StoreResult<bool> {
        let n = sqlx::query(
            "update webhook_endpoints set previous_secret = secret, previous_secret_expires_at = ?3,
                 secret = ?2, updated_at = ?4
             where id = ?1",
        )
        .bind(id.to_string())
        .bind(secret)
        .bind(ts(previous_until)?)
        .bind(now()?)
        .run(&self.writer)
        .await?;
        Ok(n > 0)
    }

    async fn endpoint_attempts(
        &self,
        id: Uuid,
        page: Page,
    ) -> StoreResult<(Vec<AttemptRecord>, i64)> {
        let sql = format!(
            "select {ATTEMPT_COLUMNS} from event_attempts where endpoint_id = ?1
             order by id desc limit ?2 offset ?3"
        );
        let attempts = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .bind(page.limit)
            .bind(page.offset)
            .all(&self.reader, outbox::attempt)
            .await?;
        let total = sqlx::query("select count(*) from event_attempts where endpoint_id = ?1")
            .bind(id.to_string())
            .one(&self.reader, rows::total)
            .await?;
        Ok((attempts, total))
    }

    async fn add_test_event(&self, endpoint_id: Uuid, payload: &Value) -> StoreResult<String> {
        let id = new_event_id();
        let now = now()?;
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "insert into events (id, type, endpoint_id, payload, dispatched, created_at)
             values (?1, 'test.ping', ?2, ?3, 1, ?4)",
        )
        .bind(&id)
        .bind(endpoint_id.to_string())
        .bind(payload.to_string())
        .bind(&now)
        .run(&mut *tx)
        .await?;
        fan_out(&mut tx, std::slice::from_ref(&id), &now).await?;
        tx.commit().await.map_err(classify)?;
        Ok(id)
    }

    async fn dispatch_events(&self, limit: i64) -> StoreResult<usize> {
        let now = now()?;
        let mut tx = self.begin_write().await?;
        let picked: Vec<String> =
            sqlx::query("select id from events where dispatched = 0 order by created_at limit ?1")
                .bind(limit)
                .all(&mut *tx, |r| rows::StoredRow::get(r, "id"))
                .await?;
        if picked.is_empty() {
            return Ok(0);
        }
        fan_out(&mut tx, &picked, &now).await?;
        let taken = picked.len();
        sqlx::query(
            "update events set dispatched = 1 where id in (select value from json_each(?1))",
        )
        .bind(Value::from(picked).to_string())
        .run(&mut *tx)
        .await?;
        tx.commit().await.map_err(classify)?;
        Ok(taken)
    }

    async fn claim_deliveries(
        &self,
        limit: i64,
        lease: std::time::Duration,
        busy: &[Uuid],
        per_endpoint: i64,
    ) -> StoreResult<Vec<DueDelivery>> {
        let at = OffsetDateTime::now_utc();
        let now = ts(at)?;
        let mut tx = self.begin_write().await?;
        let claimed: Vec<i64> = sqlx::query(
            "update event_deliveries set attempts = attempts + 1, next_attempt_at = ?2, updated_at = ?1
             where id in (
                 -- At most `per_endpoint` for one endpoint, so none waits long for its turn.
                 select id from (
                     select id, endpoint_id,
                            row_number() over (partition by endpoint_id order by next_attempt_at, id) as n
                     from (select id, endpoint_id, next_attempt_at from event_deliveries
                           where status = 'pending' and next_attempt_at <= ?1
                             and (endpoint_id is null or endpoint_id not in (select value from json_each(?4)))
                           order by next_attempt_at limit ?3))
                 where endpoint_id is null or n <= ?5)
             returning id",
        )
        .bind(&now)
        .bind(ts(at + lease)?)
        .bind(limit)
        .bind(id_list(busy))
        .bind(per_endpoint)
        .all(&mut *tx, rows::StoredRow::first)
        .await?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let due = sqlx::query(
            "select d.id as delivery_id, d.event_id, ev.type, ev.message_id, ev.status,
                    ev.payload, ev.created_at, d.endpoint_id,
                    coalesce(d.url, e.url) as url, e.secret,
                    case when e.previous_secret_expires_at > ?2 then e.previous_secret end as previous_secret,
                    d.attempts, e.enabled
             from event_deliveries d join events ev on ev.id = d.event_id
             left join webhook_endpoints e on e.id = d.endpoint_id
             where d.id in (select value from json_each(?1))",
        )
        .bind(Value::from(claimed).to_string())
        .bind(&now)
        .all(&mut *tx, outbox::due)
        .await?;
        tx.commit().await.map_err(classify)?;
        Ok(due)
    }

    async fn record_attempts(
        &self,
        results: &[AttemptResult],
        disable_before: OffsetDateTime,
    ) -> StoreResult<()> {
        if results.is_empty() {
            return Ok(());
        }
        let now = now()?;
        let input = results
            .iter()
            .map(|r| {
                let next = r.outcome.next_attempt_at().map(ts).transpose()?;
                Ok(attempt_json(r, &now, next))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let input = Value::from(input).to_string();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "update event_deliveries set status = r.status,
                 next_attempt_at = coalesce(r.next_attempt_at, event_deliveries.next_attempt_at),
                 updated_at = ?2
             from (select value ->> 'delivery_id' as delivery_id, value ->> 'status' as status,
                          value ->> 'next_attempt_at' as next_attempt_at
                   from json_each(?1)) as r
             where event_deliveries.id = r.delivery_id",
        )
        .bind(&input)
        .bind(&now)
        .run(&mut *tx)
        .await?;
        sqlx::query(
            "insert into event_attempts (delivery_id, endpoint_id, event_id, event_type, attempt,
                                         status_code, error, duration_ms, attempted_at, next_attempt_at)
             select value ->> 'delivery_id', value ->> 'endpoint_id', value ->> 'event_id',
                    value ->> 'event_type', value ->> 'attempt', value ->> 'status_code',
                    value ->> 'error', value ->> 'duration_ms', ?2, value ->> 'next_attempt_at'
             from json_each(?1)
             -- An endpoint deleted meanwhile took its deliveries with it.
             where exists (select 1 from event_deliveries d where d.id = value ->> 'delivery_id')
             order by key",
        )
        .bind(&input)
        .bind(&now)
        .run(&mut *tx)
        .await?;
        sqlx::query(
            "update events set payload = (select value ->> 'payload' from json_each(?1)
                                          where value ->> 'event_id' = events.id
                                            and value ->> 'payload' is not null limit 1)
             where payload is null
               and id in (select value ->> 'event_id' from json_each(?1)
                          where value ->> 'payload' is not null)",
        )
        .bind(&input)
        .run(&mut *tx)
        .await?;
        sqlx::query(
            "update webhook_endpoints set
                 failing_since = case when r.ok then null else coalesce(failing_since, ?2) end,
                 enabled = enabled and not r.gone,
                 disabled_reason = case when r.gone then 'the endpoint answered 410 Gone' else disabled_reason end,
                 updated_at = case when r.gone then ?2 else updated_at end
             from (select value ->> 'endpoint_id' as endpoint_id, max(value ->> 'ok') as ok,
                          max(value ->> 'gone') as gone
                   from json_each(?1) where value ->> 'endpoint_id' is not null
                   group by value ->> 'endpoint_id') as r
             -- Written only when something changes, so a healthy endpoint's row stays cold.
             where webhook_endpoints.id = r.endpoint_id
               and (r.gone or (r.ok and failing_since is not null)
                    or (not r.ok and failing_since is null))",
        )
        .bind(&input)
        .bind(&now)
        .run(&mut *tx)
        .await?;
        sqlx::query(
            "update webhook_endpoints set enabled = 0, updated_at = ?2,
                 disabled_reason = 'failing without pause since ' || failing_since
             where enabled and failing_since < ?1",
        )
        .bind(ts(disable_before)?)
        .bind(&now)
        .run(&mut *tx)
        .await?;
        tx.commit().await.map_err(classify)
    }

    async fn events_pending(&self) -> StoreResult<i64> {
        sqlx::query(
            "select (select count(*) from event_deliveries where status = 'pending')
                  + (select count(*) from events where dispatched = 0)",
        )
        .one(&self.reader, rows::total)
        .await
    }

    async fn failed_deliveries(&self, page: Page) -> StoreResult<Vec<FailedDelivery>> {
        sqlx::query(
            "select d.id, d.event_id, ev.type, d.endpoint_id, coalesce(d.url, e.url) as url,
                    d.attempts, d.updated_at
             from event_deliveries d join events ev on ev.id = d.event_id
             left join webhook_endpoints e on e.id = d.endpoint_id
             where d.status = 'failed' order by d.id desc limit ?1 offset ?2",
        )
        .bind(page.limit)
        .bind(page.offset)
        .all(&self.reader, outbox::failed)
        .await
    }

    async fn redrive_deliveries(&self, ids: Option<&[i64]>) -> StoreResult<u64> {
        let ids = ids.map(|ids| Value::from(ids.to_vec()).to_string());
        sqlx::query(
            "update event_deliveries set status = 'pending', attempts = 0, next_attempt_at = ?2,
                 updated_at = ?2
             where status = 'failed' and (?1 is null or id in (select value from json_each(?1)))",
        )
        .bind(ids)
        .bind(now()?)
        .run(&self.writer)
        .await
    }
}
