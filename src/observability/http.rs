//! Per-request metrics and the access log line. Runs inside the request span (so the
//! line carries `request_id`) and after routing (so the route is the template, e.g.
//! `/api/v1/messages/{id}`, never the raw path: label values stay bounded).

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Gauge, Histogram, gauge, histogram};

use super::{API_REQUEST_DURATION, API_REQUESTS_IN_FLIGHT};

/// The in-flight gauge, looked up once (after the recorder is installed).
fn in_flight() -> &'static Gauge {
    static GAUGE: OnceLock<Gauge> = OnceLock::new();
    GAUGE.get_or_init(|| {
        super::handle();
        gauge!(API_REQUESTS_IN_FLIGHT)
    })
}

/// Decrements the in-flight gauge however the request ends (including cancellation).
struct InFlight;

impl InFlight {
    fn start() -> Self {
        in_flight().increment(1.0);
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        in_flight().decrement(1.0);
    }
}

/// `api_request_duration_seconds` handles by route, then method and status, so a request
/// records without building the labels and looking them up in the registry each time. The
/// label values are bounded (route templates, methods, status codes), so is this map.
type DurationHandles = HashMap<String, Vec<(&'static str, u16, Histogram)>>;

fn request_duration(method: &'static str, route: &str, status: u16) -> Histogram {
    static HANDLES: OnceLock<RwLock<DurationHandles>> = OnceLock::new();
    let handles = HANDLES.get_or_init(|| {
        super::handle();
        RwLock::default()
    });
    let find = |map: &DurationHandles| {
        map.get(route).and_then(|entries| {
            entries
                .iter()
                .find(|(m, s, _)| *m == method && *s == status)
                .map(|(_, _, h)| h.clone())
        })
    };
    if let Some(found) = find(&handles.read().unwrap_or_else(|p| p.into_inner())) {
        return found;
    }
    let mut map = handles.write().unwrap_or_else(|p| p.into_inner());
    if let Some(found) = find(&map) {
        return found;
    }
    let handle = histogram!(
        API_REQUEST_DURATION,
        "method" => method,
        "route" => route.to_owned(),
        "status" => status.to_string(),
    );
    map.entry(route.to_owned())
        .or_default()
        .push((method, status, handle.clone()));
    handle
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
    // A clone of the matched path shares its text (no copy per request).
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let _in_flight = InFlight::start();
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    request_duration(method, route, status).record(elapsed.as_secs_f64());
    // Microsecond precision is plenty for a log line.
    let latency_ms = (elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0;
    // Probes and scrapes arrive every few seconds: logged at DEBUG so they do not drown the log.
    if matches!(
        route,
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
