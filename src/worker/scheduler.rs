//! The scheduler: every `SCHEDULER_INTERVAL_MS` it moves scheduled messages whose `send_at`
//! has come from `scheduled` to `pending` and enqueues them. Scheduled messages live only in
//! the database until then, so a restart or a Redis flush loses none.
//!
//! Safe with many workers: the store's promotion is status-conditional (PostgreSQL claims
//! due rows with `for update skip locked`), so each message is promoted, and enqueued, by
//! one scheduler. Safe across crashes: a promoted message is marked enqueued in the same
//! write; if the process dies before the enqueue (or Redis refuses it) the message is a
//! `pending` one the sweeper re-enqueues after `QUEUE_SWEEP_AGE` (the in-process queue
//! refills from the database at start-up).

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Deliverer;
use crate::observability;
use crate::queue::Task;

/// Messages promoted per database round trip; a larger backlog takes several in a row.
const PROMOTE_BATCH: i64 = 1000;

/// Runs until `shutdown` is cancelled.
pub async fn run(deliverer: Deliverer, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(deliverer.settings.scheduler_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = promote_once(&deliverer).await {
            debug!(error = %format!("{e:#}"), "promoting scheduled messages failed; will try again");
        }
    }
}

/// Promotes and enqueues every message due now; returns how many. One deterministic step
/// for tests and tools.
pub async fn promote_once(deliverer: &Deliverer) -> anyhow::Result<usize> {
    let mut total = 0;
    loop {
        let due = deliverer.store.promote_due(PROMOTE_BATCH).await?;
        if due.is_empty() {
            return Ok(total);
        }
        let tasks: Vec<Task> = due
            .iter()
            .map(|s| Task {
                message_id: s.id,
                kind: s.kind,
            })
            .collect();
        match tokio::time::timeout(Duration::from_secs(2), deliverer.queue.enqueue(&tasks)).await {
            Ok(Ok(())) => info!(count = tasks.len(), "Scheduled messages due: enqueued"),
            Ok(Err(e)) => {
                warn!(error = %format!("{e:#}"), count = tasks.len(), "could not enqueue due scheduled messages; they are pending and the sweeper will enqueue them");
            }
            Err(_) => {
                warn!(
                    count = tasks.len(),
                    "enqueueing due scheduled messages timed out; they are pending and the sweeper will enqueue them"
                );
            }
        }
        observability::scheduled_promoted(tasks.len());
        total += tasks.len();
        if (due.len() as i64) < PROMOTE_BATCH {
            return Ok(total);
        }
    }
}
