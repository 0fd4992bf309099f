//! The suppression list on SQLite.

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, SqliteConnection};
use time::OffsetDateTime;

use super::{SqliteStore, classify, ts};
use crate::domain::compliance::{
    SuppressedAddress, Suppression, SuppressionCause, SuppressionChange, SuppressionReason,
};
use crate::store::rows::Fetch;
use crate::store::suppressions::{
    self, KeywordChange, SUPPRESSION_COLUMNS, SUPPRESSION_EVENT_COLUMNS, Suppressed,
    SuppressionFilter,
};
use crate::store::{Page, StoreResult, SuppressionStore};

/// Appends one change to the audit trail.
async fn record(
    conn: &mut SqliteConnection,
    entry: &Suppression,
    action: &str,
    cause: &SuppressionCause,
    now: &str,
) -> StoreResult<()> {
    sqlx::query(
        "insert into suppression_events (address, channel, action, reason, cause, cause_ref, created_at)
         values (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .bind(&entry.address)
    .bind(entry.channel.as_str())
    .bind(action)
    .bind(entry.reason.as_str())
    .bind(cause.kind())
    .bind(cause.reference())
    .bind(now)
    .run(conn)
    .await?;
    Ok(())
}

/// Adds `address` unless listed (recording the addition); the new entry, if any.
async fn add(
    conn: &mut SqliteConnection,
    address: &SuppressedAddress,
    reason: SuppressionReason,
    cause: &SuppressionCause,
    now: &str,
) -> StoreResult<Option<Suppression>> {
    let added = sqlx::query(AssertSqlSafe(format!(
        "insert into suppressions (address, channel, reason, since, created_at, updated_at)
         values (?1, ?2, ?3, ?4, ?4, ?4)
         on conflict (address) do nothing
         returning {SUPPRESSION_COLUMNS}"
    )))
    .bind(address.as_str())
    .bind(address.channel().as_str())
    .bind(reason.as_str())
    .bind(now)
    .optional(&mut *conn, suppressions::suppression)
    .await?;
    if let Some(entry) = &added {
        record(conn, entry, "added", cause, now).await?;
    }
    Ok(added)
}

/// Removes `address` if listed (recording the removal); the removed entry, if any.
async fn remove(
    conn: &mut SqliteConnection,
    address: &SuppressedAddress,
    cause: &SuppressionCause,
    now: &str,
) -> StoreResult<Option<Suppression>> {
    let removed = sqlx::query(AssertSqlSafe(format!(
        "delete from suppressions where address = ?1 returning {SUPPRESSION_COLUMNS}"
    )))
    .bind(address.as_str())
    .optional(&mut *conn, suppressions::suppression)
    .await?;
    if let Some(entry) = &removed {
        record(conn, entry, "removed", cause, now).await?;
    }
    Ok(removed)
}

/// Applies the keyword messages of a batch inside the transaction storing them.
pub(super) async fn apply_keywords(
    conn: &mut SqliteConnection,
    changes: &[KeywordChange],
    now: &str,
) -> StoreResult<()> {
    for change in changes {
        if change.opt_out {
            let reason = SuppressionReason::OptedOut;
            add(conn, &change.address, reason, &change.cause, now).await?;
        } else {
            remove(conn, &change.address, &change.cause, now).await?;
        }
    }
    Ok(())
}

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
        let result = match add(&mut tx, address, reason, cause, &now).await? {
            Some(entry) => Suppressed::Added(entry),
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
        let removed = remove(&mut tx, address, cause, &now).await?;
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
        .map(|listed| (listed.items, listed.total))
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
