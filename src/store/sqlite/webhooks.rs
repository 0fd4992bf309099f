//! Provider callbacks on SQLite: one write transaction per batch of receipts, each step one
//! statement over a JSON array parameter (`json_each`).

use async_trait::async_trait;
use sqlx::{Sqlite, Transaction};
use time::OffsetDateTime;

use super::{SqliteStore, classify, ts};
use crate::store::query::Listing;
use crate::store::rows::{self, DELIVERY_COLUMNS, Fetch};
use crate::store::webhooks::{
    ClaimedLogRow, LogRow, ReceiptTarget, ReceiptWriter, apply_receipts, json_rows,
};
use crate::store::{
    EventOutcome, HistoryEntry, LogResult, Page, ProviderEvent, StatusChange, StoreResult,
    WebhookDelivery, WebhookLogEntry, WebhookStore,
};

/// A batch of receipts being written under the write lock, all at one time.
struct SqliteReceipts {
    tx: Transaction<'static, Sqlite>,
    now: String,
}

impl SqliteReceipts {
    /// Runs a statement whose `?1` is the JSON rows and `?2` the batch's time.
    async fn execute(&mut self, sql: &'static str, rows: String) -> StoreResult<()> {
        let query = sqlx::query(sql).bind(rows).bind(self.now.clone());
        query.run(&mut *self.tx).await?;
        Ok(())
    }
}

#[async_trait]
impl ReceiptWriter for SqliteReceipts {
    /// A key already logged, or earlier in this batch (`order by key`), is a replay.
    async fn claim_log_rows(&mut self, rows: &[LogRow]) -> StoreResult<Vec<ClaimedLogRow>> {
        let now = self.now.clone();
        sqlx::query(
            "insert into webhook_deliveries (provider, kind, dedupe_key, verified, outcome, detail, received_at)
             select value ->> 0, 'receipt', value ->> 1, 1, 'pending', value ->> 2, ?2
             from json_each(?1) where true
             order by key
             on conflict (provider, dedupe_key) where dedupe_key is not null and outcome <> 'duplicate' do nothing
             returning id, provider, dedupe_key",
        )
        .bind(json_rows(rows))
        .bind(now)
        .all(&mut *self.tx, rows::claimed_log_row)
        .await
    }

    async fn outbound_messages(
        &mut self,
        provider_ids: &[&str],
    ) -> StoreResult<Vec<ReceiptTarget>> {
        sqlx::query(
            "select id, status, provider_message_id from messages
             where provider_message_id in (select value from json_each(?1)) and direction = 'outbound'
             order by id",
        )
        .bind(serde_json::json!(provider_ids).to_string())
        .all(&mut *self.tx, rows::receipt_target)
        .await
    }

    async fn log_duplicates(&mut self, rows: &[LogRow]) -> StoreResult<()> {
        self.execute(
            "insert into webhook_deliveries (provider, kind, dedupe_key, verified, outcome, detail, received_at)
             select value ->> 0, 'receipt', value ->> 1, 1, 'duplicate', value ->> 2, ?2
             from json_each(?1) order by key",
            json_rows(rows),
        )
        .await
    }

    async fn change_statuses(&mut self, changes: &[StatusChange]) -> StoreResult<()> {
        let ids: Vec<uuid::Uuid> = changes.iter().map(|c| c.message_id).collect();
        self.execute(
            "update messages set
                 status = u.status,
                 error_code = coalesce(u.error_code, messages.error_code),
                 error_message = coalesce(u.error_message, messages.error_message),
                 delivered_at = case when u.status = 'delivered' then ?2 else messages.delivered_at end,
                 failed_at = case when u.status = 'failed' then ?2 else messages.failed_at end,
                 updated_at = ?2
             from (select value ->> 0 as id, value ->> 1 as status, value ->> 2 as error_code,
                          value ->> 3 as error_message
                   from json_each(?1)) as u
             where messages.id = u.id",
            json_rows(changes),
        )
        .await?;
        super::events::record_events(&mut self.tx, &ids).await
    }

    async fn add_history(&mut self, entries: &[HistoryEntry]) -> StoreResult<()> {
        self.execute(
            "insert into message_events (message_id, event, from_status, to_status, detail, created_at)
             select value ->> 0, 'provider_event', value ->> 1, value ->> 2, value ->> 3, ?2
             from json_each(?1) order by key",
            json_rows(entries),
        )
        .await
    }

    async fn settle_log_rows(&mut self, results: &[LogResult]) -> StoreResult<()> {
        sqlx::query(
            "update webhook_deliveries set outcome = u.outcome, message_id = u.message_id
             from (select value ->> 0 as id, value ->> 1 as outcome, value ->> 2 as message_id
                   from json_each(?1)) as u
             where webhook_deliveries.id = u.id",
        )
        .bind(json_rows(results))
        .run(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn commit(self) -> StoreResult<()> {
        self.tx.commit().await.map_err(classify)
    }
}

impl SqliteStore {
    /// The write lock is held from the first statement: the batch is decided alone.
    async fn receipts(&self) -> StoreResult<SqliteReceipts> {
        let now = ts(OffsetDateTime::now_utc())?;
        let tx = self.begin_write().await?;
        Ok(SqliteReceipts { tx, now })
    }
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn apply_provider_events(
        &self,
        events: &[ProviderEvent],
    ) -> StoreResult<Vec<EventOutcome>> {
        apply_receipts(self.receipts(), events).await
    }

    async fn log_webhook(&self, entry: &WebhookLogEntry) -> StoreResult<()> {
        let now = ts(OffsetDateTime::now_utc())?;
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "insert into webhook_deliveries (provider, kind, dedupe_key, verified, outcome, message_id, detail, received_at)
             values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             on conflict (provider, dedupe_key) where dedupe_key is not null and outcome <> 'duplicate' do nothing",
        )
        .bind(entry.provider)
        .bind(entry.kind)
        .bind(&entry.dedupe_key)
        .bind(entry.verified)
        .bind(&entry.outcome)
        .bind(entry.message_id.map(|id| id.to_string()))
        .bind(entry.detail.to_string())
        .bind(&now)
        .run(&mut *tx)
        .await?;
        tx.commit().await.map_err(classify)?;
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
