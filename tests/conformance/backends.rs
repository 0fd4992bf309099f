//! One fresh, isolated instance of each backend per test, removed afterwards.

use std::sync::Arc;

use messaging_service::config::ConnectionUrl;
use messaging_service::queue::Queue;
use messaging_service::queue::in_process::InProcessQueue;
use messaging_service::queue::redis::RedisQueue;
use messaging_service::store::Store;
use messaging_service::store::postgres::PgStore;
use messaging_service::store::sqlite::SqliteStore;
use sqlx::Connection;
use uuid::Uuid;

const REDIS_URL: &str = "redis://127.0.0.1:6379/0";

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| {
        "postgres://messaging_user:messaging_password@127.0.0.1:5432/postgres".into()
    })
}

/// What a test holds on to; dropping it removes the backend's data.
pub enum Cleanup {
    PgDatabase(String),
    SqliteDir(std::path::PathBuf),
    RedisPrefix(String),
    Nothing,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        match self {
            Cleanup::Nothing => {}
            Cleanup::SqliteDir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::PgDatabase(name) => {
                let name = name.clone();
                on_own_runtime(async move {
                    if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url()).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "drop database if exists {name} with (force)"
                        )))
                        .execute(&mut admin)
                        .await;
                    }
                })
            }
            Cleanup::RedisPrefix(prefix) => {
                let prefix = prefix.clone();
                on_own_runtime(async move {
                    if let Ok(client) = redis::Client::open(REDIS_URL)
                        && let Ok(mut conn) = client.get_multiplexed_async_connection().await
                    {
                        let keys: Vec<String> = redis::cmd("KEYS")
                            .arg(format!("{prefix}*"))
                            .query_async(&mut conn)
                            .await
                            .unwrap_or_default();
                        if !keys.is_empty() {
                            let _: redis::RedisResult<()> =
                                redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
                        }
                    }
                })
            }
        }
    }
}

/// Async clean-up from `Drop`, which may run inside or outside a runtime.
fn on_own_runtime(work: impl std::future::Future<Output = ()> + Send + 'static) {
    let _ = std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(work);
        }
    })
    .join();
}

pub async fn postgres() -> (Arc<dyn Store>, Cleanup) {
    let name = format!("conformance_{}", Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&admin_url())
        .await
        .expect("connect to PostgreSQL as the test admin");
    sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}")))
        .execute(&mut admin)
        .await
        .expect("create test database");
    let _ = admin.close().await;
    let mut url = url::Url::parse(&admin_url()).expect("TEST_DATABASE_URL is a URL");
    url.set_path(&name);
    let store = PgStore::connect_lazy(&ConnectionUrl::new(url.to_string()), 5).expect("pool");
    store.migrate().await.expect("migrate");
    (Arc::new(store), Cleanup::PgDatabase(name))
}

pub async fn sqlite() -> (Arc<dyn Store>, Cleanup) {
    let dir = std::env::temp_dir().join(format!("conformance-{}", Uuid::new_v4().simple()));
    let url = format!("sqlite://{}", dir.join("messaging.db").display());
    let store = SqliteStore::open(&ConnectionUrl::new(url), 4)
        .await
        .expect("open SQLite");
    (Arc::new(store), Cleanup::SqliteDir(dir))
}

pub async fn redis() -> (Arc<dyn Queue>, Cleanup) {
    let prefix = format!("conformance-{}:", Uuid::new_v4().simple());
    let queue = RedisQueue::new(&ConnectionUrl::new(REDIS_URL), &prefix).expect("redis queue");
    queue.ensure_groups().await.expect("consumer groups");
    (Arc::new(queue), Cleanup::RedisPrefix(prefix))
}

pub async fn in_process() -> (Arc<dyn Queue>, Cleanup) {
    (Arc::new(InProcessQueue::new()), Cleanup::Nothing)
}
