//! Extractors with our own rejections, so that every client mistake gets the standard
//! error body and the right status (400 malformed, 415 wrong type, 413 too big, 422 wrong
//! shape): a JSON body ([`ApiJson`]), a query string ([`ApiQuery`]), `limit`/`offset`
//! ([`Pagination`]) and a UUID path segment ([`IdPath`]). Error texts never name our Rust
//! types: serde's wording is translated into what JSON was expected.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::error::ApiError;
use crate::domain::ValidationError;
use crate::service::listing::PageRequest;
use crate::store::Page;

/// A JSON body. Unknown fields are ignored, so clients may send extra data.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json"
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let ApiBytes(bytes) = ApiBytes::from_request(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// A raw body of any type; too large is a 413 with the standard error body.
pub struct ApiBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state)
            .await
            .map(ApiBytes)
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::MalformedJson(rejection.body_text())
                }
            })
    }
}

/// Deepest nesting of arrays and objects accepted in a request body.
pub const MAX_JSON_DEPTH: usize = 32;

/// The nesting depth of a JSON text (brackets outside strings), stopping once past `limit`.
fn json_depth_exceeds(bytes: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Syntax errors are the client's malformed JSON (400); well-formed JSON of the wrong shape
/// is a validation error naming the field (422). Nesting beyond `MAX_JSON_DEPTH` is refused
/// before parsing (400).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if json_depth_exceeds(bytes, MAX_JSON_DEPTH) {
        return Err(ApiError::MalformedJson(format!(
            "nested deeper than {MAX_JSON_DEPTH} levels"
        )));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(v) => {
            de.end()
                .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
            Ok(v)
        }
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            match inner.classify() {
                serde_json::error::Category::Data => {
                    // Report the field, not the array element (`attachments`, not `attachments[3]`).
                    let field = path
                        .split('[')
                        .next()
                        .unwrap_or_default()
                        .chars()
                        .take(64)
                        .collect::<String>();
                    let root = field.is_empty() || field == ".";
                    let starts_object = bytes
                        .iter()
                        .find(|b| !b.is_ascii_whitespace())
                        .is_some_and(|b| *b == b'{');
                    let (field, reason) = if root && !starts_object {
                        ("body".to_owned(), "must be a JSON object".to_owned())
                    } else if root {
                        ("body".to_owned(), public_reason(&inner.to_string()))
                    } else {
                        (field, public_reason(&inner.to_string()))
                    };
                    Err(ApiError::Validation(ValidationError::new(field, reason)))
                }
                _ => Err(ApiError::MalformedJson(inner.to_string())),
            }
        }
    }
}

fn strip_position(text: &str) -> &str {
    match text.find(" at line ") {
        Some(i) => &text[..i],
        None => text,
    }
}

/// serde's text for a value of the wrong shape, with the Rust type it expected
/// (`expected struct SendRequest`, `expected i64`) replaced by the JSON it takes.
fn public_reason(text: &str) -> String {
    const MARK: &str = "expected ";
    let text = strip_position(text);
    let Some(at) = text.find(MARK) else {
        return text.to_owned();
    };
    let (head, wanted) = text.split_at(at + MARK.len());
    let first = wanted.split_whitespace().next().unwrap_or_default();
    let json = match first {
        _ if wanted.starts_with("one of ") => wanted,
        "struct" | "map" => "a JSON object",
        "a" if wanted.starts_with("a map") => "a JSON object",
        "a" if wanted.starts_with("a sequence") => "a JSON array",
        "tuple" | "sequence" => "a JSON array",
        "a" if wanted.starts_with("a boolean") => "true or false",
        "a" if wanted.contains("string") || wanted.starts_with("a character") => "a string",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "u8" | "u16" | "u32" | "u64" | "u128"
        | "usize" => "an integer",
        "f32" | "f64" => "a number",
        "enum" | "variant" => "one of the allowed values",
        "unit" => "null",
        _ if wanted.chars().any(|c| c.is_ascii_uppercase()) => "a value of another type",
        _ => wanted,
    };
    format!("{head}{json}")
}

