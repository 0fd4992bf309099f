//! Delivering events to the application: every worker (and the single process's in-process
//! worker) runs [`Dispatcher::run`] beside its message loops. Events are fanned out into
//! deliveries as they are written (the outbox insert); the dispatcher claims due deliveries
//! under a lease (a killed worker's claims come due again), POSTs them concurrently — at
//! most `EVENTS_ENDPOINT_CONCURRENCY` at once to one endpoint, so a slow endpoint never
//! holds up the others — signed per Standard Webhooks, and records each attempt: 2xx
//! delivered, 410 disables the endpoint, anything else is retried on
//! `EVENTS_RETRY_SCHEDULE` until the chain fails.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use uuid::Uuid;

use crate::config::events::EventSettings;
use crate::domain::Message;
use crate::domain::event::{secret_key, signature_header};
use crate::net::UrlGuard;
use crate::store::Store;
use crate::store::outbox::{AttemptOutcome, AttemptResult, DueDelivery};

/// Events an earlier version stored without deliveries, fanned out per round.
const DISPATCH_BATCH: i64 = 500;
/// Deliveries claimed per round at most.
const CLAIM_BATCH: usize = 100;

pub const EVENTS_DELIVERED: &str = "events_delivered_total";
pub const EVENT_DELIVERY_DURATION: &str = "event_delivery_duration_seconds";
pub const EVENTS_PENDING: &str = "events_pending";

#[derive(Clone)]
pub struct Dispatcher {
    store: Arc<dyn Store>,
    settings: EventSettings,
    client: reqwest::Client,
    callback_key: Arc<Vec<u8>>,
}

