//! Sending claimed messages and settling the outcomes: shared by the worker and by the
//! API's synchronous mode, so both follow the same rules.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use time::OffsetDateTime;
use tracing::{debug, error, info, warn};
use uuid::Uuid;

use super::backoff::retry_delay;
use super::suppression;
use crate::config::QueueSettings;
use crate::config::delivery::DeliverySettings;
use crate::domain::{ErrorInfo, Message, address_mask};
use crate::observability;
use crate::provider::{ProviderError, Providers};
use crate::queue::{DeadLetter, Queue, Task};
use crate::store::{Claim, Outcome, Store};

#[derive(Clone)]
pub struct Deliverer {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub providers: Providers,
    pub settings: QueueSettings,
    pub delivery: DeliverySettings,
    pub provider_timeout: Duration,
    /// Where outcomes are recorded, a group of claims per transaction.
    pub outcomes: super::settle::OutcomeWriters,
}

/// The error code of a message dead-lettered because its deliveries kept ending without an
/// outcome (its worker crashed or hung each time).
pub const POISON_CODE: &str = "delivery_attempts_exhausted";

impl Deliverer {
    /// Delivers a claim: each message is sent (or, when an earlier claim on it expired,
    /// first looked up at the provider), and each outcome is recorded as soon as it is known,
    /// with this claim's other outcomes ready at the same moment and whatever other claims'
    /// outcomes are waiting (see `settle`). The lease is renewed until every outcome is
    /// written. Returns the ids whose outcome was stored.
    pub async fn deliver_claim(&self, claim: &Claim) -> HashSet<Uuid> {
        let _lease = super::lease::LeaseKeeper::start(
            self.store.clone(),
            claim.token,
            self.settings.visibility_timeout,
        );
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Outcome>();
        let mut sends = tokio::task::JoinSet::new();
        // A message whose recipient is suppressed is not sent (one list lookup per claim).
        let mut held = suppression::held_back(self.store.as_ref(), &claim.messages).await;
        for m in &claim.messages {
            if let Some(outcome) = held.remove(&m.id) {
                let _ = tx.send(outcome);
                continue;
            }
            let deliveries = claim.deliveries.get(&m.id).copied().unwrap_or(1);
            if u32::try_from(deliveries).unwrap_or(0) > self.delivery.max_deliveries {
                let _ = tx.send(self.poisoned(m, deliveries));
                continue;
            }
            let (d, m, tx) = (self.clone(), m.clone(), tx.clone());
            let since = claim.reclaimed.get(&m.id).copied();
            sends.spawn(async move {
                let outcome = match since {
                    Some(since) => d.reconcile_or_send(&m, since).await,
                    None => d.send_one(&m).await,
                };
                let _ = tx.send(outcome);
            });
        }
        drop(tx);
        let mut applied = HashSet::new();
        while let Some(first) = rx.recv().await {
            let mut ready = vec![first];
            while let Ok(more) = rx.try_recv() {
                ready.push(more);
            }
            suppression::learn_from_refusals(self.store.as_ref(), &claim.messages, &ready).await;
            match self.settle(claim, &ready).await {
                Ok(ids) => applied.extend(ids),
                Err(e) => {
                    error!(error = %format!("{e:#}"), "could not record outcomes; tasks will be reclaimed")
                }
            }
        }
        while sends.join_next().await.is_some() {}
        applied
    }

    fn poisoned(&self, message: &Message, deliveries: i32) -> Outcome {
        warn!(message_id = %message.id, deliveries, "message claimed too often without an outcome; dead-lettering it");
        observability::message_failed(message.kind, "none", POISON_CODE);
        Outcome::Failed {
            id: message.id,
            provider: None,
            error: ErrorInfo {
                code: POISON_CODE.into(),
                message: format!(
                    "{} deliveries ended without an outcome (QUEUE_MAX_DELIVERIES={}); the message may crash or hang its worker",
                    deliveries - 1,
                    self.delivery.max_deliveries
                ),
            },
        }
    }

    /// A message whose earlier claim expired may have been sent by that worker: ask the
    /// provider first, and record what it has instead of sending again.
    async fn reconcile_or_send(&self, message: &Message, since: OffsetDateTime) -> Outcome {
        let provider = self.providers.for_type(message.kind);
        let found = tokio::time::timeout(self.provider_timeout, provider.find_sent(message, since))
            .await
            .unwrap_or(Ok(None));
        match found {
            Ok(Some(receipt)) => {
                let name = receipt
                    .provider
                    .clone()
                    .unwrap_or_else(|| provider.name().to_owned());
                info!(message_id = %message.id, provider = %name, "Message found at the provider; recorded without sending again");
                observability::message_reconciled(message.kind, &name);
                Outcome::Sent {
                    id: message.id,
                    provider: name,
                    provider_message_id: receipt.provider_message_id,
                    num_segments: receipt.num_segments,
                }
            }
            Ok(None) => self.send_one(message).await,
            // The provider asks for time (its receipts may still show the send): not an attempt.
            Err(ProviderError::Deferred {
                reason,
                retry_after,
            }) => {
                info!(message_id = %message.id, delay_ms = retry_after.as_millis() as u64, "Re-send deferred: {reason}");
                Outcome::Deferred {
                    id: message.id,
                    reason: format!("reconcile: {reason}"),
                    next_attempt_at: OffsetDateTime::now_utc() + retry_after,
                }
            }
            // Sending blind could send twice: wait and ask again, without spending a retry.
            Err(e) => Outcome::Deferred {
                id: message.id,
                reason: format!("reconcile: {e}"),
                next_attempt_at: OffsetDateTime::now_utc()
                    + retry_delay(
                        self.settings.retry_delay,
                        self.settings.max_retry_delay,
                        1,
                        None,
                    ),
            },
        }
    }

