//! SQLite implementation of `Store`, one file per aggregate (mirroring `store::postgres`):
//! the embedded deployment's database, a single file under `./data`.
//!
//! SQLite runs one write transaction at a time, so writes go through a pool of exactly one
//! connection (in-process serialisation instead of lock contention) and every write is a
//! batch: the send path's group commit hands whole batches to `insert_messages`, and the
//! worker claims and records outcomes a batch at a time. Reads use their own pool; in WAL
//! mode they never wait for the writer.
//!
//! Durability: WAL with `synchronous=FULL`, so every commit is fsynced before a 201 is
//! answered. `NORMAL` would survive a killed process but not a power cut or kernel crash;
//! with group commit one fsync covers a whole batch, so the stronger promise is cheap.
//!
//! Representations sort as text: ids are hyphenated lower-case UUIDs (v7 sorts by time) and
//! timestamps are UTC with a fixed six-digit fraction (`2026-11-28T10:00:00.123456Z`),
//! so `order by created_at` and comparisons with a bound "now" are plain text comparisons.

mod api_keys;
mod conversations;
mod corrections;
mod dead_letters;
mod events;
mod messages;
mod schedule;
mod suppressions;
mod webhooks;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteQueryResult,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite};
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};
use uuid::Uuid;

use super::query::{Listing, SQLITE};
use super::rows::{self, Backend, Decoder, Plain, StoredRow};
use super::{Listed, Store, StoreError, StoreResult};
use crate::config::ConnectionUrl;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a statement waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct SqliteStore {
    /// Exactly one connection: SQLite has one writer at a time.
    writer: SqlitePool,
    reader: SqlitePool,
    path: PathBuf,
    /// Held while the process runs when it must be the only one using this file.
    _lock: Option<std::sync::Arc<File>>,
}

impl SqliteStore {
    /// Opens (creating the file and its directory if needed) and migrates the database.
    pub async fn open(url: &ConnectionUrl, readers: u32) -> anyhow::Result<Self> {
        let (options, path) = options(url)?;
        Self::open_with(options, path, readers, None).await
    }

    /// Opens the database for a process that must be its only user (the in-process queue
    /// recovers every unfinished message at start-up, which is only safe if no other process
    /// is working on them). A second process fails fast instead of racing the first.
    pub async fn open_exclusive(url: &ConnectionUrl, readers: u32) -> anyhow::Result<Self> {
        let (options, path) = options(url)?;
        let lock_path = lock_path(&path);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open the lock file {}", lock_path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                "another messaging-service process is already using {} (lock file {}); stop it first (`make stop`)",
                path.display(),
                lock_path.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", lock_path.display()));
            }
        }
        Self::open_with(options, path, readers, Some(std::sync::Arc::new(file))).await
    }

    async fn open_with(
        options: SqliteConnectOptions,
        path: PathBuf,
        readers: u32,
        lock: Option<std::sync::Arc<File>>,
    ) -> anyhow::Result<Self> {
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await
            .with_context(|| format!("cannot open the SQLite database {}", path.display()))?;
        MIGRATOR
            .run(&writer)
            .await
            .context("running SQLite migrations")?;
        let reader = SqlitePoolOptions::new()
            .max_connections(readers.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(options.create_if_missing(false));
        Ok(Self {
            writer,
            reader,
            path,
            _lock: lock,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Drops every table and applies the migrations again.
    pub async fn reset(&self) -> anyhow::Result<()> {
        let tables: Vec<String> = sqlx::query_scalar(
            // Virtual tables first: dropping one drops its shadow tables.
            "select name from sqlite_master where type = 'table' and name not like 'sqlite_%'
             order by sql like 'create virtual table%' desc",
        )
        .fetch_all(&self.writer)
        .await
        .context("listing tables")?;
        let mut tx = self.writer.begin().await?;
        sqlx::query("pragma defer_foreign_keys = on")
            .execute(&mut *tx)
            .await?;
        for table in tables {
            let sql = format!("drop table if exists \"{}\"", table.replace('"', "\"\""));
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await
                .with_context(|| format!("dropping {table}"))?;
        }
        tx.commit().await?;
        MIGRATOR
            .run(&self.writer)
            .await
            .context("running SQLite migrations")
    }

    /// A planned page and its total, read without waiting for the writer. Over the count
    /// limit, the total stays the limit + 1 rows counted: a lower bound.
    async fn list<T>(
        &self,
        listing: &Listing,
        decode: Decoder<Sqlite, T>,
    ) -> StoreResult<Listed<T>> {
        rows::list(&self.reader, SQLITE, listing, decode).await
    }

    /// Starts a write transaction holding the write lock from its first statement, so a
    /// concurrent writer in another process waits (busy timeout) instead of failing mid-way.
    pub(super) async fn begin_write(
        &self,
    ) -> StoreResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.writer
            .begin_with("begin immediate")
            .await
            .map_err(classify)
    }
}

/// Connection options for the file named by `url`, whose directory is created if needed.
fn options(url: &ConnectionUrl) -> anyhow::Result<(SqliteConnectOptions, PathBuf)> {
    let options = SqliteConnectOptions::from_str(url.expose())
        .context("DATABASE_URL is not a valid SQLite URL (sqlite://path/to/file.db)")?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT)
        // Statement journals (multi-row writes) in memory instead of a temporary file each.
        .pragma("temp_store", "memory");
    let path = options.get_filename().to_owned();
    if path.as_os_str().is_empty() || path.to_string_lossy().contains(":memory:") {
        anyhow::bail!(
            "DATABASE_URL must name a SQLite file (e.g. sqlite://data/messaging.db): an in-memory database would not survive a restart"
        );
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    }
    Ok((options, path))
}

fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

const TIMESTAMP: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
const TIMESTAMP_IN: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond]Z");

