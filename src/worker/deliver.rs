//! Sending claimed messages and settling the outcomes: shared by the worker and by the
//! API's synchronous mode, so both follow the same rules.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use time::OffsetDateTime;
use tracing::{debug, error, info, warn};
use uuid::Uuid;

use super::backoff::retry_delay;
use super::suppression;
use crate::config::QueueSettings;
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
    pub provider_timeout: Duration,
}

impl Deliverer {
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
        let applied = self.record_with_retries(claim.token, outcomes).await?;
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

    /// A lost outcome means a second send after reclaim, so storing it is worth a few tries.
    async fn record_with_retries(
        &self,
        token: Uuid,
        outcomes: &[Outcome],
    ) -> anyhow::Result<Vec<Uuid>> {
        let mut delay = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            match self.store.record_outcomes(token, outcomes).await {
                Ok(applied) => return Ok(applied),
                Err(e) if attempt < 5 => {
                    warn!(error = %format!("{e:#}"), attempt, "recording outcomes failed; trying again");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
