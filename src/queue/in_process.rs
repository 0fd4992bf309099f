//! The in-process implementation of `Queue`, for the single-process (embedded) deployment.
//!
//! It mirrors the Redis Streams queue entry for entry: one stream per message type, entries
//! handed to one consumer and kept in a pending list until acknowledged (so `reclaim` works
//! as `XAUTOCLAIM` does), a delayed set for retries, and dead letters. Depths count what
//! `XLEN`/`ZCARD` would.
//!
//! Nothing here is written to disk: the database is the queue's durable copy. A message is
//! stored before its task is enqueued, and on start-up every unfinished message is enqueued
//! (or, for a retry not yet due, scheduled) again from the database (`Worker::recover`), so
//! a killed process loses nothing it accepted. Dead letters are kept as the last
//! `DEAD_LETTERS_KEPT` in memory, readable and removable through the `Queue` trait by the
//! running process (`POST /api/v1/messages/{id}/retry`); the message row (`status = failed`,
//! with its error) is the lasting record and survives restarts.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::Notify;

use uuid::Uuid;

use super::{DeadLetter, DeadLetterEntry, Delivery, Queue, QueueDepths, Task};
use crate::domain::MessageType;

/// Recent dead letters kept for inspection (older ones live on as `failed` message rows).
pub const DEAD_LETTERS_KEPT: usize = 10_000;

/// A dead letter as recorded, with its entry id and the time it was written.
#[derive(Debug, Clone)]
struct Dead {
    entry: u64,
    letter: DeadLetter,
    failed_at: OffsetDateTime,
}

struct Held {
    task: Task,
    consumer: String,
    since: Instant,
}

#[derive(Default)]
struct State {
    next_entry: u64,
    /// Entries not yet handed to any consumer, per type, oldest first.
    streams: HashMap<MessageType, VecDeque<(u64, Task)>>,
    /// Entries handed out and not yet acknowledged (the pending entries list).
    held: BTreeMap<u64, Held>,
    /// Retries waiting for their time, keyed by (due, entry) so equal times stay distinct.
    delayed: BTreeMap<(OffsetDateTime, u64), Task>,
    /// Oldest first, entry ids increasing.
    dead: VecDeque<Dead>,
}

impl State {
    fn push(&mut self, task: Task) {
        self.next_entry += 1;
        let id = self.next_entry;
        self.streams
            .entry(task.kind)
            .or_default()
            .push_back((id, task));
    }
}

#[derive(Default)]
pub struct InProcessQueue {
    state: Mutex<State>,
    arrived: Notify,
}

impl InProcessQueue {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> anyhow::Result<std::sync::MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| anyhow!("the in-process queue's lock is poisoned"))
    }

    /// Up to `max` entries from each stream (as `XREADGROUP COUNT` does), now held by `consumer`.
    fn take(&self, consumer: &str, max: usize) -> anyhow::Result<Vec<Delivery>> {
        let mut state = self.state()?;
        let now = Instant::now();
        let mut out = Vec::new();
        for kind in MessageType::ALL {
            for _ in 0..max {
                let Some((id, task)) = state.streams.get_mut(kind).and_then(VecDeque::pop_front)
                else {
                    break;
                };
                state.held.insert(
                    id,
                    Held {
                        task,
                        consumer: consumer.to_owned(),
                        since: now,
                    },
                );
                out.push(delivery(id, task));
            }
        }
        Ok(out)
    }
}

fn delivery(id: u64, task: Task) -> Delivery {
    Delivery {
        kind: task.kind,
        entry_id: id.to_string(),
        message_id: Some(task.message_id),
    }
}

