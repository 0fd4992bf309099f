//! PostgreSQL implementation of `Store`, one file per aggregate. Writes are batched: one
//! transaction stores many messages (group commit), and worker outcomes are recorded many at
//! a time, because a durable commit costs about a millisecond whatever its size.

mod api_keys;
mod conversations;
mod corrections;
mod dead_letters;
mod events;
mod messages;
mod schedule;
mod suppressions;
mod webhooks;

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgQueryResult, PgRow, PgSslMode};
use sqlx::{Postgres, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::query::{Listing, POSTGRES, Sql};
use super::rows::{self, Backend, Decoder, Fetch, Plain, StoredRow};
use super::{Guarded, Listed, Store, StoreError, StoreResult};
use crate::config::ConnectionUrl;
use crate::domain::NewMessage;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A message's full-text search document as `message_texts` stores it (from the message's
/// `subject` and `body`): 'simple' does no stemming (messages are in any language), and only
/// the first 64 KiB are indexed so that a large email can never exceed the vector's size
/// limit and fail the batch it is written in. The migration that created the table uses the
/// same expression for the messages stored before it.
pub(super) const SEARCH_DOCUMENT: &str =
    "to_tsvector('simple', left(coalesce(subject, '') || ' ' || coalesce(body, ''), 65536))";

/// Whether the URL names an SSL mode itself (`sslmode`, or sqlx's `ssl-mode`). An URL that
/// does not parse counts as asking: it is left to the driver, which says what is wrong.
fn ssl_mode_asked(url: &str) -> bool {
    url::Url::parse(url).map_or(true, |u| {
        u.query_pairs()
            .any(|(k, _)| k == "sslmode" || k == "ssl-mode")
    })
}

/// A database on this machine (`localhost`, 127.0.0.0/8, `::1`) is reached without TLS
/// unless the URL or `PGSSLMODE` asks for a mode: the traffic never leaves the host, so TLS
/// protects nothing there and costs CPU on both ends (4–7% of the accepted sends at full
/// load, measured; see the README's performance notes). Elsewhere the driver's default,
/// `prefer`, applies.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// A pool that connects on first use, so the API can start (and report through
    /// `/ready`) while the database is still coming up.
    pub fn connect_lazy(url: &ConnectionUrl, max_connections: u32) -> anyhow::Result<Self> {
        let mut options: PgConnectOptions = url
            .expose()
            .parse()
            .context("DATABASE_URL is not a valid PostgreSQL URL")?;
        let asked = ssl_mode_asked(url.expose()) || std::env::var_os("PGSSLMODE").is_some();
        if !asked && is_loopback(options.get_host()) {
            options = options.ssl_mode(PgSslMode::Disable);
        }
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

    /// A planned page and its total. Over the count limit, the total is the planner's
    /// estimate of the rows the filter matches (never below the rows counted).
    async fn list<T>(
        &self,
        listing: &Listing,
        decode: Decoder<Postgres, T>,
    ) -> StoreResult<Listed<T>> {
        let mut listed = rows::list(&self.pool, POSTGRES, listing, decode).await?;
        if listed.total_is_estimate {
            let explain = listing.matching_sql(POSTGRES);
            let explain = Sql {
                text: format!("explain (format json) {}", explain.text),
                binds: explain.binds,
            };
            let plan: Option<serde_json::Value> = rows::bound(&explain)
                .persistent(false)
                .optional(
                    &self.pool,
                    |row: &PgRow| -> anyhow::Result<serde_json::Value> { Ok(row.try_get(0)?) },
                )
                .await?;
            let estimate = plan
                .as_ref()
                .and_then(|p| p.pointer("/0/Plan/Plan Rows"))
                .and_then(serde_json::Value::as_f64)
                .map_or(0, |rows| rows as i64);
            listed.total = listed.total.max(estimate);
        }
        Ok(listed)
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
    Postgres::classify(err)
}

impl Backend for Postgres {
    fn rows_affected(done: &PgQueryResult) -> u64 {
        done.rows_affected()
    }

    fn unavailable(err: &sqlx::Error) -> bool {
        match err {
            sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
            // Class 08: connection exception; 57P: operator intervention (shutdown,
            // restart); 53: insufficient resources (too many connections, disk full).
            sqlx::Error::Database(db) => db.code().is_some_and(|c| {
                c.starts_with("08") || c.starts_with("57P") || c.starts_with("53")
            }),
            _ => false,
        }
    }
}

impl StoredRow for PgRow {
    fn get<T: Plain>(&self, column: &str) -> anyhow::Result<T> {
        Ok(self.try_get(column)?)
    }

    fn opt_uuid(&self, column: &str) -> anyhow::Result<Option<Uuid>> {
        Ok(self.try_get(column)?)
    }

    fn opt_instant(&self, column: &str) -> anyhow::Result<Option<OffsetDateTime>> {
        Ok(self.try_get(column)?)
    }

    fn json(&self, column: &str) -> anyhow::Result<serde_json::Value> {
        Ok(self.try_get(column)?)
    }

    fn first<T: Plain>(&self) -> anyhow::Result<T> {
        Ok(self.try_get(0)?)
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgresql"
    }

    /// The suppression lookup is part of the statement that stores the batch: one round
    /// trip instead of two, for every batch of the send path.
    async fn insert_messages_unless_suppressed(
        &self,
        batch: &[NewMessage],
        addresses: &[String],
    ) -> StoreResult<Guarded> {
        self.insert_batch(batch, addresses).await
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("select 1")
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// New search documents reach the full-text index through its pending list (GIN
    /// `fastupdate`): cheap to append to, exact for searches, but merged into the index by
    /// whichever insert fills it past `gin_pending_list_limit`, which then takes as long as
    /// the merge. Merging here, every second, keeps the list short and that work off the
    /// accept path. Two processes merging at once take turns.
    async fn maintain_search_index(&self) -> StoreResult<()> {
        sqlx::query("select gin_clean_pending_list('message_texts_document_idx'::regclass)")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_database_on_this_machine_goes_without_tls_and_only_when_no_mode_is_asked() {
        for host in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "postgres",
            "db.example.com",
            "10.0.0.5",
            "::2",
            "/var/run/postgresql",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
        assert!(!ssl_mode_asked("postgres://u@127.0.0.1:5432/d"));
        assert!(!ssl_mode_asked(
            "postgres://u@127.0.0.1/d?application_name=x"
        ));
        assert!(ssl_mode_asked("postgres://u@127.0.0.1/d?sslmode=require"));
        assert!(ssl_mode_asked(
            "postgres://u@127.0.0.1/d?ssl-mode=verify-full"
        ));
    }
}
