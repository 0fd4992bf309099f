//! The HTTP API: routing, shared state and the middleware stack. Handlers extract their
//! input ([`extract`]), call one use-case of [`crate::service`] and shape the answer; every
//! failure is an [`error::ApiError`].

pub mod auth;
pub mod console;
mod conversations;
mod endpoints;
pub mod error;
pub mod etag;
pub mod extract;
mod health;
mod inbound_auth;
mod legacy;
mod messages;
pub mod openapi;
pub mod ratelimit;
mod retry;
mod schedule;
pub mod security;
pub mod server;
mod status;
mod suppressions;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::from_fn_with_state;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::info_span;

use crate::config::Settings;
use crate::queue::Queue;
use crate::service::Context;
use crate::service::ingest::Ingestor;
use crate::store::Store;
use crate::worker::Deliverer;
use error::ApiError;

/// Largest request body accepted (an email body may be up to 1 MB of HTML).
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// What every handler and middleware shares. One `Arc`: each middleware layer and
/// extractor takes its own copy per request, which is then one reference-count increment.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The process's backends and settings, behind [`AppState`].
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub ingest: Ingestor,
    pub deliverer: Deliverer,
    pub settings: Arc<Settings>,
    pub security: security::SecurityState,
    /// Bounds concurrent webhook work so callbacks cannot starve the send path of
    /// database connections.
    pub webhook_permits: Arc<tokio::sync::Semaphore>,
    /// Set once start-up is done; `GET /startup` answers 503 until then.
    pub startup: health::Startup,
}

impl Shared {
    /// What the use-cases run on.
    pub fn services(&self) -> Context<'_> {
        Context {
            store: self.store.as_ref(),
            queue: self.queue.as_ref(),
            ingest: &self.ingest,
            deliverer: &self.deliverer,
            settings: &self.settings,
            webhook_permits: &self.webhook_permits,
        }
    }
}

pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let timeout = state.settings.request_timeout.max(Duration::from_millis(1));
    let guarded = state.clone();
    Router::new()
        .merge(health::router())
        .merge(console::router())
        .merge(messages::router())
        .merge(conversations::router())
        .merge(legacy::router())
        .merge(retry::router())
        .merge(suppressions::router())
        .merge(schedule::router())
        .merge(status::router())
        .route(
            "/metrics",
            axum::routing::get(crate::observability::metrics_text),
        )
        .merge(webhooks::router())
        .merge(endpoints::router())
        .merge(openapi::router(state.settings.api_docs))
        .fallback(|| async { ApiError::NotFound { resource: "route" } })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
        .layer(axum::middleware::from_fn(etag::conditional_get))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        // Outermost first: rate limit (so every answer carries its headers), Host, API key.
        .layer(from_fn_with_state(guarded.clone(), auth::authenticate))
        .layer(from_fn_with_state(guarded.clone(), security::check_host))
        .layer(from_fn_with_state(guarded, ratelimit::limit))
        // Outside the timeout (a 408 is measured too), inside the request span (its log
        // line carries the request id).
        .layer(axum::middleware::from_fn(crate::observability::http::track))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map(MatchedPath::as_str);
            let request_id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            info_span!(
                "request",
                method = %req.method(),
                route = route.unwrap_or("unmatched"),
                request_id = %request_id,
            )
        }))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}
