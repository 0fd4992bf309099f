//! Provider callbacks on PostgreSQL: one transaction per batch of receipts, each step one
//! statement over `unnest`ed arrays.

use async_trait::async_trait;
use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

use super::{PgStore, classify};
use crate::store::query::Listing;
use crate::store::rows::{self, DELIVERY_COLUMNS, Fetch};
use crate::store::webhooks::{ClaimedLogRow, LogRow, ReceiptTarget, ReceiptWriter, apply_receipts};
use crate::store::{
    EventOutcome, HistoryEntry, LogResult, Page, ProviderEvent, StatusChange, StoreResult,
    WebhookDelivery, WebhookLogEntry, WebhookStore,
};

/// A batch of receipts being written in one transaction.
struct PgReceipts(Transaction<'static, Postgres>);

impl PgReceipts {
    fn tx(&mut self) -> &mut PgConnection {
        &mut self.0
    }
}

/// `(providers, dedupe keys, details)` as the arrays the log inserts `unnest`.
fn log_columns(rows: &[LogRow]) -> (Vec<&str>, Vec<&str>, Vec<&str>) {
    let providers = rows.iter().map(|r| r.provider).collect();
    let keys = rows.iter().map(|r| r.dedupe_key.as_str()).collect();
    let details = rows.iter().map(|r| r.detail.as_str()).collect();
    (providers, keys, details)
}

#[async_trait]
impl ReceiptWriter for PgReceipts {
    async fn claim_log_rows(&mut self, rows: &[LogRow]) -> StoreResult<Vec<ClaimedLogRow>> {
        let (providers, keys, details) = log_columns(rows);
        sqlx::query(
            "insert into webhook_deliveries (provider, kind, dedupe_key, verified, outcome, detail)
             select provider, 'receipt', dedupe_key, true, 'pending', detail::jsonb
             from unnest($1::text[], $2::text[], $3::text[]) as t(provider, dedupe_key, detail)
             on conflict (provider, dedupe_key) where dedupe_key is not null and outcome <> 'duplicate' do nothing
             returning id, provider, dedupe_key",
        )
        .bind(providers)
        .bind(keys)
        .bind(details)
        .all(self.tx(), rows::claimed_log_row)
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
        .all(self.tx(), rows::receipt_target)
        .await
    }

    async fn log_duplicates(&mut self, rows: &[LogRow]) -> StoreResult<()> {
        let (providers, keys, details) = log_columns(rows);
        sqlx::query(
            "insert into webhook_deliveries (provider, kind, dedupe_key, verified, outcome, detail)
             select provider, 'receipt', dedupe_key, true, 'duplicate', detail::jsonb
             from unnest($1::text[], $2::text[], $3::text[]) as t(provider, dedupe_key, detail)",
        )
        .bind(providers)
        .bind(keys)
        .bind(details)
        .run(self.tx())
        .await?;
        Ok(())
    }

    async fn change_statuses(&mut self, changes: &[StatusChange]) -> StoreResult<()> {
        let ids: Vec<Uuid> = changes.iter().map(|c| c.message_id).collect();
        let statuses: Vec<&str> = changes.iter().map(|c| c.status.as_str()).collect();
        let errors = changes.iter().map(|c| c.error.as_ref());
        let codes: Vec<Option<&str>> = errors.clone().map(|e| e.map(|e| e.code.as_str())).collect();
        let texts: Vec<Option<&str>> = errors.map(|e| e.map(|e| e.message.as_str())).collect();
        sqlx::query(
            "update messages m set
                 status = u.status,
                 error_code = coalesce(u.error_code, m.error_code),
                 error_message = coalesce(u.error_message, m.error_message),
                 delivered_at = case when u.status = 'delivered' then now() else m.delivered_at end,
                 failed_at = case when u.status = 'failed' then now() else m.failed_at end,
                 updated_at = now()
             from unnest($1::uuid[], $2::text[], $3::text[], $4::text[])
                 as u(id, status, error_code, error_message)
             where m.id = u.id",
        )
        .bind(ids)
        .bind(statuses)
        .bind(codes)
        .bind(texts)
        .run(self.tx())
        .await?;
        Ok(())
    }

    async fn add_history(&mut self, entries: &[HistoryEntry]) -> StoreResult<()> {
        let ids: Vec<Uuid> = entries.iter().map(|e| e.message_id).collect();
        let from: Vec<Option<&str>> = entries.iter().map(|e| e.from.map(|s| s.as_str())).collect();
        let to: Vec<Option<&str>> = entries.iter().map(|e| e.to.map(|s| s.as_str())).collect();
        let details: Vec<String> = entries.iter().map(|e| e.detail.to_string()).collect();
        sqlx::query(
            "insert into message_events (message_id, event, from_status, to_status, detail)
             select id, 'provider_event', from_status, to_status, detail::jsonb
             from unnest($1::uuid[], $2::text[], $3::text[], $4::text[])
                 as t(id, from_status, to_status, detail)",
        )
        .bind(ids)
        .bind(from)
        .bind(to)
        .bind(details)
        .run(self.tx())
        .await?;
        Ok(())
    }

    async fn settle_log_rows(&mut self, results: &[LogResult]) -> StoreResult<()> {
        let ids: Vec<i64> = results.iter().map(|r| r.log_id).collect();
        let outcomes: Vec<&str> = results.iter().map(|r| r.outcome.as_str()).collect();
        let messages: Vec<Option<Uuid>> = results.iter().map(|r| r.message_id).collect();
        sqlx::query(
            "update webhook_deliveries w set outcome = u.outcome, message_id = u.message_id
             from unnest($1::int8[], $2::text[], $3::uuid[]) as u(id, outcome, message_id)
             where w.id = u.id",
        )
        .bind(ids)
        .bind(outcomes)
        .bind(messages)
        .run(self.tx())
        .await?;
        Ok(())
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
