//! Messages on SQLite: group-committed inserts, listing, and the worker's claim and outcome
//! statements. Every write is one `begin immediate` transaction covering a whole batch;
//! lists of ids travel as one JSON array parameter (`json_each`), multi-row inserts as
//! `values (...), (...)`.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use sqlx::{AssertSqlSafe, QueryBuilder, Sqlite};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{SqliteStore, classify, id_list, ts};
use crate::domain::{Message, MessageEvent, MessageStatus, NewMessage};
use crate::store::audit;
use crate::store::batch::{BatchPlan, ConversationKey, DedupeKey, LookupKeys, existing_of};
use crate::store::lifecycle::{claim_detail, claimable_statuses, plan_outcomes};
use crate::store::query::{Listing, SQLITE, by_id};
use crate::store::rows::{self, EVENT_COLUMNS, Fetch, MESSAGE_COLUMNS, StoredRow};
use crate::store::{
    Claim, Inserted, Listed, MessageFilter, MessageStore, Settlement, StoreError, StoreResult,
    Stranded, SweepQuery, Waiting, Window,
};

/// Rows per multi-row insert: well under SQLite's limit of 32766 bound parameters.
const ROWS_PER_INSERT: usize = 500;

/// The columns of one message row that are not borrowed from the message as they are:
/// ids and instants as text, attachments and metadata as their JSON text.
struct MessageText<'a> {
    message: &'a NewMessage,
    id: String,
    conversation_id: String,
    attachments: String,
    metadata: String,
    provider_timestamp: Option<String>,
    send_at: Option<String>,
    created_at: String,
}

impl<'a> MessageText<'a> {
    fn of(m: &'a NewMessage, conversation_id: Uuid) -> anyhow::Result<Self> {
        Ok(Self {
            message: m,
            id: m.id.to_string(),
            conversation_id: conversation_id.to_string(),
            attachments: serde_json::to_string(&m.attachments)?,
            metadata: serde_json::to_string(&m.metadata)?,
            provider_timestamp: m.provider_timestamp.map(ts).transpose()?,
            send_at: m.send_at.map(ts).transpose()?,
            created_at: ts(m.created_at)?,
        })
    }
}

/// One row of the message_events insert.
struct EventRow {
    message_id: String,
    from_status: Option<&'static str>,
    to_status: &'static str,
    detail: String,
}

async fn insert_events(
    tx: &mut sqlx::SqliteConnection,
    event: &str,
    rows: &[EventRow],
    at: &str,
) -> StoreResult<()> {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "insert into message_events (message_id, event, from_status, to_status, detail, created_at) ",
        );
        q.push_values(chunk, |mut b, r| {
            b.push_bind(r.message_id.clone())
                .push_bind(event.to_owned())
                .push_bind(r.from_status)
                .push_bind(r.to_status)
                .push_bind(r.detail.clone())
                .push_bind(at.to_owned());
        });
        q.build().run(&mut *tx).await?;
    }
    Ok(())
}

