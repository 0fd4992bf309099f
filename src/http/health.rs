//! Health endpoints, all public and answering any `Host`:
//!
//! - `/health`: the process answers (the operations guide's check; rate limited like any
//!   endpoint, which the guide's 110-request loop relies on).
//! - `/live`: liveness for orchestrators and our own scripts; no dependency is asked and no
//!   rate limit applies, so polling it never uses up a client's window.
//! - `/startup`: 503 until start-up is done (migrations applied, the queue refilled in the
//!   single process, the server serving), then 200; not rate limited either.
//! - `/ready`: 200 when this instance can accept messages (the database answers), else 503;
//!   Redis trouble is reported in the body (`"redis": "degraded"`) and in
//!   `dependency_up{dependency}`, not as 503 (sends wait in the database for the sweeper).
//! - `/dependencies`: each dependency's state and latency, always 200 (for people and
//!   dashboards; `/ready` is the one to gate traffic on).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::AppState;
use super::error::ApiError;
use crate::observability::DEPENDENCY_UP;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Probes that are never rate limited: an orchestrator restarts a process whose liveness
/// probe fails, so a 429 there would do harm, and they ask no dependency, so they cost
/// nothing to answer.
pub const UNLIMITED_PROBES: [&str; 2] = ["/live", "/startup"];

/// Every health endpoint: public and answering whatever the `Host` (probes use addresses).
pub const PROBES: [&str; 5] = ["/health", "/live", "/startup", "/ready", "/dependencies"];

pub fn is_unlimited_probe(path: &str) -> bool {
    UNLIMITED_PROBES.contains(&path)
}

/// Whether start-up is done. Shared by every clone of the application state; set once the
/// server starts serving, which is after the migrations (and, in the single process, after
/// the in-process queue was refilled from the database).
#[derive(Debug, Clone, Default)]
pub struct Startup(Arc<AtomicBool>);

impl Startup {
    pub fn finish(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_done(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/live", get(live))
        .route("/startup", get(startup))
        .route("/ready", get(ready))
        .route("/dependencies", get(dependencies))
}

fn now() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    summary = "The process answers (rate limited like any endpoint)",
    responses((status = 200, body = HealthStatus)),
)]
async fn health() -> Json<Value> {
    Json(json!({ "status": "healthy", "timestamp": now() }))
}

#[utoipa::path(
    get,
    path = "/live",
    tag = "operations",
    summary = "Liveness: the process is alive (never rate limited, asks no dependency)",
    responses((status = 200, body = HealthStatus)),
)]
async fn live() -> Json<Value> {
    Json(json!({ "status": "alive", "timestamp": now() }))
}

#[utoipa::path(
    get,
    path = "/startup",
    tag = "operations",
    summary = "Start-up probe: 503 until migrations are applied and start-up is done",
    responses(
        (status = 200, body = HealthStatus),
        (status = 503, description = "Still starting", body = HealthStatus),
    ),
)]
async fn startup(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if state.startup.is_done() {
        (
            StatusCode::OK,
            Json(json!({ "status": "started", "timestamp": now() })),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "starting", "timestamp": now() })),
        )
    }
}

async fn check<F>(name: &str, backend: &str, probe: F) -> (bool, Value)
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    let started = std::time::Instant::now();
    let (up, error) = match tokio::time::timeout(CHECK_TIMEOUT, probe).await {
        Ok(Ok(())) => (true, None),
        Ok(Err(e)) => (false, Some(format!("{e:#}"))),
        Err(_) => (false, Some(format!("no answer within {CHECK_TIMEOUT:?}"))),
    };
    if let Some(e) = &error {
        tracing::warn!(dependency = name, error = %e, "dependency check failed");
    }
    let mut v = json!({
        "status": if up { "up" } else { "down" },
        "backend": backend,
        "latency_ms": started.elapsed().as_millis() as u64,
    });
    if !up {
        // Say what is wrong without leaking connection strings.
        v["error"] = Value::from("unreachable");
    }
    (up, v)
}

