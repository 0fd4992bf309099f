//! PostgreSQL implementation of `Store`, one file per aggregate. Writes are batched: one
//! transaction stores many messages (group commit), and worker outcomes are recorded many at
//! a time, because a durable commit costs about a millisecond whatever its size.

mod api_keys;
mod conversations;
mod dead_letters;
mod messages;
mod webhooks;

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, Postgres, Row};

use super::query::{Bind, Listing, POSTGRES, Sql};
use super::{Store, StoreError, StoreResult};
use crate::config::ConnectionUrl;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// A pool that connects on first use, so the API can start (and report through
    /// `/ready`) while the database is still coming up.
    pub fn connect_lazy(url: &ConnectionUrl, max_connections: u32) -> anyhow::Result<Self> {
        let options: PgConnectOptions = url
            .expose()
            .parse()
            .context("DATABASE_URL is not a valid PostgreSQL URL")?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(options.application_name("messaging-service"));
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies pending migrations (serialised across processes by an advisory lock).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        MIGRATOR
            .run(&self.pool)
            .await
            .context("running PostgreSQL migrations")
    }

    /// A planned page and its total.
    async fn list<T>(
        &self,
        listing: &Listing,
        from_row: fn(&PgRow) -> anyhow::Result<T>,
    ) -> StoreResult<(Vec<T>, i64)> {
        let (page, count) = (listing.page_sql(POSTGRES), listing.count_sql(POSTGRES));
        let rows = bound(&page).fetch_all(&self.pool).await.map_err(classify)?;
        let row = bound(&count)
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        let total: i64 = row.try_get(0).map_err(classify)?;
        Ok((from_rows(&rows, from_row)?, total))
    }

    /// Drops every table and applies the migrations again.
    pub async fn reset(&self) -> anyhow::Result<()> {
        sqlx::raw_sql("drop schema public cascade; create schema public;")
            .execute(&self.pool)
            .await
            .context("dropping the public schema")?;
        self.migrate().await
    }
}

/// Separates "the database is not there" (503, try later) from everything else.
pub(super) fn classify(err: sqlx::Error) -> StoreError {
    let unavailable = match &err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        // Class 08: connection exception; 57P: operator intervention (shutdown, restart);
        // 53: insufficient resources (too many connections, disk full).
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c.starts_with("53")),
        _ => false,
    };
    if unavailable {
        StoreError::Unavailable(err.into())
    } else {
        StoreError::Other(err.into())
    }
}

/// A planned statement with its values bound, in order.
fn bound(sql: &Sql) -> Query<'_, Postgres, PgArguments> {
    let mut q = sqlx::query(AssertSqlSafe(sql.text.clone()));
    for value in &sql.binds {
        q = match value {
            Bind::Text(t) => q.bind(t.as_str()),
            Bind::Uuid(id) => q.bind(*id),
            Bind::Int(n) => q.bind(*n),
        };
    }
    q
}

/// Every row read with `from_row`.
pub(super) fn from_rows<T>(
    rows: &[PgRow],
    from_row: fn(&PgRow) -> anyhow::Result<T>,
) -> StoreResult<Vec<T>> {
    Ok(rows
        .iter()
        .map(from_row)
        .collect::<anyhow::Result<Vec<_>>>()?)
}

pub(super) fn parse_enum<T>(
    row: &PgRow,
    column: &str,
    parse: fn(&str) -> Option<T>,
) -> anyhow::Result<T> {
    let raw: String = row.try_get(column)?;
    parse(&raw).with_context(|| format!("unexpected {column} {raw:?} in the database"))
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgresql"
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("select 1")
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    fn pool_usage(&self) -> Option<super::PoolUsage> {
        Some(super::PoolUsage {
            size: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
        })
    }
}
