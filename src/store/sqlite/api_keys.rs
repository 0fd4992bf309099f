//! API keys on SQLite.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{SqliteStore, classify, ts};
use crate::domain::{ApiKey, NewApiKey};
use crate::store::rows::{self, API_KEY_COLUMNS, Fetch};
use crate::store::{ApiKeyStore, StoreResult};

#[async_trait]
impl ApiKeyStore for SqliteStore {
    async fn create_api_key(&self, key: &NewApiKey) -> StoreResult<ApiKey> {
        let now = ts(OffsetDateTime::now_utc())?;
        let mut tx = self.begin_write().await?;
        let created = sqlx::query(AssertSqlSafe(format!(
            "insert into api_keys (id, name, prefix, key_hash, created_at, updated_at)
             values (?1, ?2, ?3, ?4, ?5, ?5)
             returning {API_KEY_COLUMNS}"
        )))
        .bind(key.id.to_string())
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(&key.key_hash)
        .bind(&now)
        .one(&mut *tx, rows::api_key)
        .await?;
        tx.commit().await.map_err(classify)?;
        Ok(created)
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>> {
        let sql = format!("select {API_KEY_COLUMNS} from api_keys order by created_at, id");
        sqlx::query(AssertSqlSafe(sql))
            .all(&self.reader, rows::api_key)
            .await
    }

    async fn find_api_key(&self, key_hash: &str) -> StoreResult<Option<ApiKey>> {
        // Served by the unique index on key_hash.
        let sql = format!("select {API_KEY_COLUMNS} from api_keys where key_hash = ?1");
        sqlx::query(AssertSqlSafe(sql))
            .bind(key_hash)
            .optional(&self.reader, rows::api_key)
            .await
    }

    async fn revoke_api_key(&self, id: Uuid) -> StoreResult<Option<ApiKey>> {
        let now = ts(OffsetDateTime::now_utc())?;
        let mut tx = self.begin_write().await?;
        let revoked = sqlx::query(AssertSqlSafe(format!(
            "update api_keys
                set revoked_at = coalesce(revoked_at, ?2), updated_at = ?2
              where id = ?1
          returning {API_KEY_COLUMNS}"
        )))
        .bind(id.to_string())
        .bind(&now)
        .optional(&mut *tx, rows::api_key)
        .await?;
        tx.commit().await.map_err(classify)?;
        Ok(revoked)
    }
}
