//! What the service tells its operators. Metrics: the Prometheus recorder (installed once
//! per process), the metric names (the operations guide's names are the contract), the
//! helpers the API and the worker call, the periodic sampler of queue depths and database
//! pool usage, and the worker's small `/metrics` listener. Logs: the subscriber set-up
//! (`logging`) and the JSON line format (`json_log`). Request metrics and access lines:
//! `http`.

pub mod http;
pub mod json_log;
pub mod logging;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::ProviderSettings;
use crate::domain::MessageType;
use crate::provider::ProviderError;
use crate::queue::Queue;
use crate::store::Store;

pub const MESSAGE_SENT: &str = "message_sent_total";
pub const MESSAGE_FAILED: &str = "message_failed_total";
pub const MESSAGE_RETRIES: &str = "message_retries_total";
pub const MESSAGE_PROCESSING: &str = "message_processing_duration_seconds";
pub const PROVIDER_REQUEST_DURATION: &str = "provider_request_duration_seconds";
pub const PROVIDER_ERRORS: &str = "provider_errors_total";
pub const API_REQUEST_DURATION: &str = "api_request_duration_seconds";
pub const API_REQUESTS_IN_FLIGHT: &str = "api_requests_in_flight";
pub const RATE_LIMIT_HITS: &str = "rate_limit_hits_total";
pub const QUEUE_DEPTH: &str = "queue_depth";
pub const QUEUE_DELAYED: &str = "queue_delayed";
pub const QUEUE_DEAD_LETTER: &str = "queue_dead_letter_size";
pub const QUEUE_RECLAIMED: &str = "queue_reclaimed_total";
pub const MESSAGE_RECONCILED: &str = "message_reconciled_total";
pub const SWEEPER_REQUEUED: &str = "sweeper_requeued_total";
pub const SCHEDULED_PROMOTED: &str = "scheduled_promoted_total";
pub const WEBHOOK_DELIVERIES: &str = "webhook_deliveries_total";
pub const DB_POOL_CONNECTIONS: &str = "db_pool_connections";
pub const DB_POOL_MAX: &str = "db_pool_max_connections";
pub const SAMPLER_ERRORS: &str = "metrics_sampler_errors_total";
/// Set by each `/ready`: 1 when the dependency (`database`, `redis`, `queue`) answered.
pub const DEPENDENCY_UP: &str = "dependency_up";
pub const LOG_WRITE_ERRORS: &str = "log_write_errors_total";

/// Latency buckets (seconds) for requests and provider calls: 1 ms to 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How often queue depths and pool usage are sampled (and histograms compacted).
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's metrics, installing the recorder on first use. Every series the guide
/// names is registered at zero so dashboards and alerts see it before the first event.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(MESSAGE_PROCESSING.into()),
                    &[
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    ],
                )
            })
            .map(PrometheusBuilder::build_recorder);
        let handle = match recorder {
            Ok(recorder) => {
                let handle = recorder.handle();
                if metrics::set_global_recorder(recorder).is_err() {
                    warn!("another metrics recorder is already installed; /metrics stays empty");
                }
                handle
            }
            // Only reachable with an empty bucket list, which the constants above are not.
            Err(e) => {
                warn!(error = %e, "cannot configure the metrics recorder");
                PrometheusBuilder::new().build_recorder().handle()
            }
        };
        describe();
        handle
    })
}

