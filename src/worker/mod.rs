//! The worker: reads tasks from the queue, claims their messages, sends them through the
//! providers and settles the outcomes. Also runs the queue's housekeeping: promoting due
//! retries, reclaiming tasks abandoned by dead workers, and sweeping stranded messages.

mod backoff;
mod deliver;
mod lease;
pub mod scheduler;
mod settle;
pub mod suppression;
mod tasks;

pub use backoff::retry_delay;
pub use deliver::{Deliverer, POISON_CODE};
pub use settle::OutcomeWriters;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};
use uuid::Uuid;

use crate::domain::MessageStatus;
use crate::observability;
use crate::queue::{Delivery, Task};
use crate::store::{MessageFilter, Page, SweepQuery, Waiting};
use tasks::{TaskPlan, plan_tasks};

#[derive(Clone)]
pub struct Worker {
    deliverer: Deliverer,
    consumer: String,
    permits: Arc<Semaphore>,
}

impl Worker {
    pub fn new(deliverer: Deliverer) -> Self {
        let consumer = format!(
            "{}-{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into()),
            std::process::id(),
            &Uuid::new_v4().simple().to_string()[..8]
        );
        let permits = Arc::new(Semaphore::new(deliverer.settings.worker_concurrency));
        Self {
            deliverer,
            consumer,
            permits,
        }
    }

    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Runs until `shutdown` is cancelled, then stops taking work and lets in-flight
    /// messages finish for up to `grace`. Whatever is still unfinished stays claimed and
    /// is reclaimed by another worker after the visibility timeout.
    pub async fn run(self, shutdown: CancellationToken, grace: Duration) -> anyhow::Result<()> {
        info!(consumer = %self.consumer, "Starting message processor...");
        let housekeeping = tokio::spawn(self.clone().housekeeping(shutdown.clone()));
        tokio::spawn(scheduler::run(self.deliverer.clone(), shutdown.clone()));
        let settings = self.deliverer.settings.clone();
        let mut in_flight = JoinSet::new();
        let mut failures = 0u32;
        let mut overflow: Vec<Delivery> = Vec::new();

        while !shutdown.is_cancelled() {
            // Reap finished batches so the set does not grow.
            while in_flight.try_join_next().is_some() {}

            // Wait for one free slot, then take as many more as are free (up to a batch).
            let mut permits = tokio::select! {
                () = shutdown.cancelled() => break,
                p = self.permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let free = self
                .permits
                .available_permits()
                .min(settings.batch_size.saturating_sub(1));
            if free > 0
                && let Ok(more) = self.permits.clone().try_acquire_many_owned(free as u32)
            {
                permits.merge(more);
            }
            let want = permits.num_permits();
            // Tasks read earlier but not yet started go first; only then read more.
            let deliveries = if overflow.is_empty() {
                let fetched = tokio::select! {
                    () = shutdown.cancelled() => break,
                    r = self.deliverer.queue.fetch(&self.consumer, want, settings.block) => r,
                };
                match fetched {
                    Ok(mut d) => {
                        if failures > 0 {
                            info!("queue reachable again; resuming");
                        }
                        failures = 0;
                        // The read's COUNT applies per stream, so it may return more than we
                        // hold slots for; the rest waits here for the next free slots.
                        if d.len() > want {
                            overflow.extend(d.split_off(want));
                        }
                        d
                    }
                    Err(e) => {
                        failures += 1;
                        if failures == 1 || failures.is_multiple_of(30) {
                            error!(error = %format!("{e:#}"), "cannot read from the queue; retrying");
                        }
                        drop(permits);
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                        continue;
                    }
                }
            } else {
                let take = want.min(overflow.len());
                overflow.drain(..take).collect()
            };
            if deliveries.is_empty() {
                continue;
            }
            if deliveries.len() < want {
                drop(permits.split(want - deliveries.len()));
            }
            let worker = self.clone();
            in_flight.spawn(async move {
                worker.process(deliveries).await;
                drop(permits);
            });
        }

        // Tasks read but never started stay unacknowledged: another worker reclaims them.
        info!(
            in_flight = in_flight.len(),
            not_started = overflow.len(),
            "Stopping message processor: finishing in-flight messages"
        );
        let drained = tokio::time::timeout(grace, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!(
                abandoned = in_flight.len(),
                "grace period over; unfinished messages will be reclaimed by another worker"
            );
            in_flight.abort_all();
        }
        housekeeping.abort();
        info!("Message processor stopped");
        Ok(())
    }

    /// One deterministic step for tests and tools: promote due retries, read what is
    /// waiting (without blocking), process it to the end. Returns the tasks handled.
    pub async fn process_once(&self) -> anyhow::Result<usize> {
        self.deliverer.queue.promote_due(1000).await?;
        let max = self.deliverer.settings.batch_size;
        let deliveries = self
            .deliverer
            .queue
            .fetch(&self.consumer, max, Duration::ZERO)
            .await?;
        let n = deliveries.len();
        self.process(deliveries).await;
        Ok(n)
    }

    /// Takes over tasks idle past the visibility timeout and processes them.
    pub async fn reclaim_once(&self) -> anyhow::Result<usize> {
        let s = &self.deliverer.settings;
        // A claim is written a moment after its task was read, so wait a little longer than
        // the visibility timeout before taking a task over: by then its claim is surely stale.
        let min_idle = s.visibility_timeout + s.visibility_timeout / 4;
        let deliveries = self
            .deliverer
            .queue
            .reclaim(&self.consumer, min_idle, s.batch_size)
            .await?;
        let n = deliveries.len();
        if n > 0 {
            info!(count = n, "Reclaimed messages abandoned by another worker");
            observability::reclaimed(n);
            self.process(deliveries).await;
        }
        Ok(n)
    }

    /// Re-enqueues messages the database says are unfinished but the queue may have lost.
    pub async fn sweep_once(&self) -> anyhow::Result<usize> {
        let s = &self.deliverer.settings;
        let stranded = self
            .deliverer
            .store
            .sweep(SweepQuery {
                age: s.sweep_age,
                visibility_timeout: s.visibility_timeout,
                limit: 1000,
            })
            .await?;
        if stranded.is_empty() {
            return Ok(0);
        }
        let tasks: Vec<Task> = stranded
            .iter()
            .map(|s| Task {
                message_id: s.id,
                kind: s.kind,
            })
            .collect();
        self.deliverer.queue.enqueue(&tasks).await?;
        info!(count = tasks.len(), "Sweeper re-enqueued stranded messages");
        observability::swept(tasks.len());
        Ok(tasks.len())
    }

    /// Refills a queue that starts empty (the in-process one) from the database; run once at
    /// start-up before taking work, by the process holding the database's lock file.
    /// `pending` messages, due retries and `sending` ones are enqueued; the `sending` ones
    /// were this process's own before it stopped, so their leases end now and they are
    /// taken again at once (asking the provider first). Retries not yet due wait in the
    /// delayed set for their time, as they did before. Returns how many were put back.
    pub async fn recover(&self) -> anyhow::Result<usize> {
        let d = &self.deliverer;
        let expired = d.store.expire_leases().await?;
        if expired > 0 {
            info!(
                count = expired,
                "Messages in flight when the process stopped are taken again now"
            );
        }
        let stranded = d
            .store
            .sweep(SweepQuery {
                age: Duration::ZERO,
                visibility_timeout: Duration::ZERO,
                limit: i64::MAX,
            })
            .await?;
        let tasks: Vec<Task> = stranded
            .iter()
            .map(|s| Task {
                message_id: s.id,
                kind: s.kind,
            })
            .collect();
        for chunk in tasks.chunks(10_000) {
            d.queue.enqueue(chunk).await?;
        }

        let now = OffsetDateTime::now_utc();
        let retries = MessageFilter {
            status: Some(MessageStatus::Retry),
            ..Default::default()
        };
        let mut scheduled = 0;
        let mut offset = 0;
        loop {
            let page = Page {
                limit: 1000,
                offset,
            };
            let (messages, _) = d.store.list_messages(&retries, page).await?;
            let later: Vec<(Task, OffsetDateTime)> = messages
                .iter()
                .filter_map(|m| {
                    let due = m.next_attempt_at.filter(|at| *at > now)?;
                    Some((
                        Task {
                            message_id: m.id,
                            kind: m.kind,
                        },
                        due,
                    ))
                })
                .collect();
            d.queue.schedule(&later).await?;
            scheduled += later.len();
            if (messages.len() as i64) < page.limit {
                break;
            }
            offset += page.limit;
        }
        let recovered = tasks.len() + scheduled;
        if recovered > 0 {
            info!(
                enqueued = tasks.len(),
                scheduled, "Recovered unfinished messages from the database"
            );
        }
        Ok(recovered)
    }

    async fn housekeeping(self, shutdown: CancellationToken) {
        let s = self.deliverer.settings.clone();
        let mut promote = tokio::time::interval(Duration::from_millis(250));
        let mut reclaim =
            tokio::time::interval((s.visibility_timeout / 4).max(Duration::from_millis(100)));
        let mut sweep = tokio::time::interval(s.sweep_interval.max(Duration::from_millis(100)));
        for t in [&mut promote, &mut reclaim, &mut sweep] {
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            let result = tokio::select! {
                () = shutdown.cancelled() => return,
                _ = promote.tick() => self.deliverer.queue.promote_due(1000).await.map(|_| ()),
                _ = reclaim.tick() => self.reclaim_once().await.map(|_| ()),
                _ = sweep.tick() => self.sweep_once().await.map(|_| ()),
            };
            if let Err(e) = result {
                debug!(error = %format!("{e:#}"), "housekeeping step failed; will try again");
            }
        }
    }

    /// Claims, sends and settles one batch of deliveries, then acknowledges what is done.
    async fn process(&self, deliveries: Vec<Delivery>) {
        let d = &self.deliverer;
        let started = std::time::Instant::now();
        let ids: Vec<Uuid> = deliveries.iter().filter_map(|x| x.message_id).collect();
        let claim = match d.store.claim(&ids, d.settings.visibility_timeout).await {
            Ok(c) => c,
            Err(e) => {
                // Left unacknowledged: the tasks come back after the visibility timeout.
                error!(error = %format!("{e:#}"), count = ids.len(), "could not claim messages");
                return;
            }
        };
        for m in &claim.messages {
            info!(message_id = %m.id, queue = %format!("message_queue:{}", m.kind), "Processing message from queue: message_queue:{}", m.kind);
        }

        let claimed: HashSet<Uuid> = claim.messages.iter().map(|m| m.id).collect();
        let unclaimed: Vec<Uuid> = ids
            .iter()
            .copied()
            .filter(|id| !claimed.contains(id))
            .collect();
        // Before sending, so that what the store says of the others is what the claim saw.
        let waiting: HashMap<Uuid, Waiting> = if unclaimed.is_empty() {
            HashMap::new()
        } else {
            match d.store.unclaimed(&unclaimed).await {
                Ok(v) => v.into_iter().collect(),
                Err(e) => {
                    error!(error = %format!("{e:#}"), "could not check unclaimed messages");
                    return;
                }
            }
        };

        let applied: HashSet<Uuid> = d.deliver_claim(&claim).await;
        for m in claim.messages.iter().filter(|m| applied.contains(&m.id)) {
            observability::message_processed(m.kind, started.elapsed());
        }

        let TaskPlan { mut ack, later } = plan_tasks(deliveries, &claimed, &applied, &waiting);
        if !later.is_empty() {
            let due: Vec<(Task, OffsetDateTime)> =
                later.iter().map(|(_, task, at)| (*task, *at)).collect();
            match d.queue.schedule(&due).await {
                Ok(()) => {
                    debug!(
                        count = due.len(),
                        "retries came before they were due; put off until then"
                    );
                    ack.extend(later.into_iter().map(|(delivery, _, _)| delivery));
                }
                Err(e) => {
                    warn!(error = %format!("{e:#}"), count = due.len(), "could not put off early retries; their tasks come back after the visibility timeout");
                }
            }
        }
        if let Err(e) = d.queue.ack(&ack).await {
            warn!(error = %format!("{e:#}"), count = ack.len(), "could not acknowledge tasks; they will be re-examined");
        }
    }
}