impl Dispatcher {
    pub fn new(store: Arc<dyn Store>, settings: &EventSettings) -> anyhow::Result<Self> {
        metrics::describe_counter!(
            EVENTS_DELIVERED,
            "Event delivery attempts by outcome (delivered, retry, failed)"
        );
        metrics::describe_histogram!(
            EVENT_DELIVERY_DURATION,
            metrics::Unit::Seconds,
            "Duration of event POSTs to endpoints and status callbacks"
        );
        metrics::describe_gauge!(
            EVENTS_PENDING,
            "Event deliveries not yet delivered nor failed, plus events not yet fanned out"
        );
        let client = UrlGuard::new(settings.allow_private_urls)
            .client_builder()
            .timeout(settings.timeout)
            .user_agent(concat!("messaging-service/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let callback_key = secret_key(settings.status_callback_secret.expose_secret())
            .map_err(|e| anyhow::anyhow!("STATUS_CALLBACK_SECRET {e}"))?;
        Ok(Self {
            store,
            settings: settings.clone(),
            client,
            callback_key: Arc::new(callback_key),
        })
    }

    /// Starts the loop on its own task.
    pub fn spawn(self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }

    /// Runs until `shutdown`; attempts in flight then are abandoned and come due again
    /// when their lease ends.
    pub async fn run(self, shutdown: CancellationToken) {
        let (tx, mut rx) = mpsc::unbounded_channel::<AttemptResult>();
        let (record_tx, record_rx) = mpsc::unbounded_channel::<Vec<AttemptResult>>();
        let unrecorded: Arc<std::sync::Mutex<HashSet<i64>>> = Arc::default();
        let recorder = tokio::spawn(self.clone().record_loop(record_rx, unrecorded.clone()));
        let lease = self.settings.lease;
        let mut in_flight: usize = 0;
        let mut per_endpoint: HashMap<Uuid, usize> = HashMap::new();
        let mut limits: HashMap<Uuid, Arc<Semaphore>> = HashMap::new();
        let mut last_gauge = Instant::now() - Duration::from_secs(60);
        let mut last_fan_out = Instant::now() - Duration::from_secs(60);
        let mut fan_out_found_some = false;
        // A claim that skips saturated endpoints walks past all their due deliveries: run it
        // only while it finds work for the others, else once per poll interval.
        let mut others_had_work = true;
        let mut last_skipping_claim = Instant::now() - Duration::from_secs(60);
        // Deliveries held per endpoint: at most those posting plus as many waiting for a
        // permit, so an endpoint's next posts are already claimed when its current ones
        // finish. A claim takes at most `claim_per_endpoint` for one endpoint, and only for
        // endpoints holding no more than that, so the hold never exceeds twice it.
        let claim_per_endpoint = self.settings.endpoint_concurrency.max(1);
        while !shutdown.is_cancelled() {
            let mut results = Vec::new();
            while let Ok(r) = rx.try_recv() {
                results.push(r);
            }
            for r in &results {
                in_flight = in_flight.saturating_sub(1);
                if let Some(e) = r.endpoint_id
                    && let Some(n) = per_endpoint.get_mut(&e)
                {
                    *n = n.saturating_sub(1);
                }
            }
            let mut busy = !results.is_empty();
            if !results.is_empty() {
                // Recorded by the recorder task, so claiming and posting go on meanwhile.
                // Until recorded, a delivery stays leased; should its lease run out first
                // (a database slower than `EVENTS_LEASE`), this worker does not post it again.
                if let Ok(mut set) = unrecorded.lock() {
                    set.extend(results.iter().map(|r| r.delivery_id));
                }
                let _ = record_tx.send(results);
            }
            // Events an earlier version left without deliveries (a rolling upgrade): looked
            // for once per poll interval, and again at once while there are some.
            if fan_out_found_some || last_fan_out.elapsed() >= self.settings.poll_interval {
                last_fan_out = Instant::now();
                fan_out_found_some = match self.store.dispatch_events(DISPATCH_BATCH).await {
                    Ok(n) => n > 0,
                    Err(e) => {
                        debug!(error = %format!("{e:#}"), "fanning out events failed");
                        false
                    }
                };
                busy |= fan_out_found_some;
            }
            let free = self
                .settings
                .concurrency
                .saturating_sub(in_flight)
                .min(CLAIM_BATCH);
            let saturated: Vec<Uuid> = per_endpoint
                .iter()
                .filter(|(_, n)| **n > claim_per_endpoint)
                .map(|(id, _)| *id)
                .collect();
            let claim = saturated.is_empty()
                || others_had_work
                || last_skipping_claim.elapsed() >= self.settings.poll_interval;
            if free > 0 && claim {
                if !saturated.is_empty() {
                    last_skipping_claim = Instant::now();
                }
                match self
                    .store
                    .claim_deliveries(free as i64, lease, &saturated, claim_per_endpoint as i64)
                    .await
                {
                    Ok(due) => {
                        busy |= !due.is_empty();
                        if !saturated.is_empty() {
                            others_had_work = !due.is_empty();
                        }
                        let messages = self.messages_of(&due).await;
                        for d in due {
                            if unrecorded
                                .lock()
                                .is_ok_and(|set| set.contains(&d.delivery_id))
                            {
                                continue;
                            }
                            let message = match (&d.payload, d.message_id, &messages) {
                                (Some(_), _, _) | (None, None, _) => Ok(None),
                                (None, Some(id), Ok(found)) => Ok(found.get(&id).cloned()),
                                (None, Some(_), Err(e)) => Err(e.clone()),
                            };
                            in_flight += 1;
                            let limit = d.endpoint_id.map(|e| {
                                *per_endpoint.entry(e).or_default() += 1;
                                limits
                                    .entry(e)
                                    .or_insert_with(|| {
                                        Arc::new(Semaphore::new(self.settings.endpoint_concurrency))
                                    })
                                    .clone()
                            });
                            let this = self.clone();
                            let tx = tx.clone();
                            tokio::spawn(async move {
                                let _permit = match &limit {
                                    Some(s) => s.acquire().await.ok(),
                                    None => None,
                                };
                                let _ = tx.send(this.attempt(d, message).await);
                            });
                        }
                    }
                    Err(e) => {
                        debug!(error = %format!("{e:#}"), "claiming webhook deliveries failed")
                    }
                }
            }
            if last_gauge.elapsed() >= Duration::from_secs(5) {
                last_gauge = Instant::now();
                if let Ok(n) = self.store.events_pending().await {
                    metrics::gauge!(EVENTS_PENDING).set(n as f64);
                }
            }
            if !busy {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(self.settings.poll_interval) => {}
                    Some(r) = rx.recv() => {
                        // Put it back for the next round's accounting.
                        let _ = tx.send(r);
                    }
                }
            }
        }
        // Attempts already answered are recorded before the loop ends.
        drop(record_tx);
        let _ = recorder.await;
    }

    /// Records attempt results as they come, everything waiting in one write.
    async fn record_loop(
        self,
        mut rx: mpsc::UnboundedReceiver<Vec<AttemptResult>>,
        unrecorded: Arc<std::sync::Mutex<HashSet<i64>>>,
    ) {
        while let Some(mut results) = rx.recv().await {
            while let Ok(more) = rx.try_recv() {
                results.extend(more);
            }
            if let Err(e) = self.record(&results).await {
                warn!(error = %format!("{e:#}"), "recording webhook attempts failed; they will be retried after their lease");
            }
            if let Ok(mut set) = unrecorded.lock() {
                for r in &results {
                    set.remove(&r.delivery_id);
                }
            }
        }
    }

    /// The messages the claimed deliveries report, read in one query; an error is kept
    /// for each delivery that needed one (it is retried later, nothing sent).
    async fn messages_of(&self, due: &[DueDelivery]) -> Result<HashMap<Uuid, Message>, String> {
        let ids: Vec<Uuid> = due
            .iter()
            .filter(|d| d.payload.is_none())
            .filter_map(|d| d.message_id)
            .collect();
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        match self.store.get_messages(&ids).await {
            Ok(found) => Ok(found.into_iter().map(|m| (m.id, m)).collect()),
            Err(e) => Err(format!("{e:#}")),
        }
    }

    async fn record(&self, results: &[AttemptResult]) -> anyhow::Result<()> {
        if results.is_empty() {
            return Ok(());
        }
        let disable_before = OffsetDateTime::now_utc() - self.settings.disable_after;
        self.store.record_attempts(results, disable_before).await?;
        Ok(())
    }

    /// The event's body: frozen by an earlier attempt, or the message as
    /// `GET /api/v1/messages/{id}` returns it, with the status the event reports.
    fn body(&self, d: &DueDelivery, message: Option<Message>) -> anyhow::Result<Value> {
        if let Some(p) = &d.payload {
            return Ok(p.clone());
        }
        let mut data = match (d.message_id, message) {
            (_, Some(m)) => serde_json::to_value(m)?,
            (Some(id), None) => json!({ "id": id }),
            (None, None) => json!({}),
        };
        if let (Some(status), Some(obj)) = (&d.status, data.as_object_mut()) {
            obj.insert("status".into(), Value::String(status.clone()));
        }
        Ok(json!({
            "type": d.event_type,
            "timestamp": d.created_at.format(&Rfc3339)?,
            "data": data,
        }))
    }

    async fn attempt(
        &self,
        d: DueDelivery,
        message: Result<Option<Message>, String>,
    ) -> AttemptResult {
        let started = Instant::now();
        let mut result = AttemptResult {
            delivery_id: d.delivery_id,
            endpoint_id: d.endpoint_id,
            event_id: d.event_id.clone(),
            event_type: d.event_type.clone(),
            attempt: d.attempt,
            status_code: None,
            error: None,
            duration_ms: 0,
            outcome: AttemptOutcome::Failed,
            payload: Value::Null,
            gone: false,
        };
        if !d.endpoint_enabled {
            result.error = Some("the endpoint is disabled".into());
            return result;
        }
        let payload = match message
            .map_err(anyhow::Error::msg)
            .and_then(|m| self.body(&d, m))
        {
            Ok(p) => p,
            Err(e) => {
                // Reading the message failed: try again later, nothing was sent.
                result.error = Some(format!("building the event: {e:#}"));
                result.outcome = self.next(d.attempt);
                return result;
            }
        };
        let sent = self.post(&d, &payload).await;
        result.payload = payload;
        let elapsed = started.elapsed();
        result.duration_ms = i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX);
        metrics::histogram!(EVENT_DELIVERY_DURATION).record(elapsed.as_secs_f64());
        let label = match sent {
            Ok(code) if (200..300).contains(&code) => {
                result.status_code = Some(i32::from(code));
                result.outcome = AttemptOutcome::Delivered;
                "delivered"
            }
            Ok(code) => {
                result.status_code = Some(i32::from(code));
                result.error = Some(format!("the receiver answered {code}"));
                if code == 410 && d.endpoint_id.is_some() {
                    result.gone = true;
                    result.outcome = AttemptOutcome::Failed;
                } else {
                    result.outcome = self.next(d.attempt);
                }
                if result.outcome == AttemptOutcome::Failed {
                    "failed"
                } else {
                    "retry"
                }
            }
            Err(e) => {
                result.error = Some(e);
                result.outcome = self.next(d.attempt);
                if result.outcome == AttemptOutcome::Failed {
                    "failed"
                } else {
                    "retry"
                }
            }
        };
        metrics::counter!(EVENTS_DELIVERED, "outcome" => label).increment(1);
        result
    }

