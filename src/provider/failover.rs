//! Circuit breakers and failover. A channel's providers are tried in their configured
//! order; a provider whose circuit is open is skipped, and a transient error moves on to
//! the next one. Permanent errors do not fail over: a refused number or an opted-out
//! recipient is refused everywhere, and sending elsewhere would ignore the refusal.
//!
//! Breakers live in each worker process: a worker learns of an outage from its own calls.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tracing::warn;

use super::{Provider, ProviderError, Receipt};
use crate::domain::Message;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is allowed through; more only if it has not answered within the cool-down.
    HalfOpen {
        probe_at: Instant,
    },
}

/// Opens after `threshold` consecutive transient failures, half-opens after `cooldown`.
#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a plain value: a panic elsewhere cannot leave it half-written.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// May a call go through now? `Err` carries how long until one may.
    pub fn try_acquire(&self) -> Result<(), Duration> {
        let now = Instant::now();
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Ok(()),
            State::Open { until } if now < until => Err(until - now),
            State::Open { .. } => {
                *state = State::HalfOpen { probe_at: now };
                Ok(())
            }
            State::HalfOpen { probe_at } if now < probe_at + self.cooldown => {
                Err(probe_at + self.cooldown - now)
            }
            State::HalfOpen { .. } => {
                *state = State::HalfOpen { probe_at: now };
                Ok(())
            }
        }
    }

    /// The provider answered (success or a permanent refusal): it is healthy.
    pub fn on_success(&self) {
        *self.lock() = State::Closed { failures: 0 };
    }

    pub fn on_failure(&self) {
        let mut state = self.lock();
        *state = match *state {
            State::Closed { failures } if failures + 1 < self.threshold => State::Closed {
                failures: failures + 1,
            },
            _ => State::Open {
                until: Instant::now() + self.cooldown,
            },
        };
    }

    /// How long until a call may go through again, when none may now.
    pub fn reopens_in(&self) -> Option<Duration> {
        let now = Instant::now();
        match *self.lock() {
            State::Closed { .. } => None,
            State::Open { until } => until.checked_duration_since(now),
            State::HalfOpen { probe_at } => (probe_at + self.cooldown).checked_duration_since(now),
        }
    }

    /// `closed`, `open` or `half_open`, for logs and metrics.
    pub fn state(&self) -> &'static str {
        match *self.lock() {
            State::Closed { .. } => "closed",
            State::Open { until } if Instant::now() < until => "open",
            State::Open { .. } | State::HalfOpen { .. } => "half_open",
        }
    }
}

struct Member {
    provider: Arc<dyn Provider>,
    breaker: CircuitBreaker,
}

/// A channel's providers in failover order, each behind its own circuit breaker.
pub struct FailoverProvider {
    name: String,
    members: Vec<Member>,
    cooldown: Duration,
}

impl FailoverProvider {
    pub fn new(providers: Vec<Arc<dyn Provider>>, threshold: u32, cooldown: Duration) -> Self {
        let name = providers
            .iter()
            .map(|p| p.name().to_owned())
            .collect::<Vec<_>>()
            .join(",");
        Self {
            name,
            members: providers
                .into_iter()
                .map(|provider| Member {
                    provider,
                    breaker: CircuitBreaker::new(threshold, cooldown),
                })
                .collect(),
            cooldown,
        }
    }

    /// A random share of half a cool-down, added to the time a message waits for a circuit:
    /// the messages waiting then come back in a different order each time, so the one probe
    /// a reopened circuit lets through goes to a different message each time instead of the
    /// same one spending its retries.
    fn spread(&self) -> Duration {
        (self.cooldown / 2).mul_f64(fastrand::f64())
    }

    /// Each provider's name and circuit state, in order.
    pub fn circuits(&self) -> Vec<(String, &'static str)> {
        self.members
            .iter()
            .map(|m| (m.provider.name().to_owned(), m.breaker.state()))
            .collect()
    }
}

fn prefixed(name: &str, e: ProviderError) -> ProviderError {
    match e {
        ProviderError::Transient {
            code,
            message,
            retry_after,
        } => ProviderError::Transient {
            code,
            message: format!("{name}: {message}"),
            retry_after,
        },
        ProviderError::Permanent { code, message } => ProviderError::Permanent {
            code,
            message: format!("{name}: {message}"),
        },
        other => other,
    }
}