#[async_trait]
impl Queue for InProcessQueue {
    fn backend(&self) -> &'static str {
        "in-process"
    }

    async fn ping(&self) -> anyhow::Result<()> {
        self.state().map(|_| ())
    }

    async fn enqueue(&self, tasks: &[Task]) -> anyhow::Result<()> {
        if tasks.is_empty() {
            return Ok(());
        }
        {
            let mut state = self.state()?;
            for task in tasks {
                state.push(*task);
            }
        }
        self.arrived.notify_waiters();
        Ok(())
    }

    async fn fetch(
        &self,
        consumer: &str,
        max: usize,
        block: Duration,
    ) -> anyhow::Result<Vec<Delivery>> {
        let deadline = tokio::time::Instant::now() + block;
        loop {
            // Register interest before looking, so an enqueue in between is not missed.
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let out = self.take(consumer, max)?;
            if !out.is_empty() || block.is_zero() {
                return Ok(out);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn reclaim(
        &self,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> anyhow::Result<Vec<Delivery>> {
        let mut state = self.state()?;
        let now = Instant::now();
        let mut taken: HashMap<MessageType, usize> = HashMap::new();
        let mut out = Vec::new();
        for (id, held) in state.held.iter_mut() {
            if now.duration_since(held.since) < min_idle {
                continue;
            }
            let n = taken.entry(held.task.kind).or_default();
            if *n >= max {
                continue;
            }
            *n += 1;
            held.consumer = consumer.to_owned();
            held.since = now;
            out.push(delivery(*id, held.task));
        }
        Ok(out)
    }

    async fn ack(&self, deliveries: &[Delivery]) -> anyhow::Result<()> {
        let mut state = self.state()?;
        for d in deliveries {
            let Ok(id) = d.entry_id.parse::<u64>() else {
                continue;
            };
            if state.held.remove(&id).is_none()
                && let Some(stream) = state.streams.get_mut(&d.kind)
            {
                // Acknowledging an entry nobody read yet deletes it, as XDEL would.
                stream.retain(|(entry, _)| *entry != id);
            }
        }
        Ok(())
    }

    async fn schedule(&self, tasks: &[(Task, OffsetDateTime)]) -> anyhow::Result<()> {
        let mut state = self.state()?;
        for (task, due) in tasks {
            state.next_entry += 1;
            let id = state.next_entry;
            state.delayed.insert((*due, id), *task);
        }
        Ok(())
    }

    async fn promote_due(&self, limit: usize) -> anyhow::Result<usize> {
        let now = OffsetDateTime::now_utc();
        let moved = {
            let mut state = self.state()?;
            let due: Vec<(OffsetDateTime, u64)> = state
                .delayed
                .range(..=(now, u64::MAX))
                .take(limit)
                .map(|(k, _)| *k)
                .collect();
            for key in &due {
                if let Some(task) = state.delayed.remove(key) {
                    state.push(task);
                }
            }
            due.len()
        };
        if moved > 0 {
            self.arrived.notify_waiters();
        }
        Ok(moved)
    }

    async fn dead_letter(&self, letters: &[DeadLetter]) -> anyhow::Result<()> {
        let mut state = self.state()?;
        let failed_at = OffsetDateTime::now_utc();
        for letter in letters {
            if state.dead.len() == DEAD_LETTERS_KEPT {
                state.dead.pop_front();
            }
            state.next_entry += 1;
            let entry = state.next_entry;
            state.dead.push_back(Dead {
                entry,
                letter: letter.clone(),
                failed_at,
            });
        }
        Ok(())
    }

    async fn dead_letters(
        &self,
        after: Option<&str>,
        max: usize,
    ) -> anyhow::Result<Vec<DeadLetterEntry>> {
        // Entry ids are numbers here; a cursor that is not one starts from the beginning.
        let after = after.and_then(|a| a.parse::<u64>().ok()).unwrap_or(0);
        let state = self.state()?;
        Ok(state
            .dead
            .iter()
            .filter(|d| d.entry > after)
            .take(max)
            .map(|d| DeadLetterEntry {
                entry_id: d.entry.to_string(),
                message_id: Some(d.letter.task.message_id),
                kind: Some(d.letter.task.kind),
                reason: d.letter.reason.clone(),
                failed_at: d
                    .failed_at
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
            })
            .collect())
    }

    async fn remove_dead_letters(&self, message_ids: &[Uuid]) -> anyhow::Result<usize> {
        if message_ids.is_empty() {
            return Ok(0);
        }
        let wanted: std::collections::HashSet<Uuid> = message_ids.iter().copied().collect();
        let mut state = self.state()?;
        let before = state.dead.len();
        state
            .dead
            .retain(|d| !wanted.contains(&d.letter.task.message_id));
        Ok(before - state.dead.len())
    }

    async fn depths(&self) -> anyhow::Result<QueueDepths> {
        let state = self.state()?;
        // As XLEN: entries not yet read plus those read but not yet acknowledged.
        let backlog = |kind: MessageType| {
            let waiting = state.streams.get(&kind).map_or(0, VecDeque::len);
            let held = state.held.values().filter(|h| h.task.kind == kind).count();
            (waiting + held) as u64
        };
        Ok(QueueDepths {
            sms: backlog(MessageType::Sms),
            mms: backlog(MessageType::Mms),
            email: backlog(MessageType::Email),
            delayed: state.delayed.len() as u64,
            dead_letter: state.dead.len() as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_blocked_fetch_wakes_when_a_task_arrives() {
        let queue = std::sync::Arc::new(InProcessQueue::new());
        let q = queue.clone();
        let reader = tokio::spawn(async move { q.fetch("c", 10, Duration::from_secs(10)).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let task = Task {
            message_id: uuid::Uuid::now_v7(),
            kind: MessageType::Email,
        };
        queue.enqueue(&[task]).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(2), reader)
            .await
            .expect("the fetch returns as soon as the task arrives")
            .unwrap()
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].message_id, Some(task.message_id));
        assert_eq!(
            queue.depths().await.unwrap().email,
            1,
            "held until acknowledged"
        );
    }
}
