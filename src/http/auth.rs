//! API keys on requests: `Authorization: Bearer KEY`. Required on every `/api` route when
//! `REQUIRE_API_KEYS` (always in production); provider webhooks, which carry their own
//! signatures, and the operational endpoints are exempt. A key that is presented is always
//! checked: unknown → 401, revoked → 403.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use crate::domain::{ApiKey, MAX_KEY_LEN, hash_key};

/// Known keys are remembered this long per API instance, so the send path does not pay a
/// database round trip per request; a revocation takes effect within this time.
pub struct KeyCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (ApiKey, Instant)>>,
}

/// Cached entries at most; beyond that the cache starts over (keys are few in practice).
const MAX_CACHED_KEYS: usize = 10_000;

impl KeyCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, hash: &str) -> Option<ApiKey> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(hash)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(key, _)| key.clone())
    }

    fn put(&self, hash: String, key: ApiKey) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_CACHED_KEYS {
            entries.clear();
        }
        entries.insert(hash, (key, Instant::now()));
    }
}

/// The authenticated caller, for handlers that want to know.
#[derive(Debug, Clone)]
pub struct ApiClient {
    pub key_id: Uuid,
    pub key_name: String,
}

/// The bearer token, if the request carries one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// `/api` routes need a key; provider webhooks do not (they are signed).
pub fn needs_key(path: &str) -> bool {
    let api = path == "/api" || path.starts_with("/api/");
    let webhook = path.starts_with("/api/webhooks/") || path.starts_with("/api/v1/webhooks/");
    api && !webhook
}

fn unauthorized(err: ApiError) -> Response {
    let mut resp = err.into_response();
    resp.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    // In production the original's unsigned inbound routes need a key or WEBHOOK_SECRET.
    let inbound = super::inbound_auth::guarded(&state.settings, req.uri().path());
    if inbound && super::inbound_auth::has_webhook_secret(&state.settings, req.headers()) {
        return next.run(req).await;
    }
    if !needs_key(req.uri().path()) && !inbound {
        return next.run(req).await;
    }
    let Some(token) = bearer(req.headers()) else {
        return if state.settings.security.require_api_keys || inbound {
            unauthorized(ApiError::MissingApiKey)
        } else {
            next.run(req).await
        };
    };
    if token.len() > MAX_KEY_LEN {
        return unauthorized(ApiError::InvalidApiKey);
    }
    let hash = hash_key(token);
    let key = match state.security.keys.get(&hash) {
        Some(key) => key,
        None => match state.store.find_api_key(&hash).await {
            Ok(Some(key)) => {
                state.security.keys.put(hash, key.clone());
                key
            }
            Ok(None) => return unauthorized(ApiError::InvalidApiKey),
            Err(e) => return ApiError::from(e).into_response(),
        },
    };
    if key.is_revoked() {
        return ApiError::RevokedApiKey.into_response();
    }
    req.extensions_mut().insert(ApiClient {
        key_id: key.id,
        key_name: key.name,
    });
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_api_routes_other_than_webhooks_need_a_key() {
        assert!(needs_key("/api/v1/messages/send"));
        assert!(needs_key("/api/messages/sms"));
        assert!(needs_key("/api/conversations"));
        assert!(!needs_key("/api/v1/webhooks/twilio"));
        assert!(!needs_key("/api/webhooks/sms"));
        assert!(!needs_key("/health"));
        assert!(!needs_key("/metrics"));
        assert!(!needs_key("/apix"));
    }

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("bearer  msk_abc "));
        assert_eq!(bearer(&h), Some("msk_abc"));
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcjpwdw=="),
        );
        assert_eq!(bearer(&h), None);
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
    }
}