/// A timestamp as stored: UTC, microseconds, fixed width.
pub(super) fn ts(at: OffsetDateTime) -> anyhow::Result<String> {
    at.to_offset(UtcOffset::UTC)
        .format(TIMESTAMP)
        .context("formatting a timestamp")
}

pub(super) fn parse_ts(raw: &str) -> anyhow::Result<OffsetDateTime> {
    Ok(PrimitiveDateTime::parse(raw, TIMESTAMP_IN)
        .with_context(|| format!("unexpected timestamp {raw:?} in the database"))?
        .assume_utc())
}

/// A list of ids as one JSON array parameter, read back with `json_each`.
pub(super) fn id_list(ids: &[Uuid]) -> String {
    serde_json::Value::from(ids.iter().map(|id| id.to_string()).collect::<Vec<_>>()).to_string()
}

/// Ids, instants and JSON are text (see the module documentation).
impl StoredRow for SqliteRow {
    fn get<T: Plain>(&self, column: &str) -> anyhow::Result<T> {
        Ok(self.try_get(column)?)
    }

    fn opt_uuid(&self, column: &str) -> anyhow::Result<Option<Uuid>> {
        let raw: Option<String> = self.try_get(column)?;
        raw.as_deref()
            .map(Uuid::parse_str)
            .transpose()
            .with_context(|| format!("unexpected {column} {raw:?} in the database"))
    }

    fn opt_instant(&self, column: &str) -> anyhow::Result<Option<OffsetDateTime>> {
        let raw: Option<String> = self.try_get(column)?;
        raw.as_deref().map(parse_ts).transpose()
    }

    fn json(&self, column: &str) -> anyhow::Result<serde_json::Value> {
        let raw: String = self.try_get(column)?;
        serde_json::from_str(&raw).with_context(|| format!("{column} column"))
    }

    fn first<T: Plain>(&self) -> anyhow::Result<T> {
        Ok(self.try_get(0)?)
    }
}

/// Separates "the database cannot be used right now" (503, try later) from everything else.
pub(super) fn classify(err: sqlx::Error) -> StoreError {
    Sqlite::classify(err)
}

impl Backend for Sqlite {
    fn rows_affected(done: &SqliteQueryResult) -> u64 {
        done.rows_affected()
    }

    fn unavailable(err: &sqlx::Error) -> bool {
        // Primary result codes: 5 BUSY, 6 LOCKED, 10 IOERR, 13 FULL, 14 CANTOPEN.
        let code = match err {
            sqlx::Error::Database(db) => db.code().and_then(|c| c.parse::<i32>().ok()),
            _ => None,
        };
        code.is_some_and(|c| matches!(c & 0xff, 5 | 6 | 10 | 13 | 14))
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("select 1")
            .execute(&self.reader)
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Both pools together: the single writer connection and the readers.
    fn pool_usage(&self) -> Option<super::PoolUsage> {
        let idle = |p: &SqlitePool| u32::try_from(p.num_idle()).unwrap_or(u32::MAX);
        Some(super::PoolUsage {
            size: self.writer.size() + self.reader.size(),
            idle: idle(&self.writer).saturating_add(idle(&self.reader)),
            max: self.writer.options().get_max_connections()
                + self.reader.options().get_max_connections(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_timestamps_sort_like_the_instants_they_name() {
        let base = time::macros::datetime!(2026-11-28 10:00:00.5 UTC);
        let later = [
            base + Duration::from_micros(1),
            base + Duration::from_millis(500),
            base + Duration::from_secs(3600 * 24 * 400),
        ];
        let mut previous = ts(base).unwrap();
        for t in later {
            let s = ts(t).unwrap();
            assert!(s > previous, "{s} should sort after {previous}");
            previous = s;
        }
    }

    #[test]
    fn timestamps_round_trip_at_microsecond_precision() {
        let t = time::macros::datetime!(2026-01-02 03:04:05.123456789 +02:00);
        let stored = ts(t).unwrap();
        assert_eq!(stored, "2026-01-02T01:04:05.123456Z");
        assert_eq!(
            parse_ts(&stored).unwrap(),
            time::macros::datetime!(2026-01-02 01:04:05.123456 UTC)
        );
    }
}