#[async_trait]
impl Provider for FailoverProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, message: &Message) -> Result<Receipt, ProviderError> {
        let mut last: Option<ProviderError> = None;
        let mut skipped_wait: Option<Duration> = None;
        for (i, member) in self.members.iter().enumerate() {
            let name = member.provider.name();
            if let Err(wait) = member.breaker.try_acquire() {
                skipped_wait = Some(skipped_wait.map_or(wait, |r| r.min(wait)));
                continue;
            }
            match member.provider.send(message).await {
                Ok(mut receipt) => {
                    member.breaker.on_success();
                    receipt.provider.get_or_insert_with(|| name.to_owned());
                    return Ok(receipt);
                }
                Err(e @ ProviderError::Permanent { .. }) => {
                    member.breaker.on_success();
                    return Err(prefixed(name, e));
                }
                Err(e @ ProviderError::Deferred { .. }) => return Err(e),
                Err(e @ ProviderError::Transient { .. }) => {
                    member.breaker.on_failure();
                    if let Some(next) = self.members.get(i + 1) {
                        warn!(message_id = %message.id, provider = name, next = next.provider.name(), error = %e, circuit = member.breaker.state(), "provider failed; failing over");
                    }
                    last = Some(prefixed(name, e));
                }
            }
        }
        // A message that just failed everywhere comes back no sooner than a circuit lets a
        // call through (spread like the messages waiting for it): a long outage then spreads
        // its few probes over the backlog instead of spending one message's retries.
        let reopens = self
            .members
            .iter()
            .map(|m| m.breaker.reopens_in())
            .collect::<Option<Vec<_>>>()
            .and_then(|waits| waits.into_iter().min());
        if let (
            Some(ProviderError::Transient {
                retry_after: after, ..
            }),
            Some(wait),
        ) = (last.as_mut(), reopens)
        {
            let wait = wait + self.spread();
            *after = Some(after.map_or(wait, |a| a.max(wait)));
        }
        // No provider was called: the message waits for a circuit (deferred, like pacing),
        // which is not an attempt and spends none of its retries.
        Err(last.unwrap_or_else(|| ProviderError::Deferred {
            reason: format!(
                "circuit_open: every provider of this channel ({}) has its circuit open",
                self.name
            ),
            retry_after: skipped_wait.unwrap_or(Duration::from_secs(1)) + self.spread(),
        }))
    }

    /// Asks each provider in turn (those whose circuit lets a call through); the first that
    /// knows the message answers. A provider that cannot be asked is skipped: the message
    /// is then sent, as before reconciling existed.
    async fn find_sent(
        &self,
        message: &Message,
        since: time::OffsetDateTime,
    ) -> Result<Option<Receipt>, ProviderError> {
        for member in &self.members {
            if member.breaker.state() == "open" {
                continue;
            }
            match member.provider.find_sent(message, since).await {
                Ok(Some(mut receipt)) => {
                    receipt
                        .provider
                        .get_or_insert_with(|| member.provider.name().to_owned());
                    return Ok(Some(receipt));
                }
                Ok(None) => {}
                // The provider asks for time before it can tell (SendGrid's reconcile wait).
                Err(e @ ProviderError::Deferred { .. }) => return Err(e),
                Err(e) => {
                    warn!(message_id = %message.id, provider = member.provider.name(), error = %e, "could not ask the provider whether it already has the message");
                    return Err(e);
                }
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_the_threshold_and_half_opens_after_the_cooldown() {
        let b = CircuitBreaker::new(3, Duration::from_millis(50));
        b.on_failure();
        b.on_failure();
        assert!(b.try_acquire().is_ok(), "two failures keep it closed");
        b.on_failure();
        assert_eq!(b.state(), "open");
        assert!(b.try_acquire().is_err());
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.try_acquire().is_ok(), "one probe after the cool-down");
        assert!(b.try_acquire().is_err(), "only one probe at a time");
        b.on_failure();
        assert_eq!(b.state(), "open", "a failed probe opens it again");
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.try_acquire().is_ok());
        b.on_success();
        assert_eq!(b.state(), "closed");
        assert!(b.try_acquire().is_ok());
    }

    struct Down;

    #[async_trait]
    impl Provider for Down {
        fn name(&self) -> &str {
            "down"
        }
        async fn send(&self, _: &Message) -> Result<Receipt, ProviderError> {
            Err(ProviderError::Transient {
                code: "500".into(),
                message: "down".into(),
                retry_after: None,
            })
        }
    }

    fn message() -> Message {
        let now = time::OffsetDateTime::now_utc();
        Message {
            id: uuid::Uuid::now_v7(),
            conversation_id: uuid::Uuid::now_v7(),
            direction: crate::domain::Direction::Outbound,
            kind: crate::domain::MessageType::Sms,
            from: "+15551234567".into(),
            to: "+15557654321".into(),
            body: Some("hello".into()),
            subject: None,
            attachments: Vec::new(),
            status: crate::domain::MessageStatus::Sending,
            provider: None,
            provider_message_id: None,
            num_segments: None,
            retry_count: 0,
            error: None,
            metadata: serde_json::json!({}),
            idempotency_key: None,
            created_at: now,
            updated_at: now,
            sent_at: None,
            delivered_at: None,
            failed_at: None,
            next_attempt_at: None,
            provider_timestamp: None,
            read_at: None,
            send_at: None,
            status_callback: None,
            size: None,
        }
    }

    #[tokio::test]
    async fn with_every_circuit_open_a_message_is_deferred_not_attempted() {
        let p = FailoverProvider::new(vec![Arc::new(Down)], 1, Duration::from_secs(60));
        let m = message();
        assert!(matches!(
            p.send(&m).await,
            Err(ProviderError::Transient { .. })
        ));
        match p.send(&m).await {
            Err(ProviderError::Deferred {
                reason,
                retry_after,
            }) => {
                assert!(reason.starts_with("circuit_open"), "{reason}");
                assert!(retry_after > Duration::from_secs(50));
            }
            other => panic!("expected a deferral, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_message_that_failed_everywhere_waits_at_least_until_a_circuit_reopens() {
        let p = FailoverProvider::new(vec![Arc::new(Down)], 1, Duration::from_secs(30));
        match p.send(&message()).await {
            Err(ProviderError::Transient { retry_after, .. }) => {
                assert!(retry_after.is_some_and(|d| d > Duration::from_secs(25)));
            }
            other => panic!("expected a transient error, got {other:?}"),
        }
        let closed = CircuitBreaker::new(3, Duration::from_secs(30));
        assert_eq!(closed.reopens_in(), None);
    }

    #[test]
    fn a_success_resets_the_count_of_consecutive_failures() {
        let b = CircuitBreaker::new(2, Duration::from_secs(60));
        b.on_failure();
        b.on_success();
        b.on_failure();
        assert_eq!(b.state(), "closed");
    }
}
