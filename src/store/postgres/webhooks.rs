//! Provider callbacks on PostgreSQL: one transaction per batch of receipts, each step one
//! statement over its rows as one JSON array (`jsonb_array_elements`).

use async_trait::async_trait;
use sqlx::{PgConnection, Postgres, Transaction};
use time::OffsetDateTime;

use super::{PgStore, classify};
use crate::store::query::Listing;
use crate::store::rows::{self, DELIVERY_COLUMNS, Fetch};
use crate::store::sendgrid_reconcile::{ADOPTABLE_TYPE, Adoption, PROVIDER, adoptable_statuses};
use crate::store::webhooks::{
    ClaimedLogRow, KeptRow, LogRow, ReceiptTarget, ReceiptWriter, apply_receipts, json_rows,
};
use crate::store::{
    EventOutcome, HistoryEntry, LogResult, Page, ProviderEvent, StatusChange, StoreResult,
    WebhookDelivery, WebhookLogEntry, WebhookStore,
};

/// A batch of receipts being written in one transaction: its own (`Transaction`), or the
/// outcome write's, borrowed for the early receipts it applies (`&mut Transaction`).
pub(super) struct PgReceipts<T>(pub(super) T);

/// The transaction a receipt writer runs in; `finish` commits one the writer owns.
#[async_trait]
pub(super) trait ReceiptTx: Send {
    fn conn(&mut self) -> &mut PgConnection;
    async fn finish(self) -> StoreResult<()>;
}

#[async_trait]
impl ReceiptTx for Transaction<'static, Postgres> {
    fn conn(&mut self) -> &mut PgConnection {
        self
    }
    async fn finish(self) -> StoreResult<()> {
        self.commit().await.map_err(classify)
    }
}

#[async_trait]
impl ReceiptTx for &mut Transaction<'static, Postgres> {
    fn conn(&mut self) -> &mut PgConnection {
        self
    }
    /// The outcome write commits its own transaction.
    async fn finish(self) -> StoreResult<()> {
        Ok(())
    }
}

impl<T: ReceiptTx> PgReceipts<T> {
    /// Runs a statement whose `$1` is the JSON rows.
    async fn execute(&mut self, sql: &'static str, rows: String) -> StoreResult<()> {
        sqlx::query(sql).bind(rows).run(self.0.conn()).await?;
        Ok(())
    }
}

#[async_trait]
impl<T: ReceiptTx> ReceiptWriter for PgReceipts<T> {
    async fn claim_log_rows(&mut self, rows: &[LogRow]) -> StoreResult<Vec<ClaimedLogRow>> {
        sqlx::query(
            "insert into webhook_deliveries (provider, kind, dedupe_key, verified, outcome, detail)
             select value ->> 0, 'receipt', value ->> 1, true, 'pending', (value ->> 2)::jsonb
             from jsonb_array_elements($1::jsonb) with ordinality as t(value, n)
             order by n
             on conflict (provider, dedupe_key) where dedupe_key is not null and outcome <> 'duplicate'
             do update set outcome = 'pending'
                 where webhook_deliveries.outcome = 'unknown_message'
             returning id, provider, dedupe_key",
        )
        .bind(json_rows(rows))
        .all(self.0.conn(), rows::claimed_log_row)
        .await
    }

    async fn outbound_messages(
        &mut self,
        provider_ids: &[&str],
    ) -> StoreResult<Vec<ReceiptTarget>> {
        sqlx::query(
            "select id, status, provider_message_id from messages
             where provider_message_id = any($1) and direction = 'outbound'
             order by id
             for update",
        )
        .bind(provider_ids)
        .all(self.0.conn(), rows::receipt_target)
        .await
    }

