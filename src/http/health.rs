//! Liveness (`/health`) and readiness (`/ready`, which checks every dependency).

use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::AppState;
use super::error::ApiError;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
}

fn now() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "healthy", "timestamp": now() }))
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
        tracing::warn!(dependency = name, error = %e, "readiness check failed");
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

async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let queue = state.queue.clone();
    let ((db_up, db), (queue_up, q)) = tokio::join!(
        check("database", store.backend(), async {
            store.ping().await.map_err(anyhow::Error::from)
        }),
        check(queue.backend(), queue.backend(), queue.ping()),
    );
    let checks = json!({ "database": db, "queue": q });
    if !db_up {
        return Err(ApiError::Unavailable {
            dependency: "database",
            details: json!({ "checks": checks }),
        });
    }
    if !queue_up {
        let dependency = if state.queue.backend() == "redis" {
            "redis"
        } else {
            "queue"
        };
        return Err(ApiError::Unavailable {
            dependency,
            details: json!({ "checks": checks }),
        });
    }
    Ok(Json(
        json!({ "status": "ready", "timestamp": now(), "checks": checks }),
    ))
}
