//! Scratch resources for the test suites: a PostgreSQL database, a Redis key prefix and a
//! directory, each fresh and unique to one test, each removed when its guard drops — also
//! when the test panics, and also when it panics half-way through setting up. Both test
//! crates include this file (`#[path = "../common/scratch.rs"]`).

use std::path::{Path, PathBuf};

use sqlx::Connection;
use uuid::Uuid;

pub const REDIS_URL: &str = "redis://127.0.0.1:6379/0";

/// The PostgreSQL role and server the tests create their databases with.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| {
        "postgres://messaging_user:messaging_password@127.0.0.1:5432/postgres".into()
    })
}

/// A fresh PostgreSQL database, dropped (with its connections) when this drops.
pub struct ScratchDatabase {
    name: String,
}

impl ScratchDatabase {
    /// Creates `{label}_{uuid}`.
    pub async fn create(label: &str) -> Self {
        let name = format!("{label}_{}", Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url())
            .await
            .expect("connect to PostgreSQL as the test admin");
        sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}")))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let _ = admin.close().await;
        Self { name }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its URL, on the admin URL's server.
    pub fn url(&self) -> String {
        let mut url = url::Url::parse(&admin_url()).expect("TEST_DATABASE_URL is a URL");
        url.set_path(&self.name);
        url.to_string()
    }

    /// Its URL through `host:port` (a proxy standing in front of the server).
    pub fn url_at(&self, addr: &str) -> String {
        let mut url = url::Url::parse(&self.url()).expect("a database URL");
        let (host, port) = addr.split_once(':').expect("host:port");
        url.set_host(Some(host)).expect("host");
        url.set_port(Some(port.parse().expect("port")))
            .expect("port");
        url.to_string()
    }

    /// Whether a database of this name exists (false once dropped).
    pub async fn exists(name: &str) -> bool {
        let mut admin = sqlx::PgConnection::connect(&admin_url())
            .await
            .expect("connect to PostgreSQL as the test admin");
        let found: Option<i32> = sqlx::query_scalar("select 1 from pg_database where datname = $1")
            .bind(name)
            .fetch_optional(&mut admin)
            .await
            .expect("read pg_database");
        let _ = admin.close().await;
        found.is_some()
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        on_own_runtime(async move {
            if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url()).await {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "drop database if exists {name} with (force)"
                )))
                .execute(&mut admin)
                .await;
                let _ = admin.close().await;
            }
        });
    }
}

/// A fresh Redis key prefix (`{label}-{uuid}:`); every key under it is deleted when this
/// drops.
pub struct ScratchPrefix {
    prefix: String,
}

impl ScratchPrefix {
    pub fn new(label: &str) -> Self {
        Self {
            prefix: format!("{label}-{}:", Uuid::new_v4().simple()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.prefix
    }

    /// The keys under `prefix` in the shared Redis.
    pub async fn keys_under(prefix: &str) -> redis::RedisResult<Vec<String>> {
        scan(&mut redis_connection().await?, prefix).await
    }

    async fn delete_all(prefix: &str) -> redis::RedisResult<()> {
        let mut conn = redis_connection().await?;
        let keys = scan(&mut conn, prefix).await?;
        if keys.is_empty() {
            return Ok(());
        }
        redis::cmd("UNLINK").arg(keys).query_async(&mut conn).await
    }
}

async fn redis_connection() -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    redis::Client::open(REDIS_URL)?
        .get_multiplexed_async_connection()
        .await
}

/// `SCAN` rather than `KEYS`, so the shared Redis is never blocked.
async fn scan(
    conn: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
) -> redis::RedisResult<Vec<String>> {
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

impl Drop for ScratchPrefix {
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        on_own_runtime(async move {
            if let Err(e) = Self::delete_all(&prefix).await {
                use std::io::Write;
                // Past the output capture: a leftover in the shared Redis is worth seeing.
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "could not delete the Redis keys under {prefix}: {e}"
                );
            }
        });
    }
}

/// A fresh directory under the system's temporary directory, removed when this drops.
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `{label}-{uuid}`.
    pub fn new(label: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{label}-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("create a scratch directory");
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A SQLite URL for a database file inside it.
    pub fn sqlite_url(&self) -> String {
        format!("sqlite://{}", self.path.join("messaging.db").display())
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Async clean-up from `Drop`, which may run inside a runtime (even a single-threaded one,
/// which must not block on itself) or outside any: on a thread and a runtime of its own.
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