fn describe() {
    describe_counter!(
        MESSAGE_SENT,
        "Messages accepted by a provider, by type and provider"
    );
    describe_counter!(
        MESSAGE_FAILED,
        "Messages that failed for good, by type, provider and reason (rejected, retries_exhausted)"
    );
    describe_counter!(
        MESSAGE_RETRIES,
        "Transient provider failures scheduled for another attempt, by type and provider"
    );
    describe_histogram!(
        MESSAGE_PROCESSING,
        metrics::Unit::Seconds,
        "Time from a worker taking a message off the queue to its outcome being stored"
    );
    describe_histogram!(
        PROVIDER_REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Duration of provider calls, by provider and outcome"
    );
    describe_counter!(
        PROVIDER_ERRORS,
        "Provider call errors by provider and class (rate_limited, timeout, server_error, other_transient, rejected)"
    );
    describe_histogram!(
        API_REQUEST_DURATION,
        metrics::Unit::Seconds,
        "HTTP request duration by method, route template and status"
    );
    describe_gauge!(API_REQUESTS_IN_FLIGHT, "HTTP requests being served");
    describe_counter!(
        RATE_LIMIT_HITS,
        "Requests refused with 429 by the rate limiter"
    );
    describe_gauge!(
        QUEUE_DEPTH,
        "Entries in each message stream (the backlog), sampled"
    );
    describe_gauge!(QUEUE_DELAYED, "Retries waiting for their due time, sampled");
    describe_gauge!(
        QUEUE_DEAD_LETTER,
        "Entries in message_queue:dead_letter, sampled"
    );
    describe_counter!(
        MESSAGE_RECONCILED,
        "Messages found already sent at the provider before a re-send, and recorded instead"
    );
    describe_counter!(
        QUEUE_RECLAIMED,
        "Queue entries taken over from a worker that stopped answering"
    );
    describe_counter!(
        SWEEPER_REQUEUED,
        "Stranded messages the sweeper put back on the queue"
    );
    describe_counter!(
        SCHEDULED_PROMOTED,
        "Scheduled messages that fell due and were moved to pending"
    );
    describe_counter!(
        WEBHOOK_DELIVERIES,
        "Provider webhooks received, by provider and outcome"
    );
    describe_gauge!(
        DB_POOL_CONNECTIONS,
        "Database pool connections by state (idle, in_use), sampled"
    );
    describe_gauge!(DB_POOL_MAX, "Database pool size limit");
    describe_gauge!(
        DEPENDENCY_UP,
        "Whether each dependency answered the last /ready check (1 up, 0 down)"
    );
    describe_counter!(
        SAMPLER_ERRORS,
        "Failed samples of queue depths (Redis unreachable)"
    );
    describe_counter!(
        LOG_WRITE_ERRORS,
        "Log lines that could not be written (stdout closed or full) and were dropped"
    );
    // Series with no labels exist from the start, at zero.
    counter!(RATE_LIMIT_HITS).absolute(0);
    counter!(QUEUE_RECLAIMED).absolute(0);
    counter!(SWEEPER_REQUEUED).absolute(0);
    counter!(SCHEDULED_PROMOTED).absolute(0);
    counter!(LOG_WRITE_ERRORS).absolute(0);
    gauge!(API_REQUESTS_IN_FLIGHT).set(0.0);
}

/// Why a message fails for good (the `reason` label of `message_failed_total`).
pub const FAILURE_REASONS: [&str; 2] = ["rejected", "retries_exhausted"];
/// The `class` label of `provider_errors_total` (see `error_class`).
pub const PROVIDER_ERROR_CLASSES: [&str; 5] = [
    "rate_limited",
    "timeout",
    "server_error",
    "other_transient",
    "rejected",
];
/// The `outcome` label of `webhook_deliveries_total`: what became of a callback.
pub const WEBHOOK_OUTCOMES: [&str; 7] = [
    "applied",
    "recorded",
    "duplicate",
    "unknown_message",
    "stored",
    "invalid",
    "rejected",
];

