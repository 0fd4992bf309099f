//! API keys: created by operators, looked up by hash on requests, revoked for good.

use async_trait::async_trait;
use uuid::Uuid;

use super::StoreResult;
use crate::domain::{ApiKey, NewApiKey};

#[async_trait]
pub trait ApiKeyStore: Send + Sync + 'static {
    async fn create_api_key(&self, key: &NewApiKey) -> StoreResult<ApiKey>;

    /// Every key, revoked ones included, oldest first.
    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>>;

    /// The key whose hash this is, revoked or not.
    async fn find_api_key(&self, key_hash: &str) -> StoreResult<Option<ApiKey>>;

    /// Revokes a key (a revoked key stays revoked, with its first revocation time);
    /// `None` when no key has this id.
    async fn revoke_api_key(&self, id: Uuid) -> StoreResult<Option<ApiKey>>;
}
