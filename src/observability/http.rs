//! Per-request metrics and the access log line. Runs inside the request span (so the
//! line carries `request_id`) and after routing (so the route is the template, e.g.
//! `/api/v1/messages/{id}`, never the raw path: label values stay bounded).

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics::{gauge, histogram};

use super::{API_REQUEST_DURATION, API_REQUESTS_IN_FLIGHT};

/// Decrements the in-flight gauge however the request ends (including cancellation).
struct InFlight;

impl InFlight {
    fn start() -> Self {
        gauge!(API_REQUESTS_IN_FLIGHT).increment(1.0);
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        gauge!(API_REQUESTS_IN_FLIGHT).decrement(1.0);
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Records `api_request_duration_seconds{method,route,status}` and logs one
/// `Request completed` line per request (DEBUG for `/health` and `/metrics`, which
/// load balancers and Prometheus call every few seconds).
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let _in_flight = InFlight::start();
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    histogram!(
        API_REQUEST_DURATION,
        "method" => method,
        "route" => route.clone(),
        "status" => status.to_string(),
    )
    .record(elapsed.as_secs_f64());
    // Microsecond precision is plenty for a log line.
    let latency_ms = (elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0;
    // Probes and scrapes arrive every few seconds: logged at DEBUG so they do not drown the log.
    if matches!(
        route.as_str(),
        "/health" | "/live" | "/startup" | "/ready" | "/dependencies" | "/metrics"
    ) {
        tracing::debug!(
            status,
            latency_ms,
            "Request completed: {method} {route} {status}"
        );
    } else if status >= 500 {
        tracing::error!(
            status,
            latency_ms,
            "Request completed: {method} {route} {status}"
        );
    } else {
        tracing::info!(
            status,
            latency_ms,
            "Request completed: {method} {route} {status}"
        );
    }
    response
}