/// Every dependency checked at once: (database up, queue up, `{"database", "queue"}`).
async fn check_all(state: &AppState) -> (bool, bool, Value) {
    let store = state.store.clone();
    let queue = state.queue.clone();
    let ((db_up, db), (queue_up, q)) = tokio::join!(
        check("database", store.backend(), async {
            store.ping().await.map_err(anyhow::Error::from)
        }),
        check(queue.backend(), queue.backend(), queue.ping()),
    );
    (db_up, queue_up, json!({ "database": db, "queue": q }))
}

/// Ready when this instance can accept messages: the database answers. A Redis that does
/// not answer is reported (`"redis": "degraded"` and `dependency_up{dependency="redis"} 0`),
/// not refused: sends are committed to the database first and the sweeper queues them once
/// Redis is back, so a load balancer must keep sending traffic here.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "operations",
    summary = "Readiness: this instance can accept messages (the database answers)",
    responses(
        (status = 200, body = Readiness),
        (status = 503, description = "The database is down; `details.dependency` names it and `details.checks` has every check (Redis trouble is reported as `degraded` with a 200)", body = super::openapi::ErrorBody),
    ),
)]
async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let (db_up, queue_up, checks) = check_all(&state).await;
    let redis = state.queue.backend() == "redis";
    metrics::gauge!(DEPENDENCY_UP, "dependency" => "database").set(f64::from(u8::from(db_up)));
    metrics::gauge!(DEPENDENCY_UP, "dependency" => if redis { "redis" } else { "queue" })
        .set(f64::from(u8::from(queue_up)));
    if !db_up {
        return Err(ApiError::Unavailable {
            dependency: "database",
            details: json!({ "checks": checks }),
        });
    }
    if !queue_up && !redis {
        // The in-process queue lives in this process: if it does not answer, nothing is
        // accepted.
        return Err(ApiError::Unavailable {
            dependency: "queue",
            details: json!({ "checks": checks }),
        });
    }
    let mut body = json!({ "status": "ready", "timestamp": now(), "checks": checks });
    if redis {
        body["redis"] = Value::from(if queue_up { "up" } else { "degraded" });
    }
    Ok(Json(body))
}

/// Always 200: the body says what is up and what is down (`status` is `ok` or `degraded`).
#[utoipa::path(
    get,
    path = "/dependencies",
    tag = "operations",
    summary = "Each dependency's state and latency (always 200)",
    responses((status = 200, body = Readiness)),
)]
async fn dependencies(State(state): State<AppState>) -> Json<Value> {
    let (db_up, queue_up, checks) = check_all(&state).await;
    let status = if db_up && queue_up { "ok" } else { "degraded" };
    Json(json!({ "status": status, "timestamp": now(), "checks": checks }))
}

/// The body of `/health`, `/live` and `/startup` (schema of their JSON).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct HealthStatus {
    /// `healthy`, `alive`, `started` or `starting`.
    status: String,
    #[schema(format = DateTime)]
    timestamp: String,
}

/// The body of `/ready` and `/dependencies`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct Readiness {
    /// `ready` (`/ready`); `ok` or `degraded` (`/dependencies`).
    status: String,
    #[schema(format = DateTime)]
    timestamp: String,
    checks: Checks,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct Checks {
    database: DependencyCheck,
    queue: DependencyCheck,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct DependencyCheck {
    /// `up` or `down`.
    #[schema(pattern = "^(up|down)$")]
    status: String,
    /// `postgres`, `sqlite`, `redis` or `in-process`.
    backend: String,
    #[schema(minimum = 0)]
    latency_ms: u64,
    /// Present when down (`unreachable`; connection details are never shown).
    #[schema(nullable = false)]
    error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_dependency_free_probes_escape_the_rate_limit() {
        assert!(is_unlimited_probe("/live"));
        assert!(is_unlimited_probe("/startup"));
        // The guide's rate-limit check runs against /health.
        assert!(!is_unlimited_probe("/health"));
        assert!(!is_unlimited_probe("/ready"));
        assert!(!is_unlimited_probe("/dependencies"));
        assert!(!is_unlimited_probe("/live/"));
    }

    #[test]
    fn startup_is_shared_by_clones_and_set_once() {
        let startup = Startup::default();
        let seen_by_router = startup.clone();
        assert!(!seen_by_router.is_done());
        startup.finish();
        assert!(seen_by_router.is_done());
    }
}
