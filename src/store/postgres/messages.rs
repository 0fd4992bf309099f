//! Messages on PostgreSQL: group-committed inserts, listing, and the worker's claim and
//! outcome statements (each a single round trip).

use std::collections::HashMap;

use anyhow::Context;
use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Postgres, QueryBuilder, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{PgStore, classify, parse_enum};
use crate::domain::{
    ChannelFamily, Direction, ErrorInfo, Message, MessageEvent, MessageStatus, MessageType,
    NewMessage,
};
use crate::store::batch::{BatchPlan, ConversationKey, DedupeKey, Existing};
use crate::store::{
    Claim, Inserted, MessageFilter, MessageStore, Outcome, Page, StoreError, StoreResult, Stranded,
    SweepQuery,
};

pub(super) const MESSAGE_COLUMNS: &str = "id, conversation_id, direction, type, from_address, to_address, body, subject, \
     attachments, status, provider, provider_message_id, num_segments, retry_count, error_code, error_message, metadata, \
     idempotency_key, created_at, updated_at, sent_at, delivered_at, failed_at, next_attempt_at, \
     provider_timestamp, read_at";

pub(super) fn message_from_row(row: &PgRow) -> anyhow::Result<Message> {
    let error_code: Option<String> = row.try_get("error_code")?;
    let error_message: Option<String> = row.try_get("error_message")?;
    let sqlx::types::Json(attachments): sqlx::types::Json<Vec<String>> =
        row.try_get("attachments")?;
    Ok(Message {
        id: row.try_get("id")?,
        conversation_id: row.try_get("conversation_id")?,
        direction: parse_enum(row, "direction", Direction::parse)?,
        kind: parse_enum(row, "type", MessageType::parse)?,
        from: row.try_get("from_address")?,
        to: row.try_get("to_address")?,
        body: row.try_get("body")?,
        subject: row.try_get("subject")?,
        attachments,
        status: parse_enum(row, "status", MessageStatus::parse)?,
        provider: row.try_get("provider")?,
        provider_message_id: row.try_get("provider_message_id")?,
        num_segments: row.try_get("num_segments")?,
        retry_count: row.try_get("retry_count")?,
        error: error_code.map(|code| ErrorInfo {
            code,
            message: error_message.unwrap_or_default(),
        }),
        metadata: row.try_get("metadata")?,
        idempotency_key: row.try_get("idempotency_key")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        sent_at: row.try_get("sent_at")?,
        delivered_at: row.try_get("delivered_at")?,
        failed_at: row.try_get("failed_at")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        provider_timestamp: row.try_get("provider_timestamp")?,
        read_at: row.try_get("read_at")?,
        size: None,
    }
    .sized())
}

fn statuses(list: &[MessageStatus]) -> Vec<String> {
    list.iter().map(|s| s.as_str().to_owned()).collect()
}

/// Column arrays for one multi-row insert through `unnest`.
#[derive(Default)]
struct MessageColumns {
    id: Vec<Uuid>,
    conversation_id: Vec<Uuid>,
    direction: Vec<String>,
    kind: Vec<String>,
    from: Vec<String>,
    to: Vec<String>,
    body: Vec<Option<String>>,
    subject: Vec<Option<String>>,
    attachments: Vec<String>,
    status: Vec<String>,
    metadata: Vec<String>,
    idempotency_key: Vec<Option<String>>,
    request_hash: Vec<Option<String>>,
    provider: Vec<Option<String>>,
    provider_message_id: Vec<Option<String>>,
    provider_timestamp: Vec<Option<OffsetDateTime>>,
    created_at: Vec<OffsetDateTime>,
}

