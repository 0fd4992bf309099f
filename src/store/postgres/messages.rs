//! Messages on PostgreSQL: group-committed inserts, listing, and the worker's claim and
//! outcome statements (each a single round trip).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{PgStore, SEARCH_DOCUMENT, classify};
use crate::domain::compliance::Suppression;
use crate::domain::{Message, MessageEvent, NewMessage};
use crate::store::audit;
use crate::store::batch::{BatchPlan, DedupeKey, LookupKeys, existing_of};
use crate::store::lifecycle::{claimable_statuses, plan_outcomes};
use crate::store::query::{Listing, POSTGRES, by_id};
use crate::store::rows::{self, EVENT_COLUMNS, Fetch, MESSAGE_COLUMNS};
use crate::store::{
    Claim, Guarded, Inserted, Listed, MessageFilter, MessageStore, Settlement, StoreError,
    StoreResult, Stranded, SweepQuery, Waiting, Window,
};

/// Column arrays for one multi-row insert through `unnest`. Each message names its
/// conversation by key; the statement that stores them takes the id from the upsert.
#[derive(Default)]
struct MessageColumns {
    id: Vec<Uuid>,
    channel: Vec<&'static str>,
    participant_a: Vec<String>,
    participant_b: Vec<String>,
    direction: Vec<&'static str>,
    kind: Vec<&'static str>,
    from: Vec<String>,
    to: Vec<String>,
    body: Vec<Option<String>>,
    subject: Vec<Option<String>>,
    attachments: Vec<String>,
    status: Vec<&'static str>,
    metadata: Vec<String>,
    idempotency_key: Vec<Option<String>>,
    request_hash: Vec<Option<String>>,
    provider: Vec<Option<String>>,
    provider_message_id: Vec<Option<String>>,
    provider_timestamp: Vec<Option<OffsetDateTime>>,
    send_at: Vec<Option<OffsetDateTime>>,
    created_at: Vec<OffsetDateTime>,
    status_callback: Vec<Option<String>>,
}

impl MessageColumns {
    fn push(&mut self, m: &NewMessage) -> anyhow::Result<()> {
        let (channel, a, b) = m.conversation_key();
        self.id.push(m.id);
        self.channel.push(channel.as_str());
        self.participant_a.push(a);
        self.participant_b.push(b);
        self.direction.push(m.direction.as_str());
        self.kind.push(m.kind.as_str());
        self.from.push(m.from.as_str().to_owned());
        self.to.push(m.to.as_str().to_owned());
        self.body.push(m.body.clone());
        self.subject.push(m.subject.clone());
        self.attachments
            .push(serde_json::to_string(&m.attachments)?);
        self.status.push(m.status.as_str());
        self.metadata.push(serde_json::to_string(&m.metadata)?);
        self.idempotency_key.push(m.idempotency_key.clone());
        self.request_hash.push(m.request_hash.clone());
        self.provider.push(m.provider.clone());
        self.provider_message_id.push(m.provider_message_id.clone());
        self.provider_timestamp.push(m.provider_timestamp);
        self.send_at.push(m.send_at);
        self.created_at.push(m.created_at);
        self.status_callback.push(m.status_callback.clone());
        Ok(())
    }
}

