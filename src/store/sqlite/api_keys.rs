//! API keys on SQLite.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use sqlx::sqlite::SqliteRow;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{SqliteStore, classify, get_opt_ts, get_ts, get_uuid, ts};
use crate::domain::{ApiKey, NewApiKey};
use crate::store::{ApiKeyStore, StoreResult};

const COLUMNS: &str = "id, name, prefix, created_at, revoked_at";

fn key_from_row(row: &SqliteRow) -> StoreResult<ApiKey> {
    use sqlx::Row;
    let read = || -> anyhow::Result<ApiKey> {
        Ok(ApiKey {
            id: get_uuid(row, "id")?,
            name: row.try_get("name")?,
            prefix: row.try_get("prefix")?,
            created_at: get_ts(row, "created_at")?,
            revoked_at: get_opt_ts(row, "revoked_at")?,
        })
    };
    Ok(read()?)
}

#[async_trait]
impl ApiKeyStore for SqliteStore {
    async fn create_api_key(&self, key: &NewApiKey) -> StoreResult<ApiKey> {
        let now = ts(OffsetDateTime::now_utc())?;
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "insert into api_keys (id, name, prefix, key_hash, created_at, updated_at)
             values (?1, ?2, ?3, ?4, ?5, ?5)
             returning {COLUMNS}"
        )))
        .bind(key.id.to_string())
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(&key.key_hash)
        .bind(&now)
        .fetch_one(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        key_from_row(&row)
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "select {COLUMNS} from api_keys order by created_at, id"
        )))
        .fetch_all(&self.reader)
        .await
        .map_err(classify)?;
        rows.iter().map(key_from_row).collect()
    }

    async fn find_api_key(&self, key_hash: &str) -> StoreResult<Option<ApiKey>> {
        // Served by the unique index on key_hash.
        let row = sqlx::query(AssertSqlSafe(format!(
            "select {COLUMNS} from api_keys where key_hash = ?1"
        )))
        .bind(key_hash)
        .fetch_optional(&self.reader)
        .await
        .map_err(classify)?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn revoke_api_key(&self, id: Uuid) -> StoreResult<Option<ApiKey>> {
        let now = ts(OffsetDateTime::now_utc())?;
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "update api_keys
                set revoked_at = coalesce(revoked_at, ?2), updated_at = ?2
              where id = ?1
          returning {COLUMNS}"
        )))
        .bind(id.to_string())
        .bind(&now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        row.as_ref().map(key_from_row).transpose()
    }
}