impl MessageColumns {
    fn push(&mut self, m: &NewMessage, conversation_id: Uuid) -> anyhow::Result<()> {
        self.id.push(m.id);
        self.conversation_id.push(conversation_id);
        self.direction.push(m.direction.as_str().to_owned());
        self.kind.push(m.kind.as_str().to_owned());
        self.from.push(m.from.as_str().to_owned());
        self.to.push(m.to.as_str().to_owned());
        self.body.push(m.body.clone());
        self.subject.push(m.subject.clone());
        self.attachments
            .push(serde_json::to_string(&m.attachments)?);
        self.status.push(m.status.as_str().to_owned());
        self.metadata.push(serde_json::to_string(&m.metadata)?);
        self.idempotency_key.push(m.idempotency_key.clone());
        self.request_hash.push(m.request_hash.clone());
        self.provider.push(m.provider.clone());
        self.provider_message_id.push(m.provider_message_id.clone());
        self.provider_timestamp.push(m.provider_timestamp);
        self.created_at.push(m.created_at);
        Ok(())
    }
}

enum BatchAttempt {
    Done(Vec<Inserted>),
    /// A concurrent batch stored one of our idempotency keys or provider ids first: run again.
    Raced,
}

impl PgStore {
    async fn try_insert_batch(&self, batch: &[NewMessage]) -> StoreResult<BatchAttempt> {
        let mut tx = self.pool.begin().await.map_err(classify)?;

        // Idempotency keys and inbound provider ids already used by stored messages, in one
        // round trip (each half of the union uses its own unique index).
        let dedupe: Vec<Option<DedupeKey>> = batch.iter().map(DedupeKey::of_new).collect();
        let mut keys = Vec::new();
        let (mut providers, mut provider_ids) = (Vec::new(), Vec::new());
        for key in dedupe.iter().flatten() {
            match key {
                DedupeKey::Idempotency(k) => keys.push(k.clone()),
                DedupeKey::Inbound { provider, id } => {
                    providers.push(provider.clone());
                    provider_ids.push(id.clone());
                }
            }
        }
        let mut existing = Existing::new();
        if !keys.is_empty() || !provider_ids.is_empty() {
            let sql = format!(
                "select {MESSAGE_COLUMNS}, request_hash from messages where idempotency_key = any($1)
                 union all
                 select {MESSAGE_COLUMNS}, request_hash from messages
                 where direction = 'inbound' and provider_message_id is not null
                   and (provider, provider_message_id) in (select * from unnest($2::text[], $3::text[]))"
            );
            let rows = sqlx::query(AssertSqlSafe(sql))
                .bind(&keys)
                .bind(&providers)
                .bind(&provider_ids)
                .fetch_all(&mut *tx)
                .await
                .map_err(classify)?;
            for row in &rows {
                let message = message_from_row(row)?;
                let hash: Option<String> = row.try_get("request_hash").map_err(classify)?;
                if let Some(key) = DedupeKey::of_stored(&message) {
                    existing.insert(key, (message, hash));
                }
            }
        }

        let plan = BatchPlan::new(batch, dedupe, &existing);
        let fresh = &plan.fresh;
        let conversations = &plan.conversations;
        let mut conversation_ids: HashMap<ConversationKey, Uuid> = HashMap::new();
        if !conversations.is_empty() {
            let mut ids = Vec::new();
            let mut channels = Vec::new();
            let mut lows = Vec::new();
            let mut highs = Vec::new();
            let mut counts = Vec::new();
            let mut unread = Vec::new();
            let mut last = Vec::new();
            for ((family, a, b), (count, unread_count, at)) in conversations {
                ids.push(Uuid::now_v7());
                channels.push(family.as_str().to_owned());
                lows.push(a.clone());
                highs.push(b.clone());
                counts.push(*count);
                unread.push(*unread_count);
                last.push(*at);
            }
            // An inbound message re-opens an archived conversation.
            let rows = sqlx::query(
                "insert into conversations as c
                     (id, channel, participant_a, participant_b, message_count, unread_count, last_message_at)
                 select * from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::int8[], $7::timestamptz[])
                 on conflict (channel, participant_a, participant_b) do update set
                     message_count = c.message_count + excluded.message_count,
                     unread_count = c.unread_count + excluded.unread_count,
                     last_message_at = greatest(c.last_message_at, excluded.last_message_at),
                     status = case when excluded.unread_count > 0 and c.status = 'archived' then 'active' else c.status end,
                     updated_at = now()
                 returning id, channel, participant_a, participant_b",
            )
            .bind(&ids)
            .bind(&channels)
            .bind(&lows)
            .bind(&highs)
            .bind(&counts)
            .bind(&unread)
            .bind(&last)
            .fetch_all(&mut *tx)
            .await
            .map_err(classify)?;
            for row in &rows {
                let channel = parse_enum(row, "channel", ChannelFamily::parse)?;
                let a: String = row.try_get("participant_a").map_err(classify)?;
                let b: String = row.try_get("participant_b").map_err(classify)?;
                conversation_ids.insert((channel, a, b), row.try_get("id").map_err(classify)?);
            }
        }

