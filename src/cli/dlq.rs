//! `messaging-service dlq list|redrive`: the dead-letter queue for operators, printed to
//! stdout. The redrive itself is the service's ([`crate::service::redrive`]).

use std::collections::HashSet;
use std::io::Write;

use clap::Subcommand;
use uuid::Uuid;

use crate::domain::MessageStatus;
use crate::queue::Queue;
use crate::service::redrive::redrive;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead-lettered messages, oldest first
    List {
        /// Most entries to show
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Put dead-lettered (failed) messages back in the queue
    Redrive {
        /// Message ids to redrive (any failed message, dead-lettered or not)
        ids: Vec<Uuid>,
        /// Redrive every message in the dead-letter queue
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
}

/// Runs a `dlq` subcommand, printing to stdout.
pub async fn run(command: DlqCommand, store: &dyn Store, queue: &dyn Queue) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match command {
        DlqCommand::List { limit } => {
            let entries = queue.dead_letters(None, limit).await?;
            writeln!(
                out,
                "{:<36}  {:<5}  {:<25}  {:<9}  reason",
                "message_id", "type", "failed_at", "status"
            )?;
            for e in &entries {
                let status = match e.message_id {
                    Some(id) => store
                        .get_message(id)
                        .await?
                        .map_or("missing", |m| m.status.as_str()),
                    None => "unreadable",
                };
                writeln!(
                    out,
                    "{:<36}  {:<5}  {:<25}  {:<9}  {}",
                    e.message_id
                        .map(|i| i.to_string())
                        .unwrap_or_else(|| e.entry_id.clone()),
                    e.kind.map_or("?", |k| k.as_str()),
                    e.failed_at,
                    status,
                    e.reason
                )?;
            }
            writeln!(out, "{} dead letter(s) shown", entries.len())?;
        }
        DlqCommand::Redrive { ids, all } => {
            if !all && ids.is_empty() {
                anyhow::bail!("name message ids to redrive, or pass --all");
            }
            let ids = if all {
                let mut ids = Vec::new();
                let mut after: Option<String> = None;
                loop {
                    let page = queue.dead_letters(after.as_deref(), 1000).await?;
                    let Some(last) = page.last() else { break };
                    after = Some(last.entry_id.clone());
                    ids.extend(page.iter().filter_map(|e| e.message_id));
                }
                ids
            } else {
                ids
            };
            let unique: Vec<Uuid> = ids
                .iter()
                .copied()
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            let mut redriven = 0;
            let mut skipped = Vec::new();
            for chunk in unique.chunks(500) {
                let done = redrive(store, queue, chunk).await?;
                if !done.enqueued {
                    writeln!(
                        out,
                        "warning: Redis refused some tasks; the sweeper will enqueue them"
                    )?;
                }
                let moved: HashSet<Uuid> = done.messages.iter().map(|m| m.id).collect();
                redriven += moved.len();
                skipped.extend(chunk.iter().filter(|id| !moved.contains(id)).copied());
            }
            // A dead letter whose message is no longer failed (retried through the API,
            // say) is stale: drop it so the queue shows only what needs attention.
            let mut stale = Vec::new();
            for id in &skipped {
                let status = store.get_message(*id).await?.map(|m| m.status);
                match status {
                    Some(MessageStatus::Failed) => {}
                    Some(s) => {
                        writeln!(out, "{id}: not failed ({s}); skipped")?;
                        stale.push(*id);
                    }
                    None => {
                        writeln!(out, "{id}: no such message; skipped")?;
                        stale.push(*id);
                    }
                }
            }
            if all && !stale.is_empty() {
                queue.remove_dead_letters(&stale).await?;
            }
            writeln!(out, "{redriven} message(s) redriven")?;
        }
    }
    Ok(())
}
