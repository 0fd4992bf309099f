//! List cursors: an opaque token naming the last row a client saw (its sort key and id)
//! and the listing it came from (the list and its filter), so that the next page starts
//! right after that row whatever was inserted meanwhile.
//!
//! The token is URL-safe base64 (no padding) of `1.<scope>.<key>.<id>`: `scope` the first
//! 16 hex digits of the SHA-256 of the listing's description, `key` the sort key as Unix
//! nanoseconds (`-` for none), `id` the row's UUID.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use super::ValidationError;

/// The last row of a page, as a cursor names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CursorPosition {
    pub key: Option<OffsetDateTime>,
    pub id: Uuid,
}

const VERSION: &str = "1";
/// Longer input is not a cursor this service wrote.
const MAX_CURSOR_CHARS: usize = 200;

/// The cursor for the page after `last` of the listing described by `scope`.
pub fn encode_cursor(scope: &str, last: CursorPosition) -> String {
    let key = last.key.map_or_else(
        || "-".to_owned(),
        |at| at.unix_timestamp_nanos().to_string(),
    );
    let text = format!(
        "{VERSION}.{}.{key}.{}",
        fingerprint(scope),
        last.id.simple()
    );
    URL_SAFE_NO_PAD.encode(text)
}

/// The position a cursor names, if it is one this service wrote for the listing `scope`.
pub fn decode_cursor(scope: &str, raw: &str) -> Result<CursorPosition, ValidationError> {
    let garbled = || ValidationError::new("cursor", "is not a cursor this list returned");
    if raw.len() > MAX_CURSOR_CHARS {
        return Err(garbled());
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(raw.trim_end_matches('='))
        .map_err(|_| garbled())?;
    let text = String::from_utf8(bytes).map_err(|_| garbled())?;
    let mut parts = text.split('.');
    let (Some(VERSION), Some(scope_part), Some(key), Some(id), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(garbled());
    };
    if scope_part != fingerprint(scope) {
        return Err(ValidationError::new(
            "cursor",
            "belongs to another list, filter or order: start again without it",
        ));
    }
    let key = match key {
        "-" => None,
        nanos => Some(
            nanos
                .parse::<i128>()
                .ok()
                .and_then(|n| OffsetDateTime::from_unix_timestamp_nanos(n).ok())
                .filter(|at| (1970..=9999).contains(&at.year()))
                .ok_or_else(garbled)?,
        ),
    };
    let id = Uuid::try_parse(id).map_err(|_| garbled())?;
    Ok(CursorPosition { key, id })
}

fn fingerprint(scope: &str) -> String {
    let digest = Sha256::digest(scope.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(nanos: i128) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap()
    }

    #[test]
    fn a_cursor_round_trips_within_its_listing() {
        for key in [Some(at(1_764_000_000_123_456_000)), None] {
            let last = CursorPosition {
                key,
                id: Uuid::now_v7(),
            };
            let cursor = encode_cursor("messages status=failed", last);
            assert!(
                cursor
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "{cursor} is URL-safe"
            );
            assert_eq!(decode_cursor("messages status=failed", &cursor), Ok(last));
        }
    }

    #[test]
    fn a_cursor_of_another_listing_is_refused_naming_the_field() {
        let last = CursorPosition {
            key: Some(at(0)),
            id: Uuid::now_v7(),
        };
        let cursor = encode_cursor("messages status=failed", last);
        let err = decode_cursor("messages status=sent", &cursor).unwrap_err();
        assert_eq!(err.field, "cursor");
        assert!(err.reason.contains("another list"), "{}", err.reason);
    }

    #[test]
    fn garbled_cursors_are_refused_naming_the_field() {
        let scope = "conversations";
        let valid = encode_cursor(
            scope,
            CursorPosition {
                key: None,
                id: Uuid::nil(),
            },
        );
        let fp = fingerprint(scope);
        let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
        for raw in [
            String::new(),
            "not base64!".into(),
            b64("hello"),
            b64(&format!("2.{fp}.-.{}", Uuid::nil().simple())),
            b64(&format!("1.{fp}.soon.{}", Uuid::nil().simple())),
            b64(&format!("1.{fp}.-.not-a-uuid")),
            b64(&format!(
                "1.{fp}.99999999999999999999999999.{}",
                Uuid::nil()
            )),
            b64(&format!("1.{fp}.-.{}.extra", Uuid::nil())),
            format!("{valid}{}", "A".repeat(300)),
        ] {
            let err = decode_cursor(scope, &raw).unwrap_err();
            assert_eq!(err.field, "cursor", "{raw}");
        }
    }
}