        let mut columns = MessageColumns::default();
        let mut conversation_of = vec![Uuid::nil(); batch.len()];
        for (i, m) in batch.iter().enumerate().filter(|(i, _)| fresh[*i]) {
            let conversation_id = *conversation_ids
                .get(&m.conversation_key())
                .context("conversation upsert returned no row for a message")?;
            conversation_of[i] = conversation_id;
            columns.push(m, conversation_id)?;
        }

        if !columns.id.is_empty() {
            let inserted = sqlx::query(
                "insert into messages
                     (id, conversation_id, direction, type, from_address, to_address, body, subject,
                      attachments, status, metadata, idempotency_key, request_hash, provider,
                      provider_message_id, provider_timestamp, created_at, updated_at)
                 select id, conversation_id, direction, type, from_address, to_address, body, subject,
                        attachments::jsonb, status, metadata::jsonb, idempotency_key, request_hash, provider,
                        provider_message_id, provider_timestamp, created_at, created_at
                 from unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                             $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
                             $14::text[], $15::text[], $16::timestamptz[], $17::timestamptz[])
                     as t(id, conversation_id, direction, type, from_address, to_address, body, subject,
                          attachments, status, metadata, idempotency_key, request_hash, provider,
                          provider_message_id, provider_timestamp, created_at)
                 -- No target: both the idempotency key and the inbound provider id are unique.
                 on conflict do nothing",
            )
            .bind(&columns.id)
            .bind(&columns.conversation_id)
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
            .bind(&columns.provider_timestamp)
            .bind(&columns.created_at)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
            if inserted.rows_affected() != columns.id.len() as u64 {
                tx.rollback().await.map_err(classify)?;
                return Ok(BatchAttempt::Raced);
            }

            sqlx::query(
                "insert into message_events (message_id, event, to_status, created_at)
                 select id, 'created', status, created_at from unnest($1::uuid[], $2::text[], $3::timestamptz[])
                     as t(id, status, created_at)",
            )
            .bind(&columns.id)
            .bind(&columns.status)
            .bind(&columns.created_at)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)?;

        let results = plan.results(batch, &existing, &conversation_of)?;
        Ok(BatchAttempt::Done(results))
    }
}

#[async_trait]
impl MessageStore for PgStore {
    #[tracing::instrument(skip_all, fields(batch = batch.len()))]
    async fn insert_messages(&self, batch: &[NewMessage]) -> StoreResult<Vec<Inserted>> {
        // Each retry sees the keys the racing batch committed, so two rounds suffice;
        // the third is a safety margin.
        for _ in 0..3 {
            if let BatchAttempt::Done(results) = self.try_insert_batch(batch).await? {
                return Ok(results);
            }
        }
        Err(StoreError::Other(anyhow::anyhow!(
            "idempotency keys or provider ids kept racing with concurrent batches"
        )))
    }

