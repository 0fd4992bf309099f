//! Recording outcomes a group at a time (`service::group_commit`, as the send path does).
//! The sends of every claim in flight report to a few writer tasks; each takes all the
//! outcomes waiting (from any number of claims, up to a group) and has the store record them
//! in one transaction, then answers each claim with the ids applied. The number of
//! transactions follows the database's commit rate instead of the number of claims and
//! sends in flight, and an outcome is written as soon as the transaction before it is done:
//! none waits for a slower send.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};
use uuid::Uuid;

use crate::store::{Outcome, Settlement, Store, StoreError};

/// Most claims whose outcomes share one transaction.
const MAX_CLAIMS_PER_GROUP: usize = 64;
/// A store error that is not an outage is tried this many times more for one claim.
const OTHER_ERROR_TRIES: u32 = 5;

type Reply = oneshot::Sender<anyhow::Result<Vec<Uuid>>>;

struct Job {
    settlement: Settlement,
    reply: Reply,
}

/// The handle the deliverer records outcomes through; cloned with it.
#[derive(Clone)]
pub struct OutcomeWriters {
    tx: mpsc::Sender<Job>,
}

impl OutcomeWriters {
    /// Starts `writers` writer tasks; they stop when the last handle is dropped.
    pub fn start(store: Arc<dyn Store>, writers: usize) -> Self {
        let tx = crate::service::group_commit::start(writers, MAX_CLAIMS_PER_GROUP, move |jobs| {
            let store = store.clone();
            async move { write(store.as_ref(), jobs).await }
        });
        Self { tx }
    }

    /// Records one claim's outcomes (with whatever else is waiting) and returns the ids whose
    /// outcome was stored: those the claim's token still held.
    pub async fn record(&self, token: Uuid, outcomes: &[Outcome]) -> anyhow::Result<Vec<Uuid>> {
        let (reply, answer) = oneshot::channel();
        let settlement = Settlement {
            token,
            outcomes: outcomes.to_vec(),
        };
        self.tx
            .send(Job { settlement, reply })
            .await
            .map_err(|_| anyhow::anyhow!("the outcome writers have stopped"))?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("the outcome writer stopped before answering"))?
    }
}

/// Records one group of claims' outcomes and answers each claim.
async fn write(store: &dyn Store, jobs: Vec<Job>) {
    let (settlements, replies): (Vec<Settlement>, Vec<Reply>) =
        jobs.into_iter().map(|j| (j.settlement, j.reply)).unzip();
    // A group is not tried again on an error that is not an outage: it goes one claim at a
    // time at once, so the others do not wait out the culprit's tries.
    let shared = settlements.len() > 1;
    let tries = if shared { 0 } else { OTHER_ERROR_TRIES };
    match record_with_retries(store, &settlements, tries).await {
        Ok(applied) => answer(&settlements, replies, &applied),
        // One claim's bad outcome must not fail the claims that shared its transaction:
        // record them one by one so only the culprit fails.
        Err(e) if shared => {
            warn!(error = %format!("{e:#}"), claims = settlements.len(), "recording a group of outcomes failed; recording its claims one by one");
            for (settlement, reply) in settlements.into_iter().zip(replies) {
                let one = std::slice::from_ref(&settlement);
                let _ = reply.send(record_with_retries(store, one, OTHER_ERROR_TRIES).await);
            }
        }
        // A group of one: its only claim gets the error.
        Err(e) => {
            if let Some(reply) = replies.into_iter().next() {
                let _ = reply.send(Err(e));
            }
        }
    }
}

/// Answers each claim with the ids among its own outcomes that were applied.
fn answer(settlements: &[Settlement], replies: Vec<Reply>, applied: &[Uuid]) {
    let applied: HashSet<Uuid> = applied.iter().copied().collect();
    for (settlement, reply) in settlements.iter().zip(replies) {
        let ids = settlement
            .outcomes
            .iter()
            .map(Outcome::id)
            .filter(|id| applied.contains(id))
            .collect();
        let _ = reply.send(Ok(ids));
    }
}

/// An outcome the provider confirmed is kept until it is written: a lost one means a
/// second send after reclaim. Tried again with backoff (capped at a few seconds) for as
/// long as this process runs; each write is guarded by its claim's token, so a write that
/// lands after another worker took the message over changes nothing. On shutdown the
/// worker waits for these writes within its grace period. An error that is not an outage is
/// tried `other_tries` more times.
async fn record_with_retries(
    store: &dyn Store,
    settlements: &[Settlement],
    other_tries: u32,
) -> anyhow::Result<Vec<Uuid>> {
    let count: usize = settlements.iter().map(|s| s.outcomes.len()).sum();
    let mut delay = Duration::from_millis(100);
    let mut attempt = 0u32;
    loop {
        match store.record_settlements(settlements).await {
            Ok(applied) => {
                if attempt > 0 {
                    info!(
                        count = applied.len(),
                        attempt, "outcomes recorded after the database came back"
                    );
                }
                return Ok(applied);
            }
            // Not an outage: a few tries, then the tasks are reclaimed later.
            Err(e @ StoreError::Other(_)) if attempt >= other_tries => {
                return Err(e.into());
            }
            Err(e) => {
                if attempt == 0 || attempt.is_multiple_of(20) {
                    warn!(error = %format!("{e:#}"), attempt, count, "recording outcomes failed; keeping them and trying again");
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
                attempt += 1;
            }
        }
    }
}