/// A query string. A value of the wrong shape is a 422 naming `query`.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::invalid("query", public_reason(&e.body_text())))
    }
}

/// Most items one page may hold, and how many a page holds unless `limit` says.
pub const MAX_PAGE: i64 = 100;
pub const DEFAULT_PAGE: i64 = 50;

/// `limit` (1..=100, default 50) and `offset` (>= 0, default 0) from the query string.
pub struct Pagination(pub Page);

#[derive(Deserialize)]
struct PageQuery {
    limit: Option<String>,
    offset: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Pagination {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let ApiQuery(q) = ApiQuery::<PageQuery>::from_request_parts(parts, state).await?;
        page(q.limit.as_deref(), q.offset.as_deref()).map(Pagination)
    }
}

/// `limit`, `offset` and `cursor` of a list that also pages by cursor.
pub struct CursorPagination(pub PageRequest);

#[derive(Deserialize)]
struct CursorPageQuery {
    limit: Option<String>,
    offset: Option<String>,
    cursor: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for CursorPagination {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let ApiQuery(q) = ApiQuery::<CursorPageQuery>::from_request_parts(parts, state).await?;
        let page = page(q.limit.as_deref(), q.offset.as_deref())?;
        Ok(CursorPagination(PageRequest {
            page,
            cursor: q.cursor,
        }))
    }
}

/// Parses `limit` (1..=100, default 50) and `offset` (>= 0, default 0).
pub fn page(limit: Option<&str>, offset: Option<&str>) -> Result<Page, ApiError> {
    let limit = match limit {
        None => DEFAULT_PAGE,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=MAX_PAGE).contains(l))
            .ok_or_else(|| ApiError::invalid("limit", "must be an integer from 1 to 100"))?,
    };
    let offset = match offset {
        None => 0,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|o| *o >= 0)
            .ok_or_else(|| ApiError::invalid("offset", "must be a non-negative integer"))?,
    };
    Ok(Page { limit, offset })
}

/// A UUID path segment; anything else is a 422 naming `id`.
pub struct IdPath(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::invalid("id", "is missing"))?;
        Uuid::parse_str(&raw)
            .map(IdPath)
            .map_err(|_| ApiError::invalid("id", "must be a UUID"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_brackets_outside_strings_only() {
        let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
        assert!(json_depth_exceeds(deep.as_bytes(), MAX_JSON_DEPTH));
        let ok = format!("{}{}", "[".repeat(32), "]".repeat(32));
        assert!(!json_depth_exceeds(ok.as_bytes(), MAX_JSON_DEPTH));
        let in_string = format!("{{\"k\": \"{}\\\"\"}}", "[".repeat(100));
        assert!(!json_depth_exceeds(in_string.as_bytes(), MAX_JSON_DEPTH));
        assert!(matches!(
            parse_json::<serde_json::Value>(deep.as_bytes()),
            Err(ApiError::MalformedJson(_))
        ));
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Shape {
        name: Option<String>,
        count: Option<i64>,
        tags: Option<Vec<String>>,
    }

    fn reason_of(body: &str) -> (String, String) {
        match parse_json::<Shape>(body.as_bytes()) {
            Err(ApiError::Validation(v)) => (v.field.into_owned(), v.reason),
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn wrong_shapes_never_name_rust_types() {
        for body in ["[]", "[1, 2]", "\"text\"", "7", "null", "true"] {
            assert_eq!(
                reason_of(body),
                ("body".to_owned(), "must be a JSON object".to_owned()),
                "{body}"
            );
        }
        let (field, reason) = reason_of(r#"{"count": "x"}"#);
        assert_eq!(field, "count");
        assert_eq!(reason, r#"invalid type: string "x", expected an integer"#);
        let (field, reason) = reason_of(r#"{"tags": "x"}"#);
        assert_eq!(field, "tags");
        assert!(reason.ends_with("expected a JSON array"), "{reason}");
        for body in [r#"{"name": 5}"#, r#"{"tags": [1]}"#] {
            let (_, reason) = reason_of(body);
            assert!(
                !reason.contains("Shape") && !reason.contains("i64"),
                "{reason}"
            );
        }
    }
}