impl SqliteStore {
    async fn insert_batch(&self, batch: &[NewMessage]) -> StoreResult<Vec<Inserted>> {
        let now = ts(OffsetDateTime::now_utc())?;
        let mut tx = self.begin_write().await?;

        // Idempotency keys and inbound provider ids already used by stored messages. The
        // write lock is held from the first statement, so nothing can claim one between this
        // read and the insert.
        let dedupe: Vec<Option<DedupeKey>> = batch.iter().map(DedupeKey::of_new).collect();
        let keys = LookupKeys::of(&dedupe);
        let mut found = Vec::new();
        if !keys.is_empty() {
            let sql = format!(
                "select {MESSAGE_COLUMNS}, request_hash from messages
                 where idempotency_key in (select value from json_each(?1))
                 union all
                 select {MESSAGE_COLUMNS}, request_hash from messages
                 where direction = 'inbound' and provider_message_id is not null
                   and (provider, provider_message_id) in
                       (select value ->> 0, value ->> 1 from json_each(?2))"
            );
            found = sqlx::query(AssertSqlSafe(sql))
                .bind(serde_json::to_string(&keys.idempotency).context("encoding keys")?)
                .bind(serde_json::to_string(&keys.inbound).context("encoding provider ids")?)
                .all(&mut *tx, rows::message_and_hash)
                .await?;
        }
        let existing = existing_of(found);

        let plan = BatchPlan::new(batch, dedupe, &existing);
        let mut conversation_ids: HashMap<ConversationKey, Uuid> = HashMap::new();
        for chunk in plan.conversation_rows().chunks(ROWS_PER_INSERT) {
            let mut rows = Vec::with_capacity(chunk.len());
            for c in chunk {
                let (family, a, b) = &c.key;
                rows.push((
                    c.id.to_string(),
                    family.as_str(),
                    a.clone(),
                    b.clone(),
                    c.messages,
                    c.unread,
                    ts(c.last_message_at)?,
                ));
            }
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "insert into conversations
                     (id, channel, participant_a, participant_b, message_count, unread_count,
                      last_message_at, created_at, updated_at) ",
            );
            q.push_values(&rows, |mut b, r| {
                b.push_bind(r.0.clone())
                    .push_bind(r.1)
                    .push_bind(r.2.clone())
                    .push_bind(r.3.clone())
                    .push_bind(r.4)
                    .push_bind(r.5)
                    .push_bind(r.6.clone())
                    .push_bind(now.clone())
                    .push_bind(now.clone());
            });
            // An inbound message re-opens an archived conversation.
            q.push(
                " on conflict (channel, participant_a, participant_b) do update set
                     message_count = conversations.message_count + excluded.message_count,
                     unread_count = conversations.unread_count + excluded.unread_count,
                     last_message_at = max(coalesce(conversations.last_message_at, ''), excluded.last_message_at),
                     status = case when excluded.unread_count > 0 and conversations.status = 'archived'
                                   then 'active' else conversations.status end,
                     updated_at = excluded.updated_at
                 returning id, channel, participant_a, participant_b",
            );
            let upserted = q.build().all(&mut *tx, rows::conversation_key).await?;
            conversation_ids.extend(upserted);
        }

        let (placed, conversation_of) = plan.placed(batch, &conversation_ids)?;
        if !placed.is_empty() {
            let rows = placed
                .into_iter()
                .map(|(m, conversation_id)| MessageText::of(m, conversation_id))
                .collect::<anyhow::Result<Vec<_>>>()?;
            // Bound values, not a JSON document: SQLite would parse the document once per
            // column read from it.
            for chunk in rows.chunks(ROWS_PER_INSERT / 2) {
                let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                    "insert into messages
                         (id, conversation_id, direction, type, from_address, to_address, body,
                          subject, attachments, status, metadata, idempotency_key, request_hash,
                          provider, provider_message_id, provider_timestamp, send_at, created_at,
                          updated_at, status_callback) ",
                );
                q.push_values(chunk, |mut b, r| {
                    let m = r.message;
                    b.push_bind(r.id.as_str())
                        .push_bind(r.conversation_id.as_str())
                        .push_bind(m.direction.as_str())
                        .push_bind(m.kind.as_str())
                        .push_bind(m.from.as_str())
                        .push_bind(m.to.as_str())
                        .push_bind(m.body.as_deref())
                        .push_bind(m.subject.as_deref())
                        .push_bind(r.attachments.as_str())
                        .push_bind(m.status.as_str())
                        .push_bind(r.metadata.as_str())
                        .push_bind(m.idempotency_key.as_deref())
                        .push_bind(m.request_hash.as_deref())
                        .push_bind(m.provider.as_deref())
                        .push_bind(m.provider_message_id.as_deref())
                        .push_bind(r.provider_timestamp.as_deref())
                        .push_bind(r.send_at.as_deref())
                        .push_bind(r.created_at.as_str())
                        .push_bind(r.created_at.as_str())
                        .push_bind(m.status_callback.as_deref());
                });
                q.build().run(&mut *tx).await?;
            }
            // No `created` event row: the message row records its creation (see `audit`).
            super::events::record_events(&mut tx, &crate::store::outbox::notifying(batch)).await?;
        }
        // Opt-out and opt-in keywords take effect with the message that carries them.
        let keywords = crate::store::suppressions::keyword_changes(batch, &plan.fresh);
        super::suppressions::apply_keywords(&mut tx, &keywords, &now).await?;
        tx.commit().await.map_err(classify)?;

        plan.results(batch, &existing, &conversation_of)
            .map_err(StoreError::Other)
    }
}

