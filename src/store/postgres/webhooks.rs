//! Provider callbacks on PostgreSQL: one transaction per batch of receipts.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::Row;
use uuid::Uuid;

use super::{PgStore, classify};
use crate::domain::MessageStatus;
use crate::store::query::Listing;
use crate::store::{
    EventOutcome, Page, ProviderEvent, StoreResult, WebhookDelivery, WebhookLogEntry, WebhookStore,
    plan_receipts,
};
use sqlx::postgres::PgRow;

#[async_trait]
impl WebhookStore for PgStore {
    #[tracing::instrument(skip_all, fields(count = events.len()))]
    async fn apply_provider_events(
        &self,
        events: &[ProviderEvent],
    ) -> StoreResult<Vec<EventOutcome>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await.map_err(classify)?;

        // 1. Claim each dedupe key in the log; a key already there is a replay.
        let providers: Vec<&str> = events.iter().map(|e| e.provider).collect();
        let keys: Vec<&str> = events.iter().map(|e| e.dedupe_key.as_str()).collect();
        let details: Vec<String> = events
            .iter()
            .map(|e| serde_json::json!({ "event": e.event, "provider_message_id": e.provider_message_id }).to_string())
            .collect();
        let rows = sqlx::query(
            "insert into webhook_deliveries (provider, kind, dedupe_key, verified, outcome, detail)
             select provider, 'receipt', dedupe_key, true, 'pending', detail::jsonb
             from unnest($1::text[], $2::text[], $3::text[]) as t(provider, dedupe_key, detail)
             on conflict (provider, dedupe_key) where dedupe_key is not null and outcome <> 'duplicate' do nothing
             returning id, provider, dedupe_key",
        )
        .bind(&providers)
        .bind(&keys)
        .bind(&details)
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

        // 2. The messages concerned, locked in id order so concurrent batches cannot deadlock.
        let pmids: Vec<&str> = events
            .iter()
            .map(|e| e.provider_message_id.as_str())
            .collect();
        let rows = sqlx::query(
            "select id, status, provider_message_id from messages
             where provider_message_id = any($1) and direction = 'outbound'
             order by id
             for update",
        )
        .bind(&pmids)
        .fetch_all(&mut *tx)
        .await
        .map_err(classify)?;
        let mut messages: HashMap<String, (Uuid, MessageStatus)> = HashMap::new();
        for row in &rows {
            let raw: String = row.try_get("status").map_err(classify)?;
            let Some(status) = MessageStatus::parse(&raw) else {
                continue;
            };
            messages
                .entry(row.try_get("provider_message_id").map_err(classify)?)
                .or_insert((row.try_get("id").map_err(classify)?, status));
        }

        // 3. Decide what each event does (shared by every backend), then write it down.
        let plan = plan_receipts(events, log_ids, messages);
        if !plan.duplicates.is_empty() {
            let pick = |f: &dyn Fn(usize) -> String| -> Vec<String> {
                plan.duplicates.iter().map(|i| f(*i)).collect()
            };
            sqlx::query(
                "insert into webhook_deliveries (provider, kind, dedupe_key, verified, outcome, detail)
                 select provider, 'receipt', dedupe_key, true, 'duplicate', detail::jsonb
                 from unnest($1::text[], $2::text[], $3::text[]) as t(provider, dedupe_key, detail)",
            )
            .bind(pick(&|i| events[i].provider.to_owned()))
            .bind(pick(&|i| events[i].dedupe_key.clone()))
            .bind(pick(&|i| details[i].clone()))
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        }

        // 4. Status changes, one statement.
        if !plan.status_changes.is_empty() {
            let changes = &plan.status_changes;
            let ids: Vec<Uuid> = changes.iter().map(|c| c.message_id).collect();
            let statuses: Vec<&str> = changes.iter().map(|c| c.status.as_str()).collect();
            let codes: Vec<Option<&str>> = changes
                .iter()
                .map(|c| c.error.as_ref().map(|e| e.code.as_str()))
                .collect();
            let texts: Vec<Option<&str>> = changes
                .iter()
                .map(|c| c.error.as_ref().map(|e| e.message.as_str()))
                .collect();
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
            .bind(&ids)
            .bind(&statuses)
            .bind(&codes)
            .bind(&texts)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        }

        // 5. The messages' history, 6. the log's outcomes.
        if !plan.history.is_empty() {
            let h = &plan.history;
            sqlx::query(
                "insert into message_events (message_id, event, from_status, to_status, detail)
                 select id, 'provider_event', from_status, to_status, detail::jsonb
                 from unnest($1::uuid[], $2::text[], $3::text[], $4::text[])
                     as t(id, from_status, to_status, detail)",
            )
            .bind(h.iter().map(|e| e.message_id).collect::<Vec<_>>())
            .bind(
                h.iter()
                    .map(|e| e.from.map(|s| s.as_str()))
                    .collect::<Vec<_>>(),
            )
            .bind(
                h.iter()
                    .map(|e| e.to.map(|s| s.as_str()))
                    .collect::<Vec<_>>(),
            )
            .bind(h.iter().map(|e| e.detail.to_string()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        }
        if !plan.log_results.is_empty() {
            let l = &plan.log_results;
            sqlx::query(
                "update webhook_deliveries w set outcome = u.outcome, message_id = u.message_id
                 from unnest($1::int8[], $2::text[], $3::uuid[]) as u(id, outcome, message_id)
                 where w.id = u.id",
            )
            .bind(l.iter().map(|r| r.0).collect::<Vec<_>>())
            .bind(l.iter().map(|r| r.1.as_str()).collect::<Vec<_>>())
            .bind(l.iter().map(|r| r.2).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)?;
        Ok(plan.outcomes)
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
        .execute(&self.pool)
        .await
        .map_err(classify)?;
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
fn delivery_from_row(r: &PgRow) -> anyhow::Result<WebhookDelivery> {
    Ok(WebhookDelivery {
        id: r.try_get("id")?,
        provider: r.try_get("provider")?,
        kind: r.try_get("kind")?,
        dedupe_key: r.try_get("dedupe_key")?,
        verified: r.try_get("verified")?,
        outcome: r.try_get("outcome")?,
        message_id: r.try_get("message_id")?,
        detail: r.try_get("detail")?,
        received_at: r.try_get("received_at")?,
    })
}
