//! API keys on PostgreSQL.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::{PgStore, classify};
use crate::domain::{ApiKey, NewApiKey};
use crate::store::{ApiKeyStore, StoreError, StoreResult};

const COLUMNS: &str = "id, name, prefix, created_at, revoked_at";

fn key_from_row(row: &PgRow) -> StoreResult<ApiKey> {
    let read = || -> Result<ApiKey, sqlx::Error> {
        Ok(ApiKey {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            prefix: row.try_get("prefix")?,
            created_at: row.try_get("created_at")?,
            revoked_at: row.try_get("revoked_at")?,
        })
    };
    read().map_err(|e| StoreError::Other(e.into()))
}

#[async_trait]
impl ApiKeyStore for PgStore {
    async fn create_api_key(&self, key: &NewApiKey) -> StoreResult<ApiKey> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "insert into api_keys (id, name, prefix, key_hash) values ($1, $2, $3, $4)
             returning {COLUMNS}"
        )))
        .bind(key.id)
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(&key.key_hash)
        .fetch_one(self.pool())
        .await
        .map_err(classify)?;
        key_from_row(&row)
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "select {COLUMNS} from api_keys order by created_at, id"
        )))
        .fetch_all(self.pool())
        .await
        .map_err(classify)?;
        rows.iter().map(key_from_row).collect()
    }

    async fn find_api_key(&self, key_hash: &str) -> StoreResult<Option<ApiKey>> {
        // Served by the unique index on key_hash.
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "select {COLUMNS} from api_keys where key_hash = $1"
        )))
        .bind(key_hash)
        .fetch_optional(self.pool())
        .await
        .map_err(classify)?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn revoke_api_key(&self, id: Uuid) -> StoreResult<Option<ApiKey>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "update api_keys
                set revoked_at = coalesce(revoked_at, now()), updated_at = now()
              where id = $1
          returning {COLUMNS}"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(classify)?;
        row.as_ref().map(key_from_row).transpose()
    }
}