/// Stores a batch's conversations, messages and search documents in one statement: the
/// conversation upsert, the messages (each given its conversation's id by key) and their
/// documents. It answers each stored message's conversation. A message whose conversation
/// the upsert did not return would have a null `conversation_id`, which fails the whole
/// statement; so does a repeated idempotency key or inbound provider id (a batch that
/// raced another one), so nothing of a failed statement is stored.
///
/// `guarded`: the statement first looks the recipients (`$29`) up in the suppression list;
/// if any is on it, it stores nothing and answers the entries found instead.
fn store_batch_sql(guarded: bool) -> String {
    let (blocked, unless_blocked, answer_blocked) = if guarded {
        (
            "blocked as (
                 select address, channel, reason, since from suppressions where address = any($29)
             ),",
            "where not exists (select from blocked)",
            "union all select null, null, address, channel, reason, since from blocked",
        )
    } else {
        ("", "", "")
    };
    format!(
        "with {blocked}
         conversation as (
             insert into conversations as c
                 (id, channel, participant_a, participant_b, message_count, unread_count, last_message_at)
             select * from unnest($22::uuid[], $23::text[], $24::text[], $25::text[], $26::int8[], $27::int8[], $28::timestamptz[])
             {unless_blocked}
             on conflict (channel, participant_a, participant_b) do update set
                 message_count = c.message_count + excluded.message_count,
                 unread_count = c.unread_count + excluded.unread_count,
                 last_message_at = greatest(c.last_message_at, excluded.last_message_at),
                 -- An inbound message re-opens an archived conversation.
                 status = case when excluded.unread_count > 0 and c.status = 'archived' then 'active' else c.status end,
                 updated_at = now()
             returning id, channel, participant_a, participant_b
         ),
         stored as (
             insert into messages
                 (id, conversation_id, direction, type, from_address, to_address, body, subject,
                  attachments, status, metadata, idempotency_key, request_hash, provider,
                  provider_message_id, provider_timestamp, send_at, created_at, updated_at, status_callback)
             select t.id, c.id, t.direction, t.type, t.from_address, t.to_address, t.body, t.subject,
                    t.attachments::jsonb, t.status, t.metadata::jsonb, t.idempotency_key, t.request_hash, t.provider,
                    t.provider_message_id, t.provider_timestamp, t.send_at, t.created_at, t.created_at, t.status_callback
             from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
                         $14::text[], $15::text[], $16::text[], $17::text[], $18::text[],
                         $19::timestamptz[], $20::timestamptz[], $21::timestamptz[])
                 as t(id, channel, participant_a, participant_b, direction, type, from_address, to_address,
                      body, subject, attachments, status, metadata, idempotency_key, request_hash,
                      provider, provider_message_id, status_callback, provider_timestamp, created_at, send_at)
             left join conversation c on c.channel = t.channel
                 and c.participant_a = t.participant_a and c.participant_b = t.participant_b
             {unless_blocked}
             returning id, conversation_id, subject, body
         ),
         texts as (
             insert into message_texts (message_id, conversation_id, document)
             select id, conversation_id, {SEARCH_DOCUMENT} from stored
         )
         select id, conversation_id, null::text as address, null::text as channel,
                null::text as reason, null::timestamptz as since
         from stored
         {answer_blocked}"
    )
}

/// One row of the batch statement: a stored message and its conversation, or an entry of
/// the suppression list that kept the batch from being stored.
enum BatchRow {
    Stored(Uuid, Uuid),
    Blocked(Suppression),
}

fn batch_row(row: &sqlx::postgres::PgRow) -> anyhow::Result<BatchRow> {
    use crate::store::rows::StoredRow;
    Ok(match row.opt_uuid("id")? {
        Some(id) => BatchRow::Stored(id, row.uuid("conversation_id")?),
        None => BatchRow::Blocked(crate::store::suppressions::suppression(row)?),
    })
}

/// Whether a statement failed on a unique index: a concurrent batch stored one of the
/// batch's idempotency keys or inbound provider ids first.
fn raced(e: &StoreError) -> bool {
    match e {
        StoreError::Other(e) => e
            .downcast_ref::<sqlx::Error>()
            .and_then(|e| e.as_database_error())
            .is_some_and(|d| d.code().as_deref() == Some("23505")),
        StoreError::Unavailable(_) => false,
    }
}

enum BatchAttempt {
    Done(Guarded),
    /// A concurrent batch stored one of our idempotency keys or provider ids first: run again.
    Raced,
}

impl PgStore {
    /// Stores `batch` unless one of `guard` (recipients) is on the suppression list.
    pub(super) async fn insert_batch(
        &self,
        batch: &[NewMessage],
        guard: &[String],
    ) -> StoreResult<Guarded> {
        // Each retry sees the keys the racing batch committed, so two rounds suffice;
        // the third is a safety margin.
        for _ in 0..3 {
            if let BatchAttempt::Done(done) = self.try_insert_batch(batch, guard).await? {
                return Ok(done);
            }
        }
        Err(StoreError::Other(anyhow::anyhow!(
            "idempotency keys or provider ids kept racing with concurrent batches"
        )))
    }

