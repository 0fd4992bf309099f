//! One fresh, isolated instance of each backend per test, removed afterwards (the guard each
//! constructor returns cleans up when it drops), and the macros that run a case on every one.

use std::sync::Arc;

use messaging_service::config::ConnectionUrl;
use messaging_service::queue::Queue;
use messaging_service::queue::in_process::InProcessQueue;
use messaging_service::queue::redis::RedisQueue;
use messaging_service::store::Store;
use messaging_service::store::postgres::PgStore;
use messaging_service::store::sqlite::SqliteStore;

use crate::scratch::{REDIS_URL, ScratchDatabase, ScratchDir, ScratchPrefix};

/// One test per case in module `$module`, each on a fresh backend from `$make` (which
/// answers the backend and a guard that removes it).
macro_rules! cases_on {
    ($module:ident, $make:path, $($case:ident),+) => {
        mod $module {
            $(
                #[tokio::test]
                async fn $case() {
                    let (backend, _cleanup) = $make().await;
                    super::$case(backend).await;
                }
            )+
        }
    };
}

/// Runs each named `async fn(Arc<dyn Store>)` as one test on PostgreSQL and one on SQLite.
macro_rules! on_every_store {
    ($($case:ident),+ $(,)?) => {
        cases_on!(on_postgresql, crate::backends::postgres, $($case),+);
        cases_on!(on_sqlite, crate::backends::sqlite, $($case),+);
    };
}

/// Runs each named `async fn(Arc<dyn Queue>)` as one test on Redis and one in process.
macro_rules! on_every_queue {
    ($($case:ident),+ $(,)?) => {
        cases_on!(on_redis, crate::backends::redis, $($case),+);
        cases_on!(on_in_process, crate::backends::in_process, $($case),+);
    };
}

pub async fn postgres() -> (Arc<dyn Store>, ScratchDatabase) {
    let db = ScratchDatabase::create("conformance").await;
    let store = PgStore::connect_lazy(&ConnectionUrl::new(db.url()), 5).expect("pool");
    store.migrate().await.expect("migrate");
    (Arc::new(store), db)
}

pub async fn sqlite() -> (Arc<dyn Store>, ScratchDir) {
    let dir = ScratchDir::new("conformance");
    let store = SqliteStore::open(&ConnectionUrl::new(dir.sqlite_url()), 4)
        .await
        .expect("open SQLite");
    (Arc::new(store), dir)
}

pub async fn redis() -> (Arc<dyn Queue>, ScratchPrefix) {
    let prefix = ScratchPrefix::new("conformance");
    let queue =
        RedisQueue::new(&ConnectionUrl::new(REDIS_URL), prefix.as_str()).expect("redis queue");
    queue.ensure_groups().await.expect("consumer groups");
    (Arc::new(queue), prefix)
}

pub async fn in_process() -> (Arc<dyn Queue>, ()) {
    (Arc::new(InProcessQueue::new()), ())
}
