//! Rate limiting per client and endpoint, as the operations guide specifies: every response
//! carries `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`; a refused
//! request gets 429, `Retry-After` and the guide's body. The client is the API key when one
//! is presented (by its hash), else the client IP, taken from `X-Forwarded-For` only when
//! the peer is a trusted proxy. If the limiter's backend fails, requests are let through.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::bearer;
use super::error::ApiError;
use crate::config::canonical_ip as canonical;
use crate::config::{IpNet, RateLimitSettings};
use crate::domain::hash_key;
use crate::ratelimit::Decision;

const LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// A failing limiter is reported at most once per this interval (each failure is counted).
const FAIL_OPEN_LOG_INTERVAL: Duration = Duration::from_secs(30);
static LAST_FAIL_OPEN_LOG_MS: AtomicU64 = AtomicU64::new(0);

/// Whole seconds, rounded up: a client that waits this long is sure to be let in.
fn ceil_secs(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000) as u64
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the nearest
/// untrusted address in `X-Forwarded-For` (walking from the right, since only the entries
/// our proxies appended are trustworthy).
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = canonical(peer?);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>().map(canonical) else {
            break;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    Some(client)
}

/// The window's key: who is asking, and which endpoint (method and route template).
fn window_key(req: &Request, state: &AppState) -> String {
    let client = match bearer(req.headers()) {
        // The hash, not the key: Redis keys are visible to anyone with Redis access.
        Some(token) => format!("key:{}", &hash_key(token)[..32]),
        None => {
            let peer = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip());
            match client_ip(
                peer,
                req.headers(),
                &state.settings.security.trusted_proxies,
            ) {
                Some(ip) => format!("ip:{ip}"),
                None => "ip:unknown".to_owned(),
            }
        }
    };
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    format!("{client}:{} {route}", req.method())
}

fn set_headers(headers: &mut HeaderMap, limit: u32, remaining: u32, reset: Duration) {
    headers.insert(LIMIT, HeaderValue::from(limit));
    headers.insert(REMAINING, HeaderValue::from(remaining));
    headers.insert(RESET, HeaderValue::from(ceil_secs(reset)));
}

fn refused(decision: &Decision, route: &str) -> Response {
    metrics::counter!("rate_limit_hits_total", "endpoint" => route.to_owned()).increment(1);
    let mut resp = ApiError::RateLimited.into_response();
    let headers = resp.headers_mut();
    set_headers(headers, decision.limit, 0, decision.reset);
    headers.insert(
        axum::http::header::RETRY_AFTER,
        HeaderValue::from(ceil_secs(decision.retry_after).max(1)),
    );
    resp
}

fn log_fail_open(error: &anyhow::Error) {
    metrics::counter!("rate_limit_fail_open_total").increment(1);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let last = LAST_FAIL_OPEN_LOG_MS.load(Ordering::Relaxed);
    if now.saturating_sub(last) >= FAIL_OPEN_LOG_INTERVAL.as_millis() as u64
        && LAST_FAIL_OPEN_LOG_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            error = %format!("{error:#}"),
            "rate limiter unavailable: requests are let through uncounted (reported at most every {}s; see rate_limit_fail_open_total)",
            FAIL_OPEN_LOG_INTERVAL.as_secs()
        );
    }
}

pub async fn limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let RateLimitSettings {
        enabled,
        requests,
        period,
    } = state.settings.security.rate_limit;
    // Signed provider callbacks arrive in bursts from a few provider addresses; refusing
    // them would only make the provider retry. Their cost is bounded in the handlers.
    // Liveness and start-up probes are never limited (see `health::UNLIMITED_PROBES`).
    let path = req.uri().path();
    if !enabled || path.starts_with("/api/v1/webhooks/") || super::health::is_unlimited_probe(path)
    {
        return next.run(req).await;
    }
    let key = window_key(&req, &state);
    let decision = match state.security.limiter.check(&key, requests, period).await {
        Ok(d) => d,
        Err(e) => {
            log_fail_open(&e);
            let mut resp = next.run(req).await;
            set_headers(resp.headers_mut(), requests, requests, period);
            return resp;
        }
    };
    if !decision.allowed {
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", MatchedPath::as_str);
        return refused(&decision, route);
    }
    let mut resp = next.run(req).await;
    set_headers(
        resp.headers_mut(),
        decision.limit,
        decision.remaining,
        decision.reset,
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        let trusted = [IpNet::parse("10.0.0.0/8").unwrap()];
        let h = xff("198.51.100.7, 10.0.0.5");
        assert_eq!(
            client_ip(Some(proxy), &h, &trusted),
            Some("198.51.100.7".parse().unwrap())
        );
        assert_eq!(client_ip(Some(stranger), &h, &trusted), Some(stranger));
        assert_eq!(client_ip(Some(proxy), &h, &[]), Some(proxy));
        // A client cannot hide behind a spoofed left-most entry.
        let spoofed = xff("1.2.3.4, 198.51.100.7");
        assert_eq!(
            client_ip(Some(proxy), &spoofed, &trusted),
            Some("198.51.100.7".parse().unwrap())
        );
        assert_eq!(
            client_ip(Some(proxy), &xff("garbage"), &trusted),
            Some(proxy)
        );
    }

    #[test]
    fn seconds_are_rounded_up() {
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(60)), 60);
        assert_eq!(ceil_secs(Duration::ZERO), 0);
    }
}