    /// Transaction-scoped advisory locks on the ids' hashes, taken in one order (no
    /// deadlock between two batches).
    async fn lock_provider_ids(&mut self, provider_ids: &[&str]) -> StoreResult<()> {
        let mut ids: Vec<&str> = provider_ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        sqlx::query(
            "select count(pg_advisory_xact_lock(k)) from (
                 select distinct hashtextextended(p, 0) as k from unnest($1::text[]) as p order by 1
             ) as s",
        )
        .bind(&ids)
        .run(self.0.conn())
        .await?;
        Ok(())
    }

    async fn keep_unmatched(&mut self, rows: &[KeptRow]) -> StoreResult<()> {
        self.execute(
            "insert into unmatched_receipts (provider, provider_message_id, dedupe_key, log_id, event)
             select value ->> 0, value ->> 1, value ->> 2, (value ->> 3)::int8, value ->> 4
             from jsonb_array_elements($1::jsonb) with ordinality as t(value, n)
             order by n
             on conflict (provider, dedupe_key) do nothing",
            json_rows(rows),
        )
        .await
    }

    async fn take_kept(&mut self, provider_ids: &[&str]) -> StoreResult<Vec<KeptRow>> {
        let mut kept = sqlx::query(
            "delete from unmatched_receipts where provider_message_id = any($1)
             returning id, provider, provider_message_id, dedupe_key, log_id, event",
        )
        .bind(provider_ids)
        .all(self.0.conn(), rows::kept_receipt)
        .await?;
        kept.sort_by_key(|(id, _)| *id);
        Ok(kept.into_iter().map(|(_, row)| row).collect())
    }

    async fn adopt_sends(&mut self, adoptions: &[Adoption]) -> StoreResult<Vec<String>> {
        let adopted = sqlx::query(
            "with target as (
                 select m.id, m.status as old_status, u.pmid
                 from messages m
                 join (select (value ->> 0)::uuid as id, value ->> 1 as pmid
                       from jsonb_array_elements($1::jsonb)) as u on m.id = u.id
                 where m.direction = 'outbound' and m.type = $2
                   and m.provider_message_id is null and m.status = any($3)
                   and not exists (select 1 from messages k
                                   where k.provider_message_id = u.pmid and k.direction = 'outbound')
                 order by m.id
                 for update of m
             ),
             updated as (
                 update messages m set
                     status = 'sent', provider = $4, provider_message_id = t.pmid,
                     error_code = null, error_message = null, next_attempt_at = null,
                     sent_at = now(), claimed_at = null, lease_until = null, claim_token = null,
                     deliveries = 0, updated_at = now()
                 from target t
                 where m.id = t.id
                 returning m.id, t.old_status, t.pmid
             ),
             history as (
                 insert into message_events (message_id, event, from_status, to_status, detail)
                 select id, 'status_changed', old_status, 'sent', jsonb_build_object(
                     'provider', $4::text, 'provider_message_id', pmid, 'reconciled', true)
                 from updated
             )
             select id, 'sent' as status, pmid as provider_message_id from updated",
        )
        .bind(json_rows(adoptions))
        .bind(ADOPTABLE_TYPE.as_str())
        .bind(adoptable_statuses())
        .bind(PROVIDER)
        .all(self.0.conn(), rows::receipt_target)
        .await?;
        let ids: Vec<uuid::Uuid> = adopted.iter().map(|t| t.id).collect();
        super::events::record_events(self.0.conn(), &ids).await?;
        Ok(adopted.into_iter().map(|t| t.provider_message_id).collect())
    }

    async fn log_duplicates(&mut self, rows: &[LogRow]) -> StoreResult<()> {
        self.execute(
            "insert into webhook_deliveries (provider, kind, dedupe_key, verified, outcome, detail)
             select value ->> 0, 'receipt', value ->> 1, true, 'duplicate', (value ->> 2)::jsonb
             from jsonb_array_elements($1::jsonb)",
            json_rows(rows),
        )
        .await
    }

    async fn change_statuses(&mut self, changes: &[StatusChange]) -> StoreResult<()> {
        let ids: Vec<uuid::Uuid> = changes.iter().map(|c| c.message_id).collect();
        self.execute(
            "update messages m set
                 status = u.status,
                 error_code = coalesce(u.error_code, m.error_code),
                 error_message = coalesce(u.error_message, m.error_message),
                 delivered_at = case when u.status = 'delivered' then now() else m.delivered_at end,
                 failed_at = case when u.status = 'failed' then now() else m.failed_at end,
                 updated_at = now()
             from (select (value ->> 0)::uuid as id, value ->> 1 as status,
                          value ->> 2 as error_code, value ->> 3 as error_message
                   from jsonb_array_elements($1::jsonb)) as u
             where m.id = u.id",
            json_rows(changes),
        )
        .await?;
        super::events::record_events(self.0.conn(), &ids).await
    }

    async fn add_history(&mut self, entries: &[HistoryEntry]) -> StoreResult<()> {
        self.execute(
            "insert into message_events (message_id, event, from_status, to_status, detail)
             select (value ->> 0)::uuid, 'provider_event', value ->> 1, value ->> 2, (value ->> 3)::jsonb
             from jsonb_array_elements($1::jsonb) with ordinality as t(value, n)
             -- In input order: a message's history lists its receipts as they came.
             order by n",
            json_rows(entries),
        )
        .await
    }

    async fn settle_log_rows(&mut self, results: &[LogResult]) -> StoreResult<()> {
        self.execute(
            "update webhook_deliveries w set outcome = u.outcome, message_id = u.message_id
             from (select (value ->> 0)::int8 as id, value ->> 1 as outcome,
                          (value ->> 2)::uuid as message_id
                   from jsonb_array_elements($1::jsonb)) as u
             where w.id = u.id",
            json_rows(results),
        )
        .await
    }

    async fn commit(self) -> StoreResult<()> {
        self.0.finish().await
    }
}

