//! Provider callbacks on SQLite: one write transaction per batch of receipts, each step one
//! statement over a JSON array parameter (`json_each`).

use async_trait::async_trait;
use sqlx::{Sqlite, SqliteConnection, Transaction};
use time::OffsetDateTime;

use super::{SqliteStore, classify, ts};
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

/// A batch of receipts being written under the write lock, all at one time: in its own
/// transaction (`Transaction`), or in the outcome write's, borrowed for the early receipts it
/// applies (`&mut Transaction`).
pub(super) struct SqliteReceipts<T> {
    pub(super) tx: T,
    pub(super) now: String,
}

/// The transaction a receipt writer runs in; `finish` commits one the writer owns.
#[async_trait]
pub(super) trait ReceiptTx: Send {
    fn conn(&mut self) -> &mut SqliteConnection;
    async fn finish(self) -> StoreResult<()>;
}

#[async_trait]
impl ReceiptTx for Transaction<'static, Sqlite> {
    fn conn(&mut self) -> &mut SqliteConnection {
        self
    }
    async fn finish(self) -> StoreResult<()> {
        self.commit().await.map_err(classify)
    }
}

#[async_trait]
impl ReceiptTx for &mut Transaction<'static, Sqlite> {
    fn conn(&mut self) -> &mut SqliteConnection {
        self
    }
    /// The outcome write commits its own transaction.
    async fn finish(self) -> StoreResult<()> {
        Ok(())
    }
}

impl<T: ReceiptTx> SqliteReceipts<T> {
    /// Runs a statement whose `?1` is the JSON rows and `?2` the batch's time.
    async fn execute(&mut self, sql: &'static str, rows: String) -> StoreResult<()> {
        let query = sqlx::query(sql).bind(rows).bind(self.now.clone());
        query.run(self.tx.conn()).await?;
        Ok(())
    }
}

#[async_trait]
impl<T: ReceiptTx> ReceiptWriter for SqliteReceipts<T> {
    /// A key already logged, or earlier in this batch (`order by key`), is a replay.
    async fn claim_log_rows(&mut self, rows: &[LogRow]) -> StoreResult<Vec<ClaimedLogRow>> {
        let now = self.now.clone();
        sqlx::query(
            "insert into webhook_deliveries (provider, kind, dedupe_key, verified, outcome, detail, received_at)
             select value ->> 0, 'receipt', value ->> 1, 1, 'pending', value ->> 2, ?2
             from json_each(?1) where true
             order by key
             on conflict (provider, dedupe_key) where dedupe_key is not null and outcome <> 'duplicate'
             do update set outcome = 'pending' where webhook_deliveries.outcome = 'unknown_message'
             returning id, provider, dedupe_key",
        )
        .bind(json_rows(rows))
        .bind(now)
        .all(self.tx.conn(), rows::claimed_log_row)
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
        .all(self.tx.conn(), rows::receipt_target)
        .await
    }

    async fn keep_unmatched(&mut self, rows: &[KeptRow]) -> StoreResult<()> {
        self.execute(
            "insert into unmatched_receipts (provider, provider_message_id, dedupe_key, log_id, event, received_at)
             select value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, ?2
             from json_each(?1) where true
             order by key
             on conflict (provider, dedupe_key) do nothing",
            json_rows(rows),
        )
        .await
    }

    async fn take_kept(&mut self, provider_ids: &[&str]) -> StoreResult<Vec<KeptRow>> {
        let mut kept = sqlx::query(
            "delete from unmatched_receipts
             where provider_message_id in (select value from json_each(?1))
             returning id, provider, provider_message_id, dedupe_key, log_id, event",
        )
        .bind(serde_json::json!(provider_ids).to_string())
        .all(self.tx.conn(), rows::kept_receipt)
        .await?;
        kept.sort_by_key(|(id, _)| *id);
        Ok(kept.into_iter().map(|(_, row)| row).collect())
    }

    /// Under the write lock: read the messages that qualify, then write them.
    async fn adopt_sends(&mut self, adoptions: &[Adoption]) -> StoreResult<Vec<String>> {
        let adopted = sqlx::query(
            "select m.id, m.status, u.value ->> 1 as provider_message_id
             from messages m join json_each(?1) as u on m.id = u.value ->> 0
             where m.direction = 'outbound' and m.type = ?2
               and m.provider_message_id is null
               and m.status in (select value from json_each(?3))
               and not exists (select 1 from messages k
                               where k.provider_message_id = u.value ->> 1 and k.direction = 'outbound')
             order by m.id",
        )
        .bind(json_rows(adoptions))
        .bind(ADOPTABLE_TYPE.as_str())
        .bind(serde_json::json!(adoptable_statuses()).to_string())
        .all(self.tx.conn(), rows::receipt_target)
        .await?;
        if adopted.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<serde_json::Value> = adopted
            .iter()
            .map(|t| serde_json::json!([t.id.to_string(), t.provider_message_id, t.status]))
            .collect();
        let rows = serde_json::Value::from(rows).to_string();
        sqlx::query(
            "update messages set
                 status = 'sent', provider = ?3, provider_message_id = u.pmid,
                 error_code = null, error_message = null, next_attempt_at = null,
                 sent_at = ?2, claimed_at = null, lease_until = null, claim_token = null,
                 deliveries = 0, updated_at = ?2
             from (select value ->> 0 as id, value ->> 1 as pmid from json_each(?1)) as u
             where messages.id = u.id",
        )
        .bind(rows.clone())
        .bind(self.now.clone())
        .bind(PROVIDER)
        .run(self.tx.conn())
        .await?;
        sqlx::query(
            "insert into message_events (message_id, event, from_status, to_status, detail, created_at)
             select value ->> 0, 'status_changed', value ->> 2, 'sent',
                    json_object('provider', ?3, 'provider_message_id', value ->> 1, 'reconciled', json('true')), ?2
             from json_each(?1) order by key",
        )
        .bind(rows)
        .bind(self.now.clone())
        .bind(PROVIDER)
        .run(self.tx.conn())
        .await?;
        let ids: Vec<uuid::Uuid> = adopted.iter().map(|t| t.id).collect();
        super::events::record_events(self.tx.conn(), &ids).await?;
        Ok(adopted.into_iter().map(|t| t.provider_message_id).collect())
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
        super::events::record_events(self.tx.conn(), &ids).await
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
        .run(self.tx.conn())
        .await?;
        Ok(())
    }

    async fn commit(self) -> StoreResult<()> {
        self.tx.finish().await
    }
}

/// The outcome write's hook (in its transaction, at its time `now`): applies the early
/// receipts kept for the provider ids it just recorded.
pub(super) async fn apply_early_receipts(
    tx: &mut Transaction<'static, Sqlite>,
    now: &str,
    provider_ids: &[&str],
) -> StoreResult<usize> {
    let mut writer = SqliteReceipts {
        tx,
        now: now.to_owned(),
    };
    crate::store::webhooks::apply_kept_receipts(&mut writer, provider_ids).await
}

impl SqliteStore {
    /// The write lock is held from the first statement: the batch is decided alone.
    async fn receipts(&self) -> StoreResult<SqliteReceipts<Transaction<'static, Sqlite>>> {
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

    async fn purge_unmatched_receipts(&self, before: OffsetDateTime) -> StoreResult<u64> {
        let before = ts(before)?;
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("delete from unmatched_receipts where received_at < ?1")
            .bind(before)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(done.rows_affected())
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
        let listed = self.list(&listing, rows::delivery).await?;
        Ok((listed.items, listed.total))
    }
}
