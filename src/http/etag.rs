//! Conditional reads: every successful JSON answer to a `GET` carries an `ETag` (a digest of
//! its body) and `Cache-Control: private, no-cache` (kept by the client only, and
//! revalidated before each use), and a request whose `If-None-Match` names the
//! current tag is answered `304 Not Modified` with no body. A client polling a list (the
//! console does, every few seconds) then transfers a page only when it changed; browsers
//! do this on their own for `fetch` once the answer carries the tag.
//!
//! The tag is computed from the rendered answer, so it changes exactly when the answer
//! does, on every store, with no version columns to keep.

use axum::body::{Body, HttpBody as _};
use axum::extract::Request;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// Answers larger than this are passed through untagged rather than held in memory twice.
const MAX_TAGGED_BYTES: u64 = 4 * 1024 * 1024;

/// The strong ETag of a body: the start of its SHA-256, quoted.
pub fn etag_of(body: &[u8]) -> HeaderValue {
    let digest = Sha256::digest(body);
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    HeaderValue::from_str(&format!("\"{hex}\"")).unwrap_or(HeaderValue::from_static("\"\""))
}

/// True when `If-None-Match` names this ETag (or `*`); weak and strong forms compare equal,
/// as RFC 9110 asks of `If-None-Match`.
pub fn not_modified(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag.as_bytes() == etag.as_bytes())
}

/// Middleware: tags `GET` answers that are `200` JSON of a known, bounded size.
pub async fn conditional_get(request: Request, next: Next) -> Response {
    if request.method() != Method::GET {
        return next.run(request).await;
    }
    let conditions = request.headers().clone();
    let response = next.run(request).await;
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let small = response
        .body()
        .size_hint()
        .exact()
        .is_some_and(|n| n <= MAX_TAGGED_BYTES);
    if response.status() != StatusCode::OK || !is_json || !small {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_TAGGED_BYTES as usize).await {
        Ok(b) => b,
        // The body failed while being read: nothing sensible can be sent any more.
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let etag = etag_of(&bytes);
    parts
        .headers
        .insert(CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    if not_modified(&conditions, &etag) {
        let mut resp = StatusCode::NOT_MODIFIED.into_response();
        // A 304 repeats the headers a 200 would have carried, without the body's own.
        for (name, value) in parts.headers.iter() {
            if name != CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
                resp.headers_mut().append(name.clone(), value.clone());
            }
        }
        resp.headers_mut().insert(ETAG, etag);
        return resp;
    }
    parts.headers.insert(ETAG, etag);
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_matches_strong_weak_lists_and_star() {
        let etag = HeaderValue::from_static("\"abc\"");
        let mut h = HeaderMap::new();
        assert!(!not_modified(&h, &etag));
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("\"x\", W/\"abc\""));
        assert!(not_modified(&h, &etag));
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("\"abcd\""));
        assert!(!not_modified(&h, &etag));
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(not_modified(&h, &etag));
    }

    #[test]
    fn the_tag_follows_the_body() {
        assert_eq!(etag_of(b"{}"), etag_of(b"{}"));
        assert_ne!(etag_of(b"{}"), etag_of(b"[]"));
        assert_eq!(etag_of(b"{}").len(), 26);
    }
}