    async fn get_message(&self, id: Uuid) -> StoreResult<Option<Message>> {
        let sql = format!("select {MESSAGE_COLUMNS} from messages where id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        Ok(row.as_ref().map(message_from_row).transpose()?)
    }

    async fn list_messages(
        &self,
        filter: &MessageFilter,
        page: Page,
    ) -> StoreResult<(Vec<Message>, i64)> {
        fn push_filters(q: &mut QueryBuilder<Postgres>, f: &MessageFilter) {
            q.push(" where true");
            if let Some(id) = f.conversation_id {
                q.push(" and conversation_id = ").push_bind(id);
            }
            if let Some(s) = f.status {
                q.push(" and status = ").push_bind(s.as_str());
            }
            if let Some(d) = f.direction {
                q.push(" and direction = ").push_bind(d.as_str());
            }
            if let Some(k) = f.kind {
                q.push(" and type = ").push_bind(k.as_str());
            }
        }
        let mut q = QueryBuilder::new(format!("select {MESSAGE_COLUMNS} from messages"));
        push_filters(&mut q, filter);
        q.push(" order by created_at desc, id desc limit ")
            .push_bind(page.limit);
        q.push(" offset ").push_bind(page.offset);
        let rows = q.build().fetch_all(&self.pool).await.map_err(classify)?;
        let messages = rows
            .iter()
            .map(message_from_row)
            .collect::<anyhow::Result<Vec<_>>>()?;

        let mut count = QueryBuilder::new("select count(*) from messages");
        push_filters(&mut count, filter);
        let total: i64 = count
            .build_query_scalar()
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        Ok((messages, total))
    }

    async fn message_events(&self, id: Uuid) -> StoreResult<Vec<MessageEvent>> {
        let rows = sqlx::query(
            "select id, message_id, event, from_status, to_status, detail, created_at
             from message_events where message_id = $1 order by id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        let status = |row: &PgRow, col: &str| -> anyhow::Result<Option<MessageStatus>> {
            let raw: Option<String> = row.try_get(col)?;
            Ok(raw.as_deref().and_then(MessageStatus::parse))
        };
        let events = rows
            .iter()
            .map(|row| {
                Ok(MessageEvent {
                    id: row.try_get("id")?,
                    message_id: row.try_get("message_id")?,
                    event: row.try_get("event")?,
                    from_status: status(row, "from_status")?,
                    to_status: status(row, "to_status")?,
                    detail: row.try_get("detail")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(events)
    }

    #[tracing::instrument(skip_all, fields(count = ids.len()))]
    async fn claim(&self, ids: &[Uuid], stale_before: OffsetDateTime) -> StoreResult<Claim> {
        let token = Uuid::now_v7();
        let sql = format!(
            "with target as (
                 select id, status as old_status from messages
                 where id = any($1)
                   and status = any($4)
                   and (status = 'pending'
                        or (status = 'retry' and (next_attempt_at is null or next_attempt_at <= now()))
                        or (status = 'sending' and claimed_at < $3))
                 order by id
                 for update
             ),
             claimed as (
                 update messages m
                 set status = 'sending', claimed_at = now(), claim_token = $2, next_attempt_at = null, updated_at = now()
                 from target t
                 where m.id = t.id
                 returning m.*, t.old_status
             ),
             events as (
                 insert into message_events (message_id, event, from_status, to_status, detail)
                 select id, 'status_changed', old_status, 'sending',
                        case when old_status = 'sending' then '{{\"reclaimed\": true}}'::jsonb else '{{}}'::jsonb end
                 from claimed
             )
             select {MESSAGE_COLUMNS} from claimed"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(ids)
            .bind(token)
            .bind(stale_before)
            .bind(statuses(&MessageStatus::predecessors(
                MessageStatus::Sending,
            )))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        let messages = rows
            .iter()
            .map(message_from_row)
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Claim { token, messages })
    }

    async fn in_flight(&self, ids: &[Uuid]) -> StoreResult<Vec<Uuid>> {
        sqlx::query_scalar("select id from messages where id = any($1) and status = 'sending'")
            .bind(ids)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)
    }

    #[tracing::instrument(skip_all, fields(count = outcomes.len()))]
    async fn record_outcomes(&self, token: Uuid, outcomes: &[Outcome]) -> StoreResult<Vec<Uuid>> {
        let mut ids = Vec::with_capacity(outcomes.len());
        let mut status = Vec::with_capacity(outcomes.len());
        let mut provider: Vec<Option<String>> = Vec::with_capacity(outcomes.len());
        let mut provider_message_id: Vec<Option<String>> = Vec::with_capacity(outcomes.len());
        let mut error_code: Vec<Option<String>> = Vec::with_capacity(outcomes.len());
        let mut error_message: Vec<Option<String>> = Vec::with_capacity(outcomes.len());
        let mut next_attempt_at: Vec<Option<OffsetDateTime>> = Vec::with_capacity(outcomes.len());
        let mut num_segments: Vec<Option<i32>> = Vec::with_capacity(outcomes.len());
        // A deferral (pacing) was not an attempt and does not count as a retry.
        let mut attempted: Vec<bool> = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            // Every outcome is a move out of `sending`; the lifecycle table must agree.
            MessageStatus::Sending
                .transition_to(outcome.status())
                .context("recording an outcome")?;
            ids.push(outcome.id());
            status.push(outcome.status().as_str().to_owned());
            attempted.push(!matches!(outcome, Outcome::Deferred { .. }));
            num_segments.push(match outcome {
                Outcome::Sent { num_segments, .. } => *num_segments,
                _ => None,
            });
            match outcome {
                Outcome::Sent {
                    provider: p,
                    provider_message_id: pid,
                    ..
                } => {
                    provider.push(Some(p.clone()));
                    provider_message_id.push(Some(pid.clone()));
                    error_code.push(None);
                    error_message.push(None);
                    next_attempt_at.push(None);
                }
                Outcome::Retry {
                    provider: p,
                    error,
                    next_attempt_at: at,
                    ..
                } => {
                    provider.push(Some(p.clone()));
                    provider_message_id.push(None);
                    error_code.push(Some(error.code.clone()));
                    error_message.push(Some(error.message.clone()));
                    next_attempt_at.push(Some(*at));
                }
                Outcome::Failed {
                    provider: p, error, ..
                } => {
                    provider.push(p.clone());
                    provider_message_id.push(None);
                    error_code.push(Some(error.code.clone()));
                    error_message.push(Some(error.message.clone()));
                    next_attempt_at.push(None);
                }
                Outcome::Deferred {
                    reason,
                    next_attempt_at: at,
                    ..
                } => {
                    provider.push(None);
                    provider_message_id.push(None);
                    error_code.push(Some("paced".to_owned()));
                    error_message.push(Some(reason.clone()));
                    next_attempt_at.push(Some(*at));
                }
            }
        }
        let rows = sqlx::query(
            "with input as (
                 select * from unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::timestamptz[],
                                      $9::int4[], $10::bool[])
                     as u(id, status, provider, provider_message_id, error_code, error_message, next_attempt_at,
                          num_segments, attempted)
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
                     claim_token = null,
                     updated_at = now()
                 from input i
                 where m.id = i.id and m.claim_token = $1 and m.status = 'sending'
                 returning m.id, m.status, m.provider, m.provider_message_id, m.error_code, m.error_message, m.next_attempt_at
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
             )
             select id from updated",
        )
        .bind(token)
        .bind(&ids)
        .bind(&status)
        .bind(&provider)
        .bind(&provider_message_id)
        .bind(&error_code)
        .bind(&error_message)
        .bind(&next_attempt_at)
        .bind(&num_segments)
        .bind(&attempted)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter()
            .map(|r| r.try_get("id").map_err(classify))
            .collect()
    }

    async fn sweep(&self, query: SweepQuery) -> StoreResult<Vec<Stranded>> {
        let rows = sqlx::query(
            "with stranded as (
                 select id from messages
                 where status in ('pending', 'retry', 'sending')
                   and created_at < now() - make_interval(secs => $1)
                   and (enqueued_at is null or enqueued_at < now() - make_interval(secs => $1))
                   and (status = 'pending'
                        or (status = 'retry' and next_attempt_at < now() - make_interval(secs => $1))
                        or (status = 'sending' and claimed_at < now() - make_interval(secs => $1 + $2)))
                 order by created_at
                 limit $3
                 for update skip locked
             )
             update messages m set enqueued_at = now()
             from stranded s where m.id = s.id
             returning m.id, m.type",
        )
        .bind(query.age.as_secs_f64())
        .bind(query.visibility_timeout.as_secs_f64())
        .bind(query.limit)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter()
            .map(|row| {
                Ok(Stranded {
                    id: row.try_get("id")?,
                    kind: parse_enum(row, "type", MessageType::parse)?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()
            .map_err(StoreError::Other)
    }
}
