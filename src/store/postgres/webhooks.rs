//! Provider callbacks on PostgreSQL: one transaction per batch of receipts, each step one
//! statement over its rows as one JSON array (`jsonb_array_elements`).

use async_trait::async_trait;
use sqlx::{Postgres, Transaction};

use super::{PgStore, classify};
use crate::store::query::Listing;
use crate::store::rows::{self, DELIVERY_COLUMNS, Fetch};
use crate::store::webhooks::{
    ClaimedLogRow, LogRow, ReceiptTarget, ReceiptWriter, apply_receipts, json_rows,
};
use crate::store::{
    EventOutcome, HistoryEntry, LogResult, Page, ProviderEvent, StatusChange, StoreResult,
    WebhookDelivery, WebhookLogEntry, WebhookStore,
};

/// A batch of receipts being written in one transaction.
struct PgReceipts(Transaction<'static, Postgres>);

impl PgReceipts {
    /// Runs a statement whose `$1` is the JSON rows.
    async fn execute(&mut self, sql: &'static str, rows: String) -> StoreResult<()> {
        sqlx::query(sql).bind(rows).run(&mut *self.0).await?;
        Ok(())
    }
}

#[async_trait]
impl ReceiptWriter for PgReceipts {
    async fn claim_log_rows(&mut self, rows: &[LogRow]) -> StoreResult<Vec<ClaimedLogRow>> {
        sqlx::query(
            "insert into webhook_deliveries (provider, kind, dedupe_key, verified, outcome, detail)
             select value ->> 0, 'receipt', value ->> 1, true, 'pending', (value ->> 2)::jsonb
             from jsonb_array_elements($1::jsonb) with ordinality as t(value, n)
             order by n
             on conflict (provider, dedupe_key) where dedupe_key is not null and outcome <> 'duplicate' do nothing
             returning id, provider, dedupe_key",
        )
        .bind(json_rows(rows))
        .all(&mut *self.0, rows::claimed_log_row)
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
        .all(&mut *self.0, rows::receipt_target)
        .await
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
        super::events::record_events(&mut self.0, &ids).await
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
        self.0.commit().await.map_err(classify)
    }
}

impl PgStore {
    async fn receipts(&self) -> StoreResult<PgReceipts> {
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
        self.list(&listing, rows::delivery).await
    }
}