    /// Sends every claimed message (concurrently) and returns what happened to each.
    /// A message whose recipient is suppressed is not sent (one list lookup per batch).
    pub async fn send_all(&self, messages: &[Message]) -> Vec<Outcome> {
        let mut held = suppression::held_back(self.store.as_ref(), messages).await;
        let sending = messages.iter().filter(|m| !held.contains_key(&m.id));
        let mut outcomes = join_all(sending.map(|m| self.send_one(m))).await;
        suppression::learn_from_refusals(self.store.as_ref(), messages, &outcomes).await;
        outcomes.extend(messages.iter().filter_map(|m| held.remove(&m.id)));
        outcomes
    }

    #[tracing::instrument(skip_all, fields(message_id = %message.id, r#type = %message.kind))]
    async fn send_one(&self, message: &Message) -> Outcome {
        let provider = self.providers.for_type(message.kind);
        let name = provider.name().to_owned();
        let started = std::time::Instant::now();
        let result = match tokio::time::timeout(self.provider_timeout, provider.send(message)).await
        {
            Ok(r) => r,
            Err(_) => Err(ProviderError::Transient {
                code: "timeout".into(),
                message: format!(
                    "the provider did not answer within {:?}",
                    self.provider_timeout
                ),
                retry_after: None,
            }),
        };
        if !matches!(result, Err(ProviderError::Deferred { .. })) {
            observability::provider_call(&name, started.elapsed(), result.as_ref().map(|_| ()));
        }
        match result {
            Ok(receipt) => {
                // Behind failover, the receipt names the provider that actually sent it.
                let name = receipt.provider.unwrap_or(name);
                info!(provider = %name, to = %address_mask(&message.to), "Message sent");
                observability::message_sent(message.kind, &name);
                Outcome::Sent {
                    id: message.id,
                    provider: name,
                    provider_message_id: receipt.provider_message_id,
                    num_segments: receipt.num_segments,
                }
            }
            Err(ProviderError::Deferred {
                reason,
                retry_after,
            }) => {
                debug!(provider = %name, delay_ms = retry_after.as_millis() as u64, "Sender is paced; message deferred");
                Outcome::Deferred {
                    id: message.id,
                    reason,
                    next_attempt_at: OffsetDateTime::now_utc() + retry_after,
                }
            }
            Err(ProviderError::Transient {
                code,
                message: text,
                retry_after,
            }) => {
                let attempt = u32::try_from(message.retry_count).unwrap_or(0) + 1;
                if attempt <= self.settings.max_retries {
                    let delay = retry_delay(
                        self.settings.retry_delay,
                        self.settings.max_retry_delay,
                        attempt,
                        retry_after,
                    );
                    warn!(provider = %name, code = %code, attempt, delay_ms = delay.as_millis() as u64, "Transient provider error; retrying");
                    observability::message_retry(message.kind, &name);
                    Outcome::Retry {
                        id: message.id,
                        provider: name,
                        error: ErrorInfo {
                            code,
                            message: text,
                        },
                        next_attempt_at: OffsetDateTime::now_utc() + delay,
                    }
                } else {
                    warn!(provider = %name, code = %code, "Retries exhausted; message failed");
                    observability::message_failed(message.kind, &name, "retries_exhausted");
                    Outcome::Failed {
                        id: message.id,
                        provider: Some(name),
                        error: ErrorInfo {
                            code,
                            message: format!("retries exhausted: {text}"),
                        },
                    }
                }
            }
            Err(ProviderError::Permanent {
                code,
                message: text,
            }) => {
                warn!(provider = %name, code = %code, "Permanent provider error; message failed");
                observability::message_failed(message.kind, &name, "rejected");
                Outcome::Failed {
                    id: message.id,
                    provider: Some(name),
                    error: ErrorInfo {
                        code,
                        message: text,
                    },
                }
            }
        }
    }

    /// Records outcomes (the truth) and then performs their queue side effects: delayed
    /// retries and dead letters. Returns the ids whose outcome was stored.
    pub async fn settle(&self, claim: &Claim, outcomes: &[Outcome]) -> anyhow::Result<Vec<Uuid>> {
        let applied = self.outcomes.record(claim.token, outcomes).await?;
        let kind_of = |id: Uuid| claim.messages.iter().find(|m| m.id == id).map(|m| m.kind);
        let mut scheduled = Vec::new();
        let mut dead = Vec::new();
        for outcome in outcomes.iter().filter(|o| applied.contains(&o.id())) {
            let Some(kind) = kind_of(outcome.id()) else {
                continue;
            };
            let task = Task {
                message_id: outcome.id(),
                kind,
            };
            match outcome {
                Outcome::Retry {
                    next_attempt_at, ..
                }
                | Outcome::Deferred {
                    next_attempt_at, ..
                } => scheduled.push((task, *next_attempt_at)),
                Outcome::Failed { error, .. } => dead.push(DeadLetter {
                    task,
                    reason: error.code.clone(),
                }),
                Outcome::Sent { .. } => {}
            }
        }
        // If Redis fails here the rows still say `retry`/`failed`; the sweeper re-enqueues
        // overdue retries, and the dead letter is only a copy of what the row records.
        if let Err(e) = self.queue.schedule(&scheduled).await {
            warn!(error = %format!("{e:#}"), count = scheduled.len(), "could not schedule retries; the sweeper will pick them up");
        }
        if let Err(e) = self.queue.dead_letter(&dead).await {
            error!(error = %format!("{e:#}"), count = dead.len(), "could not write dead letters");
        }
        Ok(applied)
    }
}