/// The outcome write's hook (in its transaction): applies the early receipts kept for the
/// provider ids it just recorded.
pub(super) async fn apply_early_receipts(
    tx: &mut Transaction<'static, Postgres>,
    provider_ids: &[&str],
) -> StoreResult<usize> {
    crate::store::webhooks::apply_kept_receipts(&mut PgReceipts(tx), provider_ids).await
}

impl PgStore {
    async fn receipts(&self) -> StoreResult<PgReceipts<Transaction<'static, Postgres>>> {
        Ok(PgReceipts(self.pool.begin().await.map_err(classify)?))
    }
}

#[async_trait]
impl WebhookStore for PgStore {
    async fn apply_provider_events(
        &self,
        events: &[ProviderEvent],
    ) -> StoreResult<Vec<EventOutcome>> {
        apply_receipts(self.receipts(), events).await
    }

    async fn purge_unmatched_receipts(&self, before: OffsetDateTime) -> StoreResult<u64> {
        let done = sqlx::query("delete from unmatched_receipts where received_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected())
    }

    async fn log_webhook(&self, entry: &WebhookLogEntry) -> StoreResult<()> {
        sqlx::query(
            "insert into webhook_deliveries (provider, kind, dedupe_key, verified, outcome, message_id, detail)
             values ($1, $2, $3, $4, $5, $6, $7)
             on conflict (provider, dedupe_key) where dedupe_key is not null and outcome <> 'duplicate' do nothing",
        )
        .bind(entry.provider)
        .bind(entry.kind)
        .bind(&entry.dedupe_key)
        .bind(entry.verified)
        .bind(&entry.outcome)
        .bind(entry.message_id)
        .bind(&entry.detail)
        .run(&self.pool)
        .await?;
        Ok(())
    }

    async fn webhook_deliveries(
        &self,
        provider: Option<&str>,
        page: Page,
    ) -> StoreResult<(Vec<WebhookDelivery>, i64)> {
        let listing = Listing::webhook_deliveries(DELIVERY_COLUMNS, provider, page);
        let listed = self.list(&listing, rows::delivery).await?;
        Ok((listed.items, listed.total))
    }
}
