//! What the security middleware shares: the rate limiter and the API-key cache. Also the
//! `ALLOWED_HOSTS` check.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::HOST;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::KeyCache;
use super::error::ApiError;
use crate::config::{Environment, Settings};
use crate::queue::Queue;
use crate::ratelimit::RateLimiter;
use crate::ratelimit::memory::MemoryRateLimiter;
use crate::ratelimit::redis::RedisRateLimiter;

#[derive(Clone)]
pub struct SecurityState {
    pub limiter: Arc<dyn RateLimiter>,
    pub keys: Arc<KeyCache>,
}

impl SecurityState {
    /// The limiter follows the queue: shared in Redis when the queue is Redis (its keys
    /// under `QUEUE_KEY_PREFIX`), in-process otherwise.
    pub fn for_deployment(settings: &Settings, queue: &dyn Queue) -> anyhow::Result<Self> {
        let limiter: Arc<dyn RateLimiter> = if queue.backend() == "redis" {
            Arc::new(RedisRateLimiter::new(
                &settings.redis_url,
                &settings.queue.key_prefix,
            )?)
        } else {
            Arc::new(MemoryRateLimiter::new())
        };
        Ok(Self {
            limiter,
            keys: Arc::new(KeyCache::new(settings.security.api_key_cache_ttl)),
        })
    }
}

/// Operational endpoints answer whatever the Host: probes and scrapers use IPs.
pub fn is_operational(path: &str) -> bool {
    path == "/metrics" || super::health::PROBES.contains(&path)
}

/// The Host header's name: lower-case, without port or trailing dot.
fn host_name(raw: &str) -> String {
    let raw = raw.trim();
    let name = if let Some(rest) = raw.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        raw.rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(raw, |(host, _)| host)
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// In production, a request whose Host is not in `ALLOWED_HOSTS` gets 400.
pub async fn check_host(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let settings = &state.settings;
    if settings.environment != Environment::Production
        || settings.security.allowed_hosts.is_empty()
        || is_operational(req.uri().path())
    {
        return next.run(req).await;
    }
    let host = req
        .headers()
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .map(host_name);
    let allowed = host.is_some_and(|h| {
        settings
            .security
            .allowed_hosts
            .iter()
            .any(|p| p.matches(&h))
    });
    if allowed {
        next.run(req).await
    } else {
        ApiError::HostNotAllowed.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::host_name;

    #[test]
    fn host_names_lose_port_case_and_trailing_dot() {
        assert_eq!(host_name("API.Example.com:8080"), "api.example.com");
        assert_eq!(host_name("api.example.com."), "api.example.com");
        assert_eq!(host_name("[::1]:8080"), "::1");
        assert_eq!(host_name("localhost"), "localhost");
    }
}