    async fn try_insert_batch(
        &self,
        batch: &[NewMessage],
        guard: &[String],
    ) -> StoreResult<BatchAttempt> {
        let dedupe: Vec<Option<DedupeKey>> = batch.iter().map(DedupeKey::of_new).collect();
        let keys = LookupKeys::of(&dedupe);
        let notifying = crate::store::outbox::notifying(batch);
        let could_change_lists =
            !crate::store::suppressions::keyword_changes(batch, &vec![true; batch.len()])
                .is_empty();
        // A batch with no key to look up, no event to record and no keyword is a single
        // statement, which is its own transaction: no BEGIN and COMMIT round trips, which
        // under load cost more time than the statement itself.
        let mut tx = if keys.is_empty() && notifying.is_empty() && !could_change_lists {
            None
        } else {
            Some(self.pool.begin().await.map_err(classify)?)
        };

        // Idempotency keys and inbound provider ids already used by stored messages, in one
        // round trip (each half of the union uses its own unique index).
        let mut found = Vec::new();
        if let Some(tx) = tx.as_mut().filter(|_| !keys.is_empty()) {
            let (providers, provider_ids): (Vec<&str>, Vec<&str>) = keys
                .inbound
                .iter()
                .map(|(p, id)| (p.as_str(), id.as_str()))
                .unzip();
            let sql = format!(
                "select {MESSAGE_COLUMNS}, request_hash from messages where idempotency_key = any($1)
                 union all
                 select {MESSAGE_COLUMNS}, request_hash from messages
                 where direction = 'inbound' and provider_message_id is not null
                   and (provider, provider_message_id) in (select * from unnest($2::text[], $3::text[]))"
            );
            found = sqlx::query(AssertSqlSafe(sql))
                .bind(&keys.idempotency)
                .bind(&providers)
                .bind(&provider_ids)
                .all(&mut **tx, rows::message_and_hash)
                .await?;
        }
        let existing = existing_of(found);

        let plan = BatchPlan::new(batch, dedupe, &existing);
        let mut conversation_of = vec![Uuid::nil(); batch.len()];
        let mut columns = MessageColumns::default();
        for (m, _) in batch.iter().zip(&plan.fresh).filter(|(_, fresh)| **fresh) {
            columns.push(m)?;
        }
        if !columns.id.is_empty() {
            let conversations = plan.conversation_rows();
            let ids: Vec<Uuid> = conversations.iter().map(|c| c.id).collect();
            let channels: Vec<&str> = conversations.iter().map(|c| c.key.0.as_str()).collect();
            let lows: Vec<&str> = conversations.iter().map(|c| c.key.1.as_str()).collect();
            let highs: Vec<&str> = conversations.iter().map(|c| c.key.2.as_str()).collect();
            let counts: Vec<i64> = conversations.iter().map(|c| c.messages).collect();
            let unread: Vec<i64> = conversations.iter().map(|c| c.unread).collect();
            let last: Vec<OffsetDateTime> =
                conversations.iter().map(|c| c.last_message_at).collect();
            let guarded = !guard.is_empty();
            let mut query = sqlx::query(AssertSqlSafe(store_batch_sql(guarded)))
                .bind(&columns.id)
                .bind(&columns.channel)
                .bind(&columns.participant_a)
                .bind(&columns.participant_b)
                .bind(&columns.direction)
                .bind(&columns.kind)
                .bind(&columns.from)
                .bind(&columns.to)
                .bind(&columns.body)
                .bind(&columns.subject)
                .bind(&columns.attachments)
                .bind(&columns.status)
                .bind(&columns.metadata)
                .bind(&columns.idempotency_key)
                .bind(&columns.request_hash)
                .bind(&columns.provider)
                .bind(&columns.provider_message_id)
                .bind(&columns.status_callback)
                .bind(&columns.provider_timestamp)
                .bind(&columns.created_at)
                .bind(&columns.send_at)
                .bind(&ids)
                .bind(&channels)
                .bind(&lows)
                .bind(&highs)
                .bind(&counts)
                .bind(&unread)
                .bind(&last);
            if guarded {
                query = query.bind(guard);
            }
            let answered = match tx.as_mut() {
                Some(tx) => query.all(&mut **tx, batch_row).await,
                None => query.all(&self.pool, batch_row).await,
            };
            // On a race or a suppressed recipient the transaction (if any) rolls back when
            // dropped; the statement itself stored nothing.
            let answered = match answered {
                Ok(answered) => answered,
                Err(e) if raced(&e) => return Ok(BatchAttempt::Raced),
                Err(e) => return Err(e),
            };
            let mut stored: HashMap<Uuid, Uuid> = HashMap::new();
            let mut blocked = Vec::new();
            for row in answered {
                match row {
                    BatchRow::Stored(id, conversation_id) => {
                        stored.insert(id, conversation_id);
                    }
                    BatchRow::Blocked(entry) => blocked.push(entry),
                }
            }
            if !blocked.is_empty() {
                return Ok(BatchAttempt::Done(Guarded::Suppressed(blocked)));
            }
            for (i, m) in batch.iter().enumerate().filter(|(i, _)| plan.fresh[*i]) {
                conversation_of[i] = *stored
                    .get(&m.id)
                    .context("the batch statement did not return a stored message")?;
            }
        }
        if columns.id.is_empty() && !guard.is_empty() {
            // Nothing new to store, so no statement looked the recipients up: a repeated
            // request to a recipient suppressed since is refused all the same.
            let found = crate::store::SuppressionStore::find_suppressions(self, guard).await?;
            if !found.is_empty() {
                return Ok(BatchAttempt::Done(Guarded::Suppressed(found)));
            }
        }
        if let Some(mut tx) = tx {
            if !columns.id.is_empty() {
                // No `created` event row: the message row records its creation (see `audit`).
                super::events::record_events(&mut tx, &notifying).await?;
            }
            // Opt-out and opt-in keywords take effect with the message that carries them.
            let keywords = crate::store::suppressions::keyword_changes(batch, &plan.fresh);
            super::suppressions::apply_keywords(&mut tx, &keywords).await?;
            tx.commit().await.map_err(classify)?;
        }

        let results = plan.results(batch, &existing, &conversation_of)?;
        Ok(BatchAttempt::Done(Guarded::Stored(results)))
    }
}