    fn next(&self, attempt: i32) -> AttemptOutcome {
        after_failure(
            &self.settings.retry_schedule,
            attempt,
            OffsetDateTime::now_utc(),
        )
    }

    /// POSTs the signed body; the status code, or why there is none.
    async fn post(&self, d: &DueDelivery, payload: &Value) -> Result<u16, String> {
        let body = payload.to_string();
        let keys: Vec<Vec<u8>> = if d.endpoint_id.is_some() {
            d.secrets
                .iter()
                .filter_map(|s| secret_key(s).ok())
                .collect()
        } else {
            vec![self.callback_key.as_ref().clone()]
        };
        let timestamp = OffsetDateTime::now_utc().unix_timestamp();
        let signature = signature_header(&keys, &d.event_id, timestamp, body.as_bytes());
        let response = self
            .client
            .post(&d.url)
            .header("content-type", "application/json")
            .header("webhook-id", &d.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    format!("no answer within {:?}", self.settings.timeout)
                } else {
                    // Without the URL: it may carry credentials.
                    format!("request failed: {}", e.without_url())
                }
            })?;
        Ok(response.status().as_u16())
    }
}

/// After failed attempt number `attempt` (1 for the first): the next attempt on the
/// schedule, or the end of the chain.
fn after_failure(schedule: &[Duration], attempt: i32, now: OffsetDateTime) -> AttemptOutcome {
    let index = usize::try_from(attempt.max(1) - 1).unwrap_or(usize::MAX);
    match schedule.get(index) {
        Some(delay) => AttemptOutcome::Retry { at: now + *delay },
        None => AttemptOutcome::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_follow_the_schedule_then_the_chain_fails() {
        let schedule = [Duration::from_secs(5), Duration::from_secs(300)];
        let now = time::macros::datetime!(2026-12-02 10:00:00 UTC);
        assert_eq!(
            after_failure(&schedule, 1, now),
            AttemptOutcome::Retry {
                at: now + Duration::from_secs(5)
            }
        );
        assert_eq!(
            after_failure(&schedule, 2, now),
            AttemptOutcome::Retry {
                at: now + Duration::from_secs(300)
            }
        );
        assert_eq!(after_failure(&schedule, 3, now), AttemptOutcome::Failed);
        assert_eq!(after_failure(&[], 1, now), AttemptOutcome::Failed);
    }
}
