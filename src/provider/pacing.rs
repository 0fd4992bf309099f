//! Per-sender pacing: at most N messages per second from one sender number (Twilio's
//! per-number throughput), held across every worker.
//!
//! Each send reserves the sender's next free slot (slots `1/N` apart). A slot at most
//! `PACING_MAX_WAIT` away is awaited inside the message's own send task, so other messages
//! of the batch carry on. A later slot stays reserved for that message, and the message is
//! deferred through the delayed-retry set to come back just before it: a burst of 10,000
//! messages from one number queues in Redis instead of holding worker slots or drawing
//! 429s, and a deferral does not count as a retry.
//!
//! `RedisPacer` keeps the slots in Redis (one Lua script, Redis's clock), shared by all
//! workers; `LocalPacer` keeps them in process for a single-process deployment.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use redis::Script;
use redis::aio::ConnectionManager;
use tracing::warn;
use uuid::Uuid;

use super::{Provider, ProviderError, Receipt};
use crate::config::ConnectionUrl;
use crate::config::providers::PacingSettings;
use crate::domain::{Message, MessageType, address_mask};

#[async_trait]
pub trait Pacer: Send + Sync + 'static {
    /// Reserves `ticket`'s slot for `sender` (slots `interval` apart) and returns how long
    /// until it. A slot further than `max_wait` away stays held for the ticket: asking
    /// again returns the same slot instead of taking another.
    async fn reserve(
        &self,
        sender: &str,
        interval: Duration,
        ticket: Uuid,
        max_wait: Duration,
    ) -> anyhow::Result<Duration>;
}

const RESERVE_SCRIPT: &str = r"
-- KEYS[1]: the sender's next free slot; KEYS[2]: the slot held by this ticket.
-- ARGV[1]: interval, ARGV[2]: max wait (microseconds). Returns the wait in microseconds.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local max_wait = tonumber(ARGV[2])
local held = redis.call('GET', KEYS[2])
if held then
  local wait = tonumber(held) - now
  if wait <= max_wait then redis.call('DEL', KEYS[2]) end
  if wait < 0 then wait = 0 end
  return wait
end
local slot = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local nxt = slot + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%d', nxt), 'PX', math.floor((nxt - now) / 1000) + 1000)
local wait = slot - now
if wait > max_wait then
  redis.call('SET', KEYS[2], string.format('%d', slot), 'PX', math.floor(wait / 1000) + 3600000)
end
return wait
";

pub struct RedisPacer {
    conn: ConnectionManager,
    prefix: String,
    script: Script,
}

impl RedisPacer {
    /// Keys live under `{prefix}pacing:`, beside the queue's.
    pub fn new(url: &ConnectionUrl, prefix: &str) -> anyhow::Result<Self> {
        let client =
            redis::Client::open(url.expose()).context("REDIS_URL is not a valid Redis URL")?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1);
        Ok(Self {
            conn: ConnectionManager::new_lazy_with_config(client, config)?,
            prefix: prefix.to_owned(),
            script: Script::new(RESERVE_SCRIPT),
        })
    }
}

#[async_trait]
impl Pacer for RedisPacer {
    async fn reserve(
        &self,
        sender: &str,
        interval: Duration,
        ticket: Uuid,
        max_wait: Duration,
    ) -> anyhow::Result<Duration> {
        let mut conn = self.conn.clone();
        let wait_us: i64 = self
            .script
            .key(format!("{}pacing:sender:{sender}", self.prefix))
            .key(format!("{}pacing:ticket:{ticket}", self.prefix))
            .arg(interval.as_micros() as u64)
            .arg(max_wait.as_micros() as u64)
            .invoke_async(&mut conn)
            .await
            .context("reserving a pacing slot")?;
        Ok(Duration::from_micros(wait_us.max(0) as u64))
    }
}

/// Slots kept in this process: for a deployment with a single worker.
#[derive(Default)]
pub struct LocalPacer {
    state: Mutex<LocalState>,
}

#[derive(Default)]
struct LocalState {
    next_free: HashMap<String, Instant>,
    held: HashMap<Uuid, Instant>,
}

#[async_trait]
impl Pacer for LocalPacer {
    async fn reserve(
        &self,
        sender: &str,
        interval: Duration,
        ticket: Uuid,
        max_wait: Duration,
    ) -> anyhow::Result<Duration> {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = s.held.get(&ticket).copied() {
            let wait = slot.saturating_duration_since(now);
            if wait <= max_wait {
                s.held.remove(&ticket);
            }
            return Ok(wait);
        }
        if s.next_free.len() > 10_000 {
            s.next_free.retain(|_, at| *at > now);
        }
        let slot = s.next_free.get(sender).copied().unwrap_or(now).max(now);
        s.next_free.insert(sender.to_owned(), slot + interval);
        let wait = slot - now;
        if wait > max_wait {
            s.held.insert(ticket, slot);
        }
        Ok(wait)
    }
}

