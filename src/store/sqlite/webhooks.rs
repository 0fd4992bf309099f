//! Provider callbacks on SQLite: one write transaction per batch of receipts.

use std::collections::HashMap;

use anyhow::Context;
use async_trait::async_trait;
use serde_json::Value;
use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{SqliteStore, classify, get_ts, ts};
use crate::domain::MessageStatus;
use crate::store::query::Listing;
use crate::store::{
    EventOutcome, Page, ProviderEvent, StoreResult, WebhookDelivery, WebhookLogEntry, WebhookStore,
    plan_receipts,
};
use sqlx::sqlite::SqliteRow;

#[async_trait]
impl WebhookStore for SqliteStore {
    #[tracing::instrument(skip_all, fields(count = events.len()))]
    async fn apply_provider_events(
        &self,
        events: &[ProviderEvent],
    ) -> StoreResult<Vec<EventOutcome>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let now = ts(OffsetDateTime::now_utc())?;
        let details: Vec<String> = events
            .iter()
            .map(|e| serde_json::json!({ "event": e.event, "provider_message_id": e.provider_message_id }).to_string())
            .collect();
        // The write lock is held from the first statement: the batch is decided alone.
        let mut tx = self.begin_write().await?;

        // 1. Claim each dedupe key in the log; a key already there (or earlier in this
        // batch) is a replay.
        let input: Vec<Value> = events
            .iter()
            .zip(&details)
            .map(|(e, d)| serde_json::json!([e.provider, e.dedupe_key, d]))
            .collect();
        let rows = sqlx::query(
            "insert into webhook_deliveries (provider, kind, dedupe_key, verified, outcome, detail, received_at)
             select value ->> 0, 'receipt', value ->> 1, 1, 'pending', value ->> 2, ?2
             from json_each(?1) where true
             order by key
             on conflict (provider, dedupe_key) where dedupe_key is not null and outcome <> 'duplicate' do nothing
             returning id, provider, dedupe_key",
        )
        .bind(Value::from(input).to_string())
        .bind(&now)
        .fetch_all(&mut *tx)
        .await
        .map_err(classify)?;
        let mut log_ids: HashMap<(String, String), i64> = HashMap::new();
        for row in &rows {
            log_ids.insert(
                (
                    row.try_get("provider").map_err(classify)?,
                    row.try_get("dedupe_key").map_err(classify)?,
                ),
                row.try_get("id").map_err(classify)?,
            );
        }

        // 2. The messages concerned.
        let pmids: Vec<&str> = events
            .iter()
            .map(|e| e.provider_message_id.as_str())
            .collect();
        let rows = sqlx::query(
            "select id, status, provider_message_id from messages
             where provider_message_id in (select value from json_each(?1)) and direction = 'outbound'
             order by id",
        )
        .bind(serde_json::to_string(&pmids).context("encoding provider ids")?)
        .fetch_all(&mut *tx)
        .await
        .map_err(classify)?;
        let mut messages: HashMap<String, (Uuid, MessageStatus)> = HashMap::new();
        for row in &rows {
            let raw: String = row.try_get("status").map_err(classify)?;
            let Some(status) = MessageStatus::parse(&raw) else {
                continue;
            };
            let id: String = row.try_get("id").map_err(classify)?;
            let id = Uuid::parse_str(&id).context("message id in the database")?;
            messages
                .entry(row.try_get("provider_message_id").map_err(classify)?)
                .or_insert((id, status));
        }

        // 3. Decide what each event does (shared by every backend), then write it down.
        let plan = plan_receipts(events, log_ids, messages);
        let duplicates: Vec<Value> = plan
            .duplicates
            .iter()
            .map(|i| serde_json::json!([events[*i].provider, events[*i].dedupe_key, details[*i]]))
            .collect();
        let log_rows: Vec<Value> = plan
            .log_results
            .iter()
            .map(|(log_id, outcome, id)| {
                serde_json::json!([log_id, outcome.as_str(), id.map(|i| i.to_string())])
            })
            .collect();
        let history: Vec<Value> = plan
            .history
            .iter()
            .map(|h| {
                serde_json::json!([
                    h.message_id.to_string(),
                    h.from.map(|s| s.as_str()),
                    h.to.map(|s| s.as_str()),
                    h.detail.to_string(),
                ])
            })
            .collect();

        if !duplicates.is_empty() {
            sqlx::query(
                "insert into webhook_deliveries (provider, kind, dedupe_key, verified, outcome, detail, received_at)
                 select value ->> 0, 'receipt', value ->> 1, 1, 'duplicate', value ->> 2, ?2
                 from json_each(?1) order by key",
            )
            .bind(Value::from(duplicates).to_string())
            .bind(&now)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        }

        // 4. Status changes, one statement.
        if !plan.status_changes.is_empty() {
            let changes: Vec<Value> = plan
                .status_changes
                .iter()
                .map(|c| {
                    let error = c.error.as_ref();
                    serde_json::json!([
                        c.message_id.to_string(),
                        c.status.as_str(),
                        error.map(|e| &e.code),
                        error.map(|e| &e.message),
                    ])
                })
                .collect();
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
            .bind(Value::from(changes).to_string())
            .bind(&now)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        }

        // 5. The messages' history, 6. the log's outcomes.
        if !history.is_empty() {
            sqlx::query(
                "insert into message_events (message_id, event, from_status, to_status, detail, created_at)
                 select value ->> 0, 'provider_event', value ->> 1, value ->> 2, value ->> 3, ?2
                 from json_each(?1) order by key",
            )
            .bind(Value::from(history).to_string())
            .bind(&now)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        }
        if !log_rows.is_empty() {
            sqlx::query(
                "update webhook_deliveries set outcome = u.outcome, message_id = u.message_id
                 from (select value ->> 0 as id, value ->> 1 as outcome, value ->> 2 as message_id
                       from json_each(?1)) as u
                 where webhook_deliveries.id = u.id",
            )
            .bind(Value::from(log_rows).to_string())
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)?;
        Ok(plan.outcomes)
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
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(())
    }

    async fn webhook_deliveries(
        &self,
        provider: Option<&str>,
        page: Page,
    ) -> StoreResult<(Vec<WebhookDelivery>, i64)> {
        let listing = Listing::webhook_deliveries(DELIVERY_COLUMNS, provider, page);
        self.list(&listing, delivery_from_row).await
    }
}

const DELIVERY_COLUMNS: &str =
    "id, provider, kind, dedupe_key, verified, outcome, message_id, detail, received_at";

/// One row of the webhook log.
fn delivery_from_row(r: &SqliteRow) -> anyhow::Result<WebhookDelivery> {
    let message_id: Option<String> = r.try_get("message_id")?;
    let detail: String = r.try_get("detail")?;
    Ok(WebhookDelivery {
        id: r.try_get("id")?,
        provider: r.try_get("provider")?,
        kind: r.try_get("kind")?,
        dedupe_key: r.try_get("dedupe_key")?,
        verified: r.try_get("verified")?,
        outcome: r.try_get("outcome")?,
        message_id: message_id
            .as_deref()
            .map(Uuid::parse_str)
            .transpose()
            .context("message_id column")?,
        detail: serde_json::from_str(&detail).context("detail column")?,
        received_at: get_ts(r, "received_at")?,
    })
}