#[async_trait]
impl MessageStore for SqliteStore {
    #[tracing::instrument(skip_all, fields(batch = batch.len()))]
    async fn insert_messages(&self, batch: &[NewMessage]) -> StoreResult<Vec<Inserted>> {
        self.insert_batch(batch).await
    }

    async fn get_message(&self, id: Uuid) -> StoreResult<Option<Message>> {
        let lookup = by_id("messages", MESSAGE_COLUMNS, id, SQLITE);
        rows::find(&self.reader, &lookup, rows::message).await
    }

    async fn get_messages(&self, ids: &[Uuid]) -> StoreResult<Vec<Message>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "select {MESSAGE_COLUMNS} from messages where id in (select value from json_each(?1))"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(id_list(ids))
            .all(&self.reader, rows::message)
            .await
    }

    async fn page_messages(
        &self,
        filter: &MessageFilter,
        window: Window,
    ) -> StoreResult<Listed<Message>> {
        self.list(
            &Listing::messages(MESSAGE_COLUMNS, filter, window),
            rows::message,
        )
        .await
    }

    async fn message_events(&self, id: Uuid) -> StoreResult<Vec<MessageEvent>> {
        // The message first, then its rows: see `audit::with_creation`.
        let message = self.get_message(id).await?;
        let sql =
            format!("select {EVENT_COLUMNS} from message_events where message_id = ?1 order by id");
        let events = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .all(&self.reader, rows::event)
            .await?;
        Ok(audit::with_creation(message.as_ref(), events))
    }

    #[tracing::instrument(skip_all, fields(count = ids.len()))]
    async fn claim(&self, ids: &[Uuid], lease: Duration) -> StoreResult<Claim> {
        let token = Uuid::now_v7();
        if ids.is_empty() {
            return Ok(Claim::of_rows(token, Vec::new()));
        }
        // SQLite has no server: its clock is this machine's, the one every process using the
        // file shares.
        let at = OffsetDateTime::now_utc();
        let now = ts(at)?;
        let lease_until = ts(at + lease)?;
        let stale_before = ts(at - lease)?;
        let mut tx = self.begin_write().await?;
        let targets = sqlx::query(
            "select id, status, claimed_at from messages
             where id in (select value from json_each(?1))
               and status in (select value from json_each(?2))
               and (status = 'pending'
                    or (status = 'retry' and (next_attempt_at is null or next_attempt_at <= ?3))
                    or (status = 'sending'
                        and (lease_until <= ?3 or (lease_until is null and claimed_at <= ?4))))
             order by id",
        )
        .bind(id_list(ids))
        .bind(serde_json::to_string(&claimable_statuses()).context("encoding statuses")?)
        .bind(&now)
        .bind(&stale_before)
        .all(&mut *tx, |row| {
            Ok((
                rows::id(row)?,
                row.named("status", MessageStatus::parse)?,
                row.opt_instant("claimed_at")?,
            ))
        })
        .await?;
        if targets.is_empty() {
            tx.rollback().await.map_err(classify)?;
            return Ok(Claim::of_rows(token, Vec::new()));
        }
        let mut events = Vec::with_capacity(targets.len());
        let mut claimed = Vec::with_capacity(targets.len());
        let mut previous = HashMap::new();
        for (id, old, claimed_at) in targets {
            claimed.push(id);
            if old == MessageStatus::Sending {
                previous.insert(id, claimed_at);
            }
            events.push(EventRow {
                message_id: id.to_string(),
                from_status: Some(old.as_str()),
                to_status: MessageStatus::Sending.as_str(),
                detail: claim_detail(old).to_string(),
            });
        }
        let claimed_list = id_list(&claimed);
        sqlx::query(
            "update messages
             set status = 'sending', claimed_at = ?1, claim_token = ?2, next_attempt_at = null, updated_at = ?1,
                 lease_until = ?4, deliveries = deliveries + 1
             where id in (select value from json_each(?3))",
        )
        .bind(&now)
        .bind(token.to_string())
        .bind(&claimed_list)
        .bind(&lease_until)
        .run(&mut *tx)
        .await?;
        insert_events(&mut tx, "status_changed", &events, &now).await?;
        let sql = format!(
            "select {MESSAGE_COLUMNS}, deliveries, null as previous_claimed_at
             from messages where id in (select value from json_each(?1)) order by id"
        );
        let mut rows = sqlx::query(AssertSqlSafe(sql))
            .bind(&claimed_list)
            .all(&mut *tx, rows::claimed)
            .await?;
        tx.commit().await.map_err(classify)?;
        for row in &mut rows {
            row.previous_claim = previous.get(&row.message.id).copied().flatten();
        }
        Ok(Claim::of_rows(token, rows))
    }

    async fn expire_leases(&self) -> StoreResult<u64> {
        let now = ts(OffsetDateTime::now_utc())?;
        let mut tx = self.begin_write().await?;
        let expired = sqlx::query("update messages set lease_until = ?1 where status = 'sending'")
            .bind(&now)
            .run(&mut *tx)
            .await?;
        tx.commit().await.map_err(classify)?;
        Ok(expired)
    }

    async fn renew_leases(&self, tokens: &[Uuid], lease: Duration) -> StoreResult<u64> {
        if tokens.is_empty() {
            return Ok(0);
        }
        let lease_until = ts(OffsetDateTime::now_utc() + lease)?;
        let mut tx = self.begin_write().await?;
        let renewed = sqlx::query(
            "update messages set lease_until = ?2
             where claim_token in (select value from json_each(?1)) and status = 'sending'",
        )
        .bind(id_list(tokens))
        .bind(&lease_until)
        .run(&mut *tx)
        .await?;
        tx.commit().await.map_err(classify)?;
        Ok(renewed)
    }

    async fn unclaimed(&self, ids: &[Uuid]) -> StoreResult<Vec<(Uuid, Waiting)>> {
        sqlx::query(
            "select id, case when status = 'retry' then next_attempt_at end as due_at
             from messages
             where id in (select value from json_each(?1))
               and (status = 'sending' or (status = 'retry' and next_attempt_at > ?2))",
        )
        .bind(id_list(ids))
        .bind(ts(OffsetDateTime::now_utc())?)
        .all(&self.reader, rows::waiting)
        .await
    }

    #[tracing::instrument(skip_all, fields(claims = settlements.len()))]
    async fn record_settlements(&self, settlements: &[Settlement]) -> StoreResult<Vec<Uuid>> {
        let planned = plan_outcomes(settlements)?;
        if planned.is_empty() {
            return Ok(Vec::new());
        }
        let texts = planned
            .iter()
            .map(|r| {
                Ok((
                    r.id.to_string(),
                    r.token.to_string(),
                    r.next_attempt_at.map(ts).transpose()?,
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let now = ts(OffsetDateTime::now_utc())?;
        let mut tx = self.begin_write().await?;
        let mut applied = Vec::with_capacity(planned.len());
        // Bound values rather than a JSON document (see `insert_batch`); 10 per outcome.
        for (rows, texts) in planned
            .chunks(ROWS_PER_INSERT)
            .zip(texts.chunks(ROWS_PER_INSERT))
        {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("with t (now) as (select ");
            q.push_bind(now.as_str());
            q.push(
                "), i (id, token, status, provider, provider_message_id, error_code,
                       error_message, next_attempt_at, num_segments, attempted) as (",
            );
            q.push_values(rows.iter().zip(texts), |mut b, (r, (id, token, next))| {
                b.push_bind(id.as_str())
                    .push_bind(token.as_str())
                    .push_bind(r.status.as_str())
                    .push_bind(r.provider.as_deref())
                    .push_bind(r.provider_message_id.as_deref())
                    .push_bind(r.error_code())
                    .push_bind(r.error_message())
                    .push_bind(next.as_deref())
                    .push_bind(r.num_segments)
                    .push_bind(r.attempted);
            });
            q.push(") update messages set
                 status = i.status,
                 provider = coalesce(i.provider, messages.provider),
                 provider_message_id = coalesce(i.provider_message_id, messages.provider_message_id),
                 error_code = i.error_code,
                 error_message = i.error_message,
                 num_segments = coalesce(i.num_segments, messages.num_segments),
                 retry_count = messages.retry_count + (i.status = 'retry' and i.attempted),
                 next_attempt_at = i.next_attempt_at,
                 sent_at = case when i.status = 'sent' then t.now else messages.sent_at end,
                 failed_at = case when i.status = 'failed' then t.now else messages.failed_at end,
                 claimed_at = null,
                 lease_until = null,
                 deliveries = 0,
                 claim_token = null,
                 updated_at = t.now
             from i, t
             where messages.id = i.id and messages.claim_token = i.token
               and messages.status = 'sending'
             returning messages.id",
            );
            applied.extend(q.build().all(&mut *tx, rows::id).await?);
        }
        let applied_ids: std::collections::HashSet<Uuid> = applied.iter().copied().collect();
        let mut events = Vec::with_capacity(applied.len());
        for row in planned.iter().filter(|r| applied_ids.contains(&r.id)) {
            events.push(EventRow {
                message_id: row.id.to_string(),
                from_status: Some(MessageStatus::Sending.as_str()),
                to_status: row.status.as_str(),
                detail: row.detail()?.to_string(),
            });
        }
        insert_events(&mut tx, "status_changed", &events, &now).await?;
        super::events::record_events(&mut tx, &applied).await?;
        // Receipts that arrived before these provider ids were recorded apply now.
        let recorded: Vec<&str> = planned
            .iter()
            .filter(|r| applied_ids.contains(&r.id))
            .filter_map(|r| r.provider_message_id.as_deref())
            .collect();
        super::webhooks::apply_early_receipts(&mut tx, &now, &recorded).await?;
        tx.commit().await.map_err(classify)?;
        Ok(applied)
    }

    async fn sweep(&self, query: SweepQuery) -> StoreResult<Vec<Stranded>> {
        let now = OffsetDateTime::now_utc();
        let older = ts(now - query.age)?;
        let abandoned = ts(now - query.age - query.visibility_timeout)?;
        let expired = ts(now - query.age)?;
        let mut tx = self.begin_write().await?;
        let stranded = sqlx::query(
            "update messages set enqueued_at = ?1
             where id in (
                 select id from messages
                 where status in ('pending', 'retry', 'sending')
                   and created_at < ?2
                   and (enqueued_at is null or enqueued_at < ?2)
                   and (status = 'pending'
                        or (status = 'retry' and next_attempt_at < ?2)
                        or (status = 'sending'
                            and (?6 or lease_until < ?5 or (lease_until is null and claimed_at < ?3))))
                 order by created_at
                 limit ?4
             )
             returning id, type",
        )
        .bind(ts(now)?)
        .bind(&older)
        .bind(&abandoned)
        .bind(query.limit)
        .bind(&expired)
        .bind(query.visibility_timeout.is_zero())
        .all(&mut *tx, rows::stranded)
        .await?;
        tx.commit().await.map_err(classify)?;
        Ok(stranded)
    }
}
