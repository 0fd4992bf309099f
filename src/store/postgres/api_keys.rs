//! API keys on PostgreSQL.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::PgStore;
use crate::domain::{ApiKey, NewApiKey};
use crate::store::rows::{self, API_KEY_COLUMNS, Fetch};
use crate::store::{ApiKeyStore, StoreResult};

#[async_trait]
impl ApiKeyStore for PgStore {
    async fn create_api_key(&self, key: &NewApiKey) -> StoreResult<ApiKey> {
        sqlx::query(AssertSqlSafe(format!(
            "insert into api_keys (id, name, prefix, key_hash) values ($1, $2, $3, $4)
             returning {API_KEY_COLUMNS}"
        )))
        .bind(key.id)
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(&key.key_hash)
        .one(self.pool(), rows::api_key)
        .await
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>> {
        let sql = format!("select {API_KEY_COLUMNS} from api_keys order by created_at, id");
        sqlx::query(AssertSqlSafe(sql))
            .all(self.pool(), rows::api_key)
            .await
    }

    async fn find_api_key(&self, key_hash: &str) -> StoreResult<Option<ApiKey>> {
        // Served by the unique index on key_hash.
        let sql = format!("select {API_KEY_COLUMNS} from api_keys where key_hash = $1");
        sqlx::query(AssertSqlSafe(sql))
            .bind(key_hash)
            .optional(self.pool(), rows::api_key)
            .await
    }

    async fn revoke_api_key(&self, id: Uuid) -> StoreResult<Option<ApiKey>> {
        sqlx::query(AssertSqlSafe(format!(
            "update api_keys
                set revoked_at = coalesce(revoked_at, now()), updated_at = now()
              where id = $1
          returning {API_KEY_COLUMNS}"
        )))
        .bind(id)
        .optional(self.pool(), rows::api_key)
        .await
    }
}
