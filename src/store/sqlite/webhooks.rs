//! Provider callbacks on SQLite: one write transaction per batch of receipts, each step one
//! statement over a JSON array parameter (`json_each`).

use async_trait::async_trait;
use serde_json::{Value, json};
use sqlx::{Sqlite, SqliteConnection, Transaction};
use time::OffsetDateTime;

use super::{SqliteStore, classify, ts};
use crate::store::query::Listing;
use crate::store::rows::{self, DELIVERY_COLUMNS, Fetch};
use crate::store::webhooks::{ClaimedLogRow, LogRow, ReceiptTarget, ReceiptWriter, apply_receipts};
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
    fn tx(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }
}

/// Rows as one JSON array parameter, each row an array read with `value ->> n`.
fn json_rows<T>(rows: &[T], row: impl Fn(&T) -> Value) -> String {
    Value::from(rows.iter().map(row).collect::<Vec<_>>()).to_string()
}

fn log_row(r: &LogRow) -> Value {
    json!([r.provider, r.dedupe_key, r.detail])
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
        .bind(json_rows(rows, log_row))
        .bind(now)
        .all(self.tx(), rows::claimed_log_row)
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
        .bind(json!(provider_ids).to_string())
        .all(self.tx(), rows::receipt_target)
        .await
    }

    async fn log_duplicates(&mut self, rows: &[LogRow]) -> StoreResult<()> {
        let now = self.now.clone();
        sqlx::query(
            "insert into webhook_deliveries (provider, kind, dedupe_key, verified, outcome, detail, received_at)
             select value ->> 0, 'receipt', value ->> 1, 1, 'duplicate', value ->> 2, ?2
             from json_each(?1) order by key",
        )
        .bind(json_rows(rows, log_row))
        .bind(now)
        .run(self.tx())
        .await?;
        Ok(())
    }

    async fn change_statuses(&mut self, changes: &[StatusChange]) -> StoreResult<()> {
        let input = json_rows(changes, |c| {
            let error = c.error.as_ref();
            json!([
                c.message_id.to_string(),
                c.status.as_str(),
                error.map(|e| &e.code),
                error.map(|e| &e.message),
            ])
        });
        let now = self.now.clone();
        sqlx::query(
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
        )
        .bind(input)
        .bind(now)
        .run(self.tx())
        .await?;
        Ok(())
    }

    async fn add_history(&mut self, entries: &[HistoryEntry]) -> StoreResult<()> {
        let input = json_rows(entries, |h| {
            json!([
                h.message_id.to_string(),
                h.from.map(|s| s.as_str()),
                h.to.map(|s| s.as_str()),
                h.detail.to_string(),
            ])
        });
        let now = self.now.clone();
        sqlx::query(
            "insert into message_events (message_id, event, from_status, to_status, detail, created_at)
             select value ->> 0, 'provider_event', value ->> 1, value ->> 2, value ->> 3, ?2
             from json_each(?1) order by key",
        )
        .bind(input)
        .bind(now)
        .run(self.tx())
        .await?;
        Ok(())
    }

    async fn settle_log_rows(&mut self, results: &[LogResult]) -> StoreResult<()> {
        let input = json_rows(results, |r| {
            json!([
                r.log_id,
                r.outcome.as_str(),
                r.message_id.map(|i| i.to_string())
            ])
        });
        sqlx::query(
            "update webhook_deliveries set outcome = u.outcome, message_id = u.message_id
             from (select value ->> 0 as id, value ->> 1 as outcome, value ->> 2 as message_id
                   from json_each(?1)) as u
             where webhook_deliveries.id = u.id",
        )
        .bind(input)
        .run(self.tx())
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
