//! The suppression list on PostgreSQL.

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, PgConnection};

use super::{PgStore, classify};
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
    conn: &mut PgConnection,
    entry: &Suppression,
    action: &str,
    cause: &SuppressionCause,
) -> StoreResult<()> {
    sqlx::query(
        "insert into suppression_events (address, channel, action, reason, cause, cause_ref)
         values ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&entry.address)
    .bind(entry.channel.as_str())
    .bind(action)
    .bind(entry.reason.as_str())
    .bind(cause.kind())
    .bind(cause.reference())
    .run(conn)
    .await?;
    Ok(())
}

/// Adds `address` unless listed (recording the addition); the new entry, if any.
async fn add(
    conn: &mut PgConnection,
    address: &SuppressedAddress,
    reason: SuppressionReason,
    cause: &SuppressionCause,
) -> StoreResult<Option<Suppression>> {
    let added = sqlx::query(AssertSqlSafe(format!(
        "insert into suppressions (address, channel, reason) values ($1, $2, $3)
         on conflict (address) do nothing
         returning {SUPPRESSION_COLUMNS}"
    )))
    .bind(address.as_str())
    .bind(address.channel().as_str())
    .bind(reason.as_str())
    .optional(&mut *conn, suppressions::suppression)
    .await?;
    if let Some(entry) = &added {
        record(conn, entry, "added", cause).await?;
    }
    Ok(added)
}

/// Removes `address` if listed (recording the removal); the removed entry, if any.
async fn remove(
    conn: &mut PgConnection,
    address: &SuppressedAddress,
    cause: &SuppressionCause,
) -> StoreResult<Option<Suppression>> {
    let removed = sqlx::query(AssertSqlSafe(format!(
        "delete from suppressions where address = $1 returning {SUPPRESSION_COLUMNS}"
    )))
    .bind(address.as_str())
    .optional(&mut *conn, suppressions::suppression)
    .await?;
    if let Some(entry) = &removed {
        record(conn, entry, "removed", cause).await?;
    }
    Ok(removed)
}

/// Applies the keyword messages of a batch inside the transaction storing them.
pub(super) async fn apply_keywords(
    conn: &mut PgConnection,
    changes: &[KeywordChange],
) -> StoreResult<()> {
    for change in changes {
        if change.opt_out {
            add(
                conn,
                &change.address,
                SuppressionReason::OptedOut,
                &change.cause,
            )
            .await?;
        } else {
            remove(conn, &change.address, &change.cause).await?;
        }
    }
    Ok(())
}

#[async_trait]
impl SuppressionStore for PgStore {
    async fn suppress(
        &self,
        address: &SuppressedAddress,
        reason: SuppressionReason,
        cause: &SuppressionCause,
    ) -> StoreResult<Suppressed> {
        let mut tx = self.pool().begin().await.map_err(classify)?;
        let result = match add(&mut tx, address, reason, cause).await? {
            Some(entry) => Suppressed::Added(entry),
            None => Suppressed::Existing(
                sqlx::query(AssertSqlSafe(format!(
                    "select {SUPPRESSION_COLUMNS} from suppressions where address = $1"
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
        let mut tx = self.pool().begin().await.map_err(classify)?;
        let removed = remove(&mut tx, address, cause).await?;
        tx.commit().await.map_err(classify)?;
        Ok(removed)
    }

    async fn find_suppressions(&self, addresses: &[String]) -> StoreResult<Vec<Suppression>> {
        if addresses.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query(AssertSqlSafe(format!(
            "select {SUPPRESSION_COLUMNS} from suppressions where address = any($1)"
        )))
        .bind(addresses)
        .all(self.pool(), suppressions::suppression)
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
            "select {SUPPRESSION_EVENT_COLUMNS} from suppression_events where address = $1 order by id"
        )))
        .bind(address)
        .all(self.pool(), suppressions::suppression_change)
        .await
    }
}
