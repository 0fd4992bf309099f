//! The operator console: a static single-page app under `/console`, compiled into the
//! binary. It holds no data of its own: the browser reads and changes everything through
//! the JSON API with the operator's API key (`Authorization: Bearer`, kept in the tab's
//! `sessionStorage`), so the console needs no second backend and no cookies.
//!
//! Every file is its own route, so each has its own rate-limit window, and answers with a
//! strict `Content-Security-Policy` (no inline scripts or styles), `nosniff`, and an `ETag`
//! the browser revalidates (`Cache-Control: no-cache`): a new binary's console is picked up
//! on the next load, an unchanged one costs a 304. In production the console is refused
//! unless API keys are required, since it would otherwise hand anyone a way to send.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::State;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use super::error::ApiError;
use super::etag::{etag_of, not_modified};
use crate::config::{Environment, Settings};

/// Where the console lives; its files are below `/console/`.
pub const CONSOLE_PATH: &str = "/console";

pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'self'";

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// One file of the console: its route, content type and content.
struct Asset {
    route: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($route:literal, $file:literal, $type:expr) => {
        Asset {
            route: $route,
            content_type: $type,
            body: include_bytes!(concat!("../../assets/console/", $file)),
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!("/console", "index.html", HTML),
    asset!("/console/", "index.html", HTML),
    asset!("/console/console.css", "console.css", CSS),
    asset!("/console/app.js", "app.js", JS),
    asset!("/console/api.js", "api.js", JS),
    asset!("/console/dom.js", "dom.js", JS),
    asset!("/console/inbox.js", "inbox.js", JS),
    asset!("/console/messages.js", "messages.js", JS),
    asset!("/console/dead-letters.js", "dead-letters.js", JS),
    asset!("/console/webhooks.js", "webhooks.js", JS),
    asset!("/console/health.js", "health.js", JS),
    asset!("/console/prometheus.js", "prometheus.js", JS),
    asset!("/console/segments.js", "segments.js", JS),
];

/// Each asset's strong ETag, computed once.
static ETAGS: LazyLock<Vec<HeaderValue>> =
    LazyLock::new(|| ASSETS.iter().map(|a| etag_of(a.body)).collect());

/// Whether this deployment may serve the console: in production only when every `/api`
/// call must carry a valid key (the settings refuse production without keys; this guard
/// holds even if that ever changes).
pub fn console_allowed(settings: &Settings) -> bool {
    settings.environment != Environment::Production || settings.security.require_api_keys
}

pub fn router() -> Router<AppState> {
    ASSETS
        .iter()
        .enumerate()
        .fold(Router::new(), |router, (index, asset)| {
            router.route(
                asset.route,
                get(move |state: State<AppState>, headers: HeaderMap| serve(state, headers, index)),
            )
        })
}

async fn serve(State(state): State<AppState>, headers: HeaderMap, index: usize) -> Response {
    if !console_allowed(&state.settings) {
        return ApiError::Forbidden {
            code: "console_disabled",
            message: "the console is served in production only when API keys are required \
                      (REQUIRE_API_KEYS=true)"
                .into(),
        }
        .into_response();
    }
    let Some(asset) = ASSETS.get(index) else {
        return ApiError::NotFound { resource: "route" }.into_response();
    };
    let etag = ETAGS
        .get(index)
        .cloned()
        .unwrap_or(HeaderValue::from_static("\"\""));
    let mut resp = if not_modified(&headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut resp = asset.body.into_response();
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
        resp
    };
    let h = resp.headers_mut();
    h.insert(ETAG, etag);
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
    );
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_an_etag_and_the_pages_load_only_local_files() {
        assert_eq!(ETAGS.len(), ASSETS.len());
        let index = std::str::from_utf8(ASSETS[0].body).unwrap_or_default();
        assert!(index.contains("src=\"/console/app.js\""));
        assert!(!index.contains("http://") && !index.contains("https://"));
        assert!(!index.contains("style=\""), "inline styles break the CSP");
    }
}