/// Which senders are paced, and at what rate.
#[derive(Debug, Clone)]
pub struct PacingRules {
    settings: PacingSettings,
    /// Channels whose providers are paced (sms and mms share a number's throughput).
    phone: bool,
    email: bool,
}

/// Toll-free area codes of the North American numbering plan.
const TOLL_FREE: [&str; 7] = ["800", "833", "844", "855", "866", "877", "888"];

impl PacingRules {
    pub fn new(settings: PacingSettings, phone: bool, email: bool) -> Self {
        Self {
            settings,
            phone,
            email,
        }
    }

    /// The spacing between two sends of this message's sender, if it is paced.
    pub fn interval(&self, message: &Message) -> Option<Duration> {
        let sender = message.from.to_ascii_lowercase();
        let rate = match self.settings.senders.get(&sender) {
            Some(rate) => *rate,
            None => match message.kind {
                MessageType::Sms | MessageType::Mms if self.phone => {
                    let toll_free = sender
                        .strip_prefix("+1")
                        .is_some_and(|rest| TOLL_FREE.iter().any(|c| rest.starts_with(c)));
                    if toll_free {
                        self.settings.toll_free
                    } else {
                        self.settings.long_code
                    }
                }
                MessageType::Email if self.email => self.settings.email,
                _ => 0.0,
            },
        };
        (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate))
    }
}

/// Wraps a channel's provider so its senders keep their pace.
pub struct PacedProvider {
    inner: Arc<dyn Provider>,
    pacer: Arc<dyn Pacer>,
    rules: PacingRules,
}

impl PacedProvider {
    pub fn new(inner: Arc<dyn Provider>, pacer: Arc<dyn Pacer>, rules: PacingRules) -> Self {
        Self {
            inner,
            pacer,
            rules,
        }
    }
}

#[async_trait]
impl Provider for PacedProvider {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn find_sent(
        &self,
        message: &Message,
        since: time::OffsetDateTime,
    ) -> Result<Option<Receipt>, ProviderError> {
        self.inner.find_sent(message, since).await
    }

    async fn send(&self, message: &Message) -> Result<Receipt, ProviderError> {
        let Some(interval) = self.rules.interval(message) else {
            return self.inner.send(message).await;
        };
        let max_wait = self.rules.settings.max_wait;
        let sender = message.from.to_ascii_lowercase();
        match self
            .pacer
            .reserve(&sender, interval, message.id, max_wait)
            .await
        {
            Ok(wait) if wait <= max_wait => {
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
            }
            Ok(wait) => {
                // Come back a little early and wait out the rest in the task: the slot is
                // held, and a late return would stretch the sender's pace.
                return Err(ProviderError::Deferred {
                    reason: format!(
                        "sender {} is paced at {:.2}/s; its slot is in {:.1}s",
                        address_mask(&message.from),
                        1.0 / interval.as_secs_f64(),
                        wait.as_secs_f64()
                    ),
                    retry_after: wait.saturating_sub(max_wait / 2),
                });
            }
            // Pacing protects against 429s; the provider's own limits remain the backstop.
            Err(e) => warn!(error = %format!("{e:#}"), "pacing unavailable; sending unpaced"),
        }
        self.inner.send(message).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_local_pacer_spaces_slots_and_holds_far_ones_for_their_ticket() {
        let p = LocalPacer::default();
        let step = Duration::from_millis(100);
        let max = Duration::from_millis(150);
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        assert!(p.reserve("+1", step, a, max).await.unwrap() < Duration::from_millis(5));
        let wb = p.reserve("+1", step, b, max).await.unwrap();
        assert!(wb > Duration::from_millis(90) && wb <= step, "{wb:?}");
        let wc = p.reserve("+1", step, c, max).await.unwrap();
        assert!(wc > max, "the third slot is beyond the wait limit: {wc:?}");
        // Asking again returns c's held slot, not a new one.
        let again = p.reserve("+1", step, c, max).await.unwrap();
        assert!(
            again <= wc && again > Duration::from_millis(150),
            "{again:?}"
        );
        // Another sender is independent.
        assert!(
            p.reserve("+2", step, Uuid::new_v4(), max).await.unwrap() < Duration::from_millis(5)
        );
    }
}