#[async_trait]
impl MessageStore for PgStore {
    #[tracing::instrument(skip_all, fields(batch = batch.len()))]
    async fn insert_messages(&self, batch: &[NewMessage]) -> StoreResult<Vec<Inserted>> {
        match self.insert_batch(batch, &[]).await? {
            Guarded::Stored(results) => Ok(results),
            Guarded::Suppressed(_) => Err(StoreError::Other(anyhow::anyhow!(
                "a batch stored without a suppression check was refused"
            ))),
        }
    }

    async fn get_message(&self, id: Uuid) -> StoreResult<Option<Message>> {
        let lookup = by_id("messages", MESSAGE_COLUMNS, id, POSTGRES);
        rows::find(&self.pool, &lookup, rows::message).await
    }

    async fn get_messages(&self, ids: &[Uuid]) -> StoreResult<Vec<Message>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!("select {MESSAGE_COLUMNS} from messages where id = any($1)");
        sqlx::query(AssertSqlSafe(sql))
            .bind(ids)
            .all(&self.pool, rows::message)
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
            format!("select {EVENT_COLUMNS} from message_events where message_id = $1 order by id");
        let events = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .all(&self.pool, rows::event)
            .await?;
        Ok(audit::with_creation(message.as_ref(), events))
    }

    #[tracing::instrument(skip_all, fields(count = ids.len()))]
    async fn claim(&self, ids: &[Uuid], lease: Duration) -> StoreResult<Claim> {
        let token = Uuid::now_v7();
        // Whether `m` may be claimed now; the status test is a CASE (see below).
        let claimable = "case m.status
                           when 'pending' then 'pending' = any($4)
                           when 'retry' then 'retry' = any($4)
                                and (m.next_attempt_at is null or m.next_attempt_at <= now())
                           when 'sending' then 'sending' = any($4)
                                and coalesce(m.lease_until, m.claimed_at + make_interval(secs => $3)) <= now()
                           else false
                       end";
        let sql = format!(
            "with target as (
                 -- Each id through the primary key. The status test is a CASE, which no
                 -- index matches: the planner would otherwise take a status index whenever
                 -- its statistics show few unfinished messages, and walk every entry of
                 -- it, dead ones included, on each claim.
                 select m.id, m.status as old_status, m.claim_token as old_token,
                        case when m.status = 'sending' then m.claimed_at end as previous_claimed_at
                 from unnest($1::uuid[]) as wanted(id)
                 join messages m on m.id = wanted.id
                 where {claimable}
                 order by m.id
             ),
             claimed as (
                 update messages m
                 set status = 'sending', claimed_at = now(), lease_until = now() + make_interval(secs => $3),
                     deliveries = m.deliveries + 1,
                     claim_token = $2, next_attempt_at = null, updated_at = now()
                 from target t
                 -- Rows are locked here, in the order of `target` (by id): two claims
                 -- cannot deadlock. A row another statement changed while this one waited
                 -- for its lock is tested again as it is now; one that is no longer what
                 -- `target` saw is left alone.
                 where m.id = t.id and m.status = t.old_status
                   and m.claim_token is not distinct from t.old_token
                   and {claimable}
                 returning m.*, t.old_status, t.previous_claimed_at
             ),
             events as (
                 insert into message_events (message_id, event, from_status, to_status, detail)
                 select id, 'status_changed', old_status, 'sending',
                        case when old_status = 'sending' then '{{\"reclaimed\": true}}'::jsonb else '{{}}'::jsonb end
                 from claimed
             )
             select {MESSAGE_COLUMNS}, deliveries, previous_claimed_at from claimed"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(ids)
            .bind(token)
            .bind(lease.as_secs_f64())
            .bind(claimable_statuses())
            .all(&self.pool, rows::claimed)
            .await?;
        Ok(Claim::of_rows(token, rows))
    }

    async fn expire_leases(&self) -> StoreResult<u64> {
        sqlx::query("update messages set lease_until = now() where status = 'sending'")
            .run(&self.pool)
            .await
    }

    async fn renew_leases(&self, tokens: &[Uuid], lease: Duration) -> StoreResult<u64> {
        sqlx::query(
            "update messages set lease_until = now() + make_interval(secs => $2)
             where claim_token = any($1) and status = 'sending'",
        )
        .bind(tokens)
        .bind(lease.as_secs_f64())
        .run(&self.pool)
        .await
    }

    async fn unclaimed(&self, ids: &[Uuid]) -> StoreResult<Vec<(Uuid, Waiting)>> {
        sqlx::query(
            // The status test is a CASE so that the primary key is used (see `claim`).
            "select m.id, case when m.status = 'retry' then m.next_attempt_at end as due_at
             from unnest($1::uuid[]) as wanted(id) join messages m on m.id = wanted.id
             where case m.status
                       when 'sending' then true
                       when 'retry' then m.next_attempt_at > now()
                       else false
                   end",
        )
        .bind(ids)
        .all(&self.pool, rows::waiting)
        .await
    }

    #[tracing::instrument(skip_all, fields(claims = settlements.len()))]
    async fn record_settlements(&self, settlements: &[Settlement]) -> StoreResult<Vec<Uuid>> {
        let planned = plan_outcomes(settlements)?;
        let ids: Vec<Uuid> = planned.iter().map(|r| r.id).collect();
        let tokens: Vec<Uuid> = planned.iter().map(|r| r.token).collect();
        let status: Vec<&str> = planned.iter().map(|r| r.status.as_str()).collect();
        let provider: Vec<Option<&str>> = planned.iter().map(|r| r.provider.as_deref()).collect();
        let provider_message_id: Vec<Option<&str>> = planned
            .iter()
            .map(|r| r.provider_message_id.as_deref())
            .collect();
        let error_code: Vec<Option<&str>> = planned.iter().map(|r| r.error_code()).collect();
        let error_message: Vec<Option<&str>> = planned.iter().map(|r| r.error_message()).collect();
        let next_attempt_at: Vec<Option<OffsetDateTime>> =
            planned.iter().map(|r| r.next_attempt_at).collect();
        let num_segments: Vec<Option<i32>> = planned.iter().map(|r| r.num_segments).collect();
        let attempted: Vec<bool> = planned.iter().map(|r| r.attempted).collect();
        let mut tx = self.pool.begin().await.map_err(classify)?;
        // The trail and the outbox are written by the same statement, from what it updated.
        let sql = format!(
            "with input as (
                 select * from unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::timestamptz[],
                                      $9::int4[], $10::bool[], $1::uuid[])
                     as u(id, status, provider, provider_message_id, error_code, error_message, next_attempt_at,
                          num_segments, attempted, token)
             ),
             updated as (
                 update messages m set
                     status = i.status,
                     provider = coalesce(i.provider, m.provider),
                     provider_message_id = coalesce(i.provider_message_id, m.provider_message_id),
                     error_code = i.error_code,
                     error_message = i.error_message,
                     num_segments = coalesce(i.num_segments, m.num_segments),
                     retry_count = m.retry_count + (i.status = 'retry' and i.attempted)::int,
                     next_attempt_at = i.next_attempt_at,
                     sent_at = case when i.status = 'sent' then now() else m.sent_at end,
                     failed_at = case when i.status = 'failed' then now() else m.failed_at end,
                     claimed_at = null,
                     lease_until = null,
                     deliveries = 0,
                     claim_token = null,
                     updated_at = now()
                 from input i
                 -- By primary key: the status test is a CASE so that no status index is
                 -- taken instead (see `claim`).
                 where m.id = i.id and m.claim_token = i.token
                   and case m.status when 'sending' then true else false end
                 returning m.id, m.status, m.provider, m.provider_message_id, m.error_code, m.error_message, m.next_attempt_at,
                           m.status_callback
             ),
             events as (
                 insert into message_events (message_id, event, from_status, to_status, detail)
                 select id, 'status_changed', 'sending', status, jsonb_strip_nulls(jsonb_build_object(
                     'provider', provider,
                     'provider_message_id', provider_message_id,
                     'error_code', error_code,
                     'error_message', error_message,
                     'next_attempt_at', next_attempt_at))
                 from updated
             ),
             {}
             select id from updated",
            super::events::outbox_of("updated", "$11")
        );
        let applied = sqlx::query(AssertSqlSafe(sql))
            .bind(&tokens)
            .bind(&ids)
            .bind(&status)
            .bind(&provider)
            .bind(&provider_message_id)
            .bind(&error_code)
            .bind(&error_message)
            .bind(&next_attempt_at)
            .bind(&num_segments)
            .bind(&attempted)
            .bind(crate::store::outbox::status_map())
            .all(&mut *tx, rows::id)
            .await?;
        // Receipts that arrived before these provider ids were recorded apply now.
        let applied_ids: std::collections::HashSet<Uuid> = applied.iter().copied().collect();
        let recorded: Vec<&str> = planned
            .iter()
            .filter(|r| applied_ids.contains(&r.id))
            .filter_map(|r| r.provider_message_id.as_deref())
            .collect();
        super::webhooks::apply_early_receipts(&mut tx, &recorded).await?;
        tx.commit().await.map_err(classify)?;
        Ok(applied)
    }

    async fn sweep(&self, query: SweepQuery) -> StoreResult<Vec<Stranded>> {
        // One scan of the status index per unfinished status, each oldest first ($1 the age,
        // $2 the visibility timeout, $3 the limit); the oldest `limit` of the three are
        // marked. Rows a worker holds are skipped.
        let oldest = |status: &str, also: &str| {
            format!(
                "select id, created_at from messages
                 where status = '{status}'
                   and created_at < now() - make_interval(secs => $1)
                   and (enqueued_at is null or enqueued_at < now() - make_interval(secs => $1))
                   {also}
                 order by created_at
                 limit $3
                 for update skip locked"
            )
        };
        let pending = oldest("pending", "");
        let retrying = oldest(
            "retry",
            "and next_attempt_at < now() - make_interval(secs => $1)",
        );
        let abandoned = oldest(
            "sending",
            "and ($2 = 0 or coalesce(lease_until, claimed_at + make_interval(secs => $2))
                            < now() - make_interval(secs => $1))",
        );
        let sql = format!(
            "with pending as ({pending}), retrying as ({retrying}), abandoned as ({abandoned}),
             stranded as (
                 select id from (
                     select * from pending union all select * from retrying
                     union all select * from abandoned
                 ) unfinished
                 order by created_at
                 limit $3
             )
             update messages m set enqueued_at = now()
             from stranded s where m.id = s.id
             returning m.id, m.type"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(query.age.as_secs_f64())
            .bind(query.visibility_timeout.as_secs_f64())
            .bind(query.limit)
            .all(&self.pool, rows::stranded)
            .await
    }
}