/// Exports every labelled counter at zero for the label sets the configured providers can
/// produce, so `rate()` and alerts see a series before the first event. A channel's
/// attempts, retries and failures are labelled with its provider chain (`twilio,mock` with
/// failover); a sent message with the provider that sent it.
pub fn export_known_series(providers: &ProviderSettings) {
    handle();
    let chain = |kinds: &[crate::config::providers::ProviderKind]| {
        kinds
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    for (kind, kinds) in [
        (MessageType::Sms, &providers.sms),
        (MessageType::Mms, &providers.sms),
        (MessageType::Email, &providers.email),
    ] {
        let chain = chain(kinds);
        for member in kinds.iter() {
            counter!(MESSAGE_SENT, "type" => kind.as_str(), "provider" => member.as_str())
                .absolute(0);
        }
        for reason in FAILURE_REASONS {
            counter!(MESSAGE_FAILED, "type" => kind.as_str(), "provider" => chain.clone(), "reason" => reason)
                .absolute(0);
        }
        counter!(MESSAGE_RETRIES, "type" => kind.as_str(), "provider" => chain.clone()).absolute(0);
        for class in PROVIDER_ERROR_CLASSES {
            counter!(PROVIDER_ERRORS, "provider" => chain.clone(), "class" => class).absolute(0);
        }
    }
    for provider in ["twilio", "sendgrid"] {
        for outcome in WEBHOOK_OUTCOMES {
            counter!(WEBHOOK_DELIVERIES, "provider" => provider, "outcome" => outcome).absolute(0);
        }
    }
}

/// For the log writer: one line could not be written.
pub(crate) fn log_write_failed() {
    counter!(LOG_WRITE_ERRORS).increment(1);
}

/// The text `/metrics` serves.
pub fn render() -> String {
    handle().render()
}

/// A bounded label for a provider error. Provider codes themselves are unbounded (Twilio
/// alone has hundreds), so they stay in the message's `error` and the logs.
pub fn error_class(error: &ProviderError) -> &'static str {
    match error {
        ProviderError::Permanent { .. } => "rejected",
        // Held back by our own pacing: the provider was not called.
        ProviderError::Deferred { .. } => "deferred",
        ProviderError::Transient { code, .. } => {
            let code = code.to_ascii_lowercase();
            if code.contains("429") || code.contains("rate") {
                "rate_limited"
            } else if code.contains("timeout") || code.contains("timed_out") {
                "timeout"
            } else if code.len() == 3 && code.starts_with('5') {
                "server_error"
            } else {
                "other_transient"
            }
        }
    }
}

/// One provider call finished.
pub fn provider_call(provider: &str, elapsed: Duration, result: Result<(), &ProviderError>) {
    let outcome = if result.is_ok() { "success" } else { "error" };
    histogram!(PROVIDER_REQUEST_DURATION, "provider" => provider.to_owned(), "outcome" => outcome)
        .record(elapsed.as_secs_f64());
    if let Err(e) = result {
        counter!(PROVIDER_ERRORS, "provider" => provider.to_owned(), "class" => error_class(e))
            .increment(1);
    }
}

pub fn message_sent(kind: MessageType, provider: &str) {
    counter!(MESSAGE_SENT, "type" => kind.as_str(), "provider" => provider.to_owned()).increment(1);
}

/// `reason` is `rejected` (a permanent error) or `retries_exhausted`.
pub fn message_failed(kind: MessageType, provider: &str, reason: &'static str) {
    counter!(MESSAGE_FAILED, "type" => kind.as_str(), "provider" => provider.to_owned(), "reason" => reason)
        .increment(1);
}

pub fn message_retry(kind: MessageType, provider: &str) {
    counter!(MESSAGE_RETRIES, "type" => kind.as_str(), "provider" => provider.to_owned())
        .increment(1);
}

pub fn message_processed(kind: MessageType, elapsed: Duration) {
    histogram!(MESSAGE_PROCESSING, "type" => kind.as_str()).record(elapsed.as_secs_f64());
}

pub fn message_reconciled(kind: MessageType, provider: &str) {
    counter!(MESSAGE_RECONCILED, "type" => kind.as_str(), "provider" => provider.to_owned())
        .increment(1);
}

pub fn reclaimed(count: usize) {
    counter!(QUEUE_RECLAIMED).increment(count as u64);
}

pub fn swept(count: usize) {
    counter!(SWEEPER_REQUEUED).increment(count as u64);
}

