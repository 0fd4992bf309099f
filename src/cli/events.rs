//! `messaging-service events list|redrive`: webhook deliveries whose retries ran out,
//! printed to stdout, and starting them again.

use std::io::Write;

use clap::Subcommand;

use crate::store::{Page, Store};

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// List failed delivery chains (events no endpoint or callback accepted), newest first
    List {
        /// Most entries to show
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Deliver failed chains again, from attempt 1, now
    Redrive {
        /// Delivery ids (the first column of `events list`)
        ids: Vec<i64>,
        /// Redrive every failed chain
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
}

/// Runs an `events` subcommand, printing to `out`.
pub async fn run(
    command: EventsCommand,
    store: &dyn Store,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match command {
        EventsCommand::List { limit } => {
            let failed = store
                .failed_deliveries(Page {
                    limit: limit.max(1),
                    offset: 0,
                })
                .await?;
            writeln!(
                out,
                "{:<8}  {:<36}  {:<17}  {:<8}  {:<25}  destination",
                "delivery", "event_id", "type", "attempts", "failed_at"
            )?;
            for f in &failed {
                let failed_at = f
                    .updated_at
                    .format(&time::format_description::well_known::Rfc3339)?;
                let destination = match (f.endpoint_id, &f.url) {
                    (Some(id), Some(url)) => format!("endpoint {id} {}", strip_query(url)),
                    (Some(id), None) => format!("endpoint {id}"),
                    (None, Some(url)) => format!("status_callback {}", strip_query(url)),
                    (None, None) => "?".to_owned(),
                };
                writeln!(
                    out,
                    "{:<8}  {:<36}  {:<17}  {:<8}  {:<25}  {destination}",
                    f.id, f.event_id, f.event_type, f.attempts, failed_at
                )?;
            }
            writeln!(out, "{} failed delivery chain(s) shown", failed.len())?;
        }
        EventsCommand::Redrive { ids, all } => {
            if !all && ids.is_empty() {
                anyhow::bail!("name delivery ids to redrive, or pass --all");
            }
            let n = store
                .redrive_deliveries(if all { None } else { Some(&ids) })
                .await?;
            writeln!(out, "{n} delivery chain(s) redriven")?;
        }
    }
    Ok(())
}

/// A URL without its query string, which may carry a token.
fn strip_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}
