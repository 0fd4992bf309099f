//! The suppression list on SQLite.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use time::OffsetDateTime;

use super::{SqliteStore, classify, ts};
use crate::domain::compliance::{
    SuppressedAddress, Suppression, SuppressionCause, SuppressionChange, SuppressionReason,
};
use crate::store::rows::Fetch;
use crate::store::suppressions::{
    self, SUPPRESSION_COLUMNS, SUPPRESSION_EVENT_COLUMNS, Suppressed, SuppressionFilter,
};
use crate::store::{Page, StoreResult, SuppressionStore};

/// Appends one change to the audit trail.
const RECORD_CHANGE: &str = "insert into suppression_events (address, channel, action, reason, cause, cause_ref, created_at)
     values (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

#[async_trait]
impl SuppressionStore for SqliteStore {
    async fn suppress(
        &self,
        address: &SuppressedAddress,
        reason: SuppressionReason,
        cause: &SuppressionCause,
    ) -> StoreResult<Suppressed> {
        let now = ts(OffsetDateTime::now_utc())?;
        let mut tx = self.begin_write().await?;
        let added = sqlx::query(AssertSqlSafe(format!(
            "insert into suppressions (address, channel, reason, since, created_at, updated_at)
             values (?1, ?2, ?3, ?4, ?4, ?4)
             on conflict (address) do nothing
             returning {SUPPRESSION_COLUMNS}"
        )))
        .bind(address.as_str())
        .bind(address.channel().as_str())
        .bind(reason.as_str())
        .bind(&now)
        .optional(&mut *tx, suppressions::suppression)
        .await?;
        let result = match added {
            Some(entry) => {
                sqlx::query(RECORD_CHANGE)
                    .bind(address.as_str())
                    .bind(address.channel().as_str())
                    .bind("added")
                    .bind(reason.as_str())
                    .bind(cause.kind())
                    .bind(cause.reference())
                    .bind(&now)
                    .run(&mut *tx)
                    .await?;
                Suppressed::Added(entry)
            }
            None => Suppressed::Existing(
                sqlx::query(AssertSqlSafe(format!(
                    "select {SUPPRESSION_COLUMNS} from suppressions where address = ?1"
                )))
                .bind(address.as_str())
                .one(&mut *tx, suppressions::suppression)
                .await?,
            ),
        };
        tx.commit().await.map_err(classify)?;
        Ok(result)
    }

    async fn unsuppress(
        &self,
        address: &SuppressedAddress,
        cause: &SuppressionCause,
    ) -> StoreResult<Option<Suppression>> {
        let now = ts(OffsetDateTime::now_utc())?;
        let mut tx = self.begin_write().await?;
        let removed = sqlx::query(AssertSqlSafe(format!(
            "delete from suppressions where address = ?1 returning {SUPPRESSION_COLUMNS}"
        )))
        .bind(address.as_str())
        .optional(&mut *tx, suppressions::suppression)
        .await?;
        if let Some(entry) = &removed {
            sqlx::query(RECORD_CHANGE)
                .bind(address.as_str())
                .bind(address.channel().as_str())
                .bind("removed")
                .bind(entry.reason.as_str())
                .bind(cause.kind())
                .bind(cause.reference())
                .bind(&now)
                .run(&mut *tx)
                .await?;
        }
        tx.commit().await.map_err(classify)?;
        Ok(removed)
    }

    async fn find_suppressions(&self, addresses: &[String]) -> StoreResult<Vec<Suppression>> {
        if addresses.is_empty() {
            return Ok(Vec::new());
        }
        let list = serde_json::Value::from(addresses.to_vec()).to_string();
        sqlx::query(AssertSqlSafe(format!(
            "select {SUPPRESSION_COLUMNS} from suppressions
             where address in (select value from json_each(?1))"
        )))
        .bind(list)
        .all(&self.reader, suppressions::suppression)
        .await
    }

    async fn list_suppressions(
        &self,
        filter: &SuppressionFilter,
        page: Page,
    ) -> StoreResult<(Vec<Suppression>, i64)> {
        self.list(
            &suppressions::listing(filter, page),
            suppressions::suppression,
        )
        .await
    }

    async fn suppression_history(&self, address: &str) -> StoreResult<Vec<SuppressionChange>> {
        sqlx::query(AssertSqlSafe(format!(
            "select {SUPPRESSION_EVENT_COLUMNS} from suppression_events where address = ?1 order by id"
        )))
        .bind(address)
        .all(&self.reader, suppressions::suppression_change)
        .await
    }
}