pub fn scheduled_promoted(count: usize) {
    counter!(SCHEDULED_PROMOTED).increment(count as u64);
}

/// For the webhook handlers: `outcome` is a short fixed word (`accepted`, `duplicate`,
/// `bad_signature`, `invalid`).
pub fn webhook_received(provider: &'static str, outcome: &'static str) {
    counter!(WEBHOOK_DELIVERIES, "provider" => provider, "outcome" => outcome).increment(1);
}

/// For the rate limiter: one request refused.
pub fn rate_limit_hit() {
    counter!(RATE_LIMIT_HITS).increment(1);
}

/// Samples queue depths and pool usage every `interval` until `shutdown`, and keeps the
/// histograms compact between scrapes. One Redis pipeline per interval, never per request.
pub fn spawn_sampler(
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    interval: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let handle = handle();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            sample(store.as_ref(), queue.as_ref()).await;
            handle.run_upkeep();
        }
    })
}

async fn sample(store: &dyn Store, queue: &dyn Queue) {
    match tokio::time::timeout(Duration::from_secs(2), queue.depths()).await {
        Ok(Ok(d)) => {
            for (kind, n) in [
                (MessageType::Sms, d.sms),
                (MessageType::Mms, d.mms),
                (MessageType::Email, d.email),
            ] {
                gauge!(QUEUE_DEPTH, "stream" => format!("message_queue:{kind}")).set(n as f64);
            }
            gauge!(QUEUE_DELAYED).set(d.delayed as f64);
            gauge!(QUEUE_DEAD_LETTER).set(d.dead_letter as f64);
        }
        Ok(Err(e)) => {
            counter!(SAMPLER_ERRORS).increment(1);
            debug!(error = %format!("{e:#}"), "cannot sample queue depths");
        }
        Err(_) => {
            counter!(SAMPLER_ERRORS).increment(1);
            debug!("sampling queue depths timed out");
        }
    }
    if let Some(pool) = store.pool_usage() {
        gauge!(DB_POOL_CONNECTIONS, "state" => "idle").set(f64::from(pool.idle));
        gauge!(DB_POOL_CONNECTIONS, "state" => "in_use")
            .set(f64::from(pool.size.saturating_sub(pool.idle)));
        gauge!(DB_POOL_MAX).set(f64::from(pool.max));
    }
}

/// The worker's own `/metrics` (and `/health`) on `addr`, so Prometheus can scrape every
/// worker. Returns the bound address; serves until `shutdown`.
pub async fn serve_worker_metrics(
    addr: SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    handle();
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} for worker metrics (WORKER_METRICS_PORT)")
    })?;
    let bound = listener.local_addr()?;
    let app = Router::new().route("/metrics", get(metrics_text)).route(
        "/health",
        get(|| async { axum::Json(serde_json::json!({"status": "healthy"})) }),
    );
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = served {
            warn!(error = %e, "worker metrics listener stopped");
        }
    });
    info!(%bound, "worker metrics on http://{bound}/metrics");
    Ok(bound)
}

/// `GET /metrics` in the Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String)),
)]
pub async fn metrics_text() -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transient(code: &str) -> ProviderError {
        ProviderError::Transient {
            code: code.into(),
            message: String::new(),
            retry_after: None,
        }
    }

    #[test]
    fn provider_errors_fall_into_a_few_classes() {
        assert_eq!(error_class(&transient("429")), "rate_limited");
        assert_eq!(error_class(&transient("20429")), "rate_limited");
        assert_eq!(error_class(&transient("timeout")), "timeout");
        assert_eq!(error_class(&transient("503")), "server_error");
        assert_eq!(
            error_class(&transient("connection_refused")),
            "other_transient"
        );
        let permanent = ProviderError::Permanent {
            code: "21211".into(),
            message: String::new(),
        };
        assert_eq!(error_class(&permanent), "rejected");
    }
}
