//! Events to the application: their types, which status change produces which event, the
//! endpoint secrets and the Standard Webhooks signature
//! (<https://www.standardwebhooks.com>): `v1,` + base64 HMAC-SHA256 over
//! `{id}.{timestamp}.{body}`, keyed by the decoded part of a `whsec_` secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use super::MessageStatus;

/// The prefix of every endpoint and callback secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// What an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    MessageSent,
    MessageDelivered,
    MessageFailed,
    MessageReceived,
    /// A scheduled message canceled before it was due.
    MessageCanceled,
    /// Sent only by `POST /webhook-endpoints/{id}/test`, to that endpoint.
    TestPing,
}

impl EventType {
    /// Types an endpoint may subscribe to (`test.ping` always reaches the endpoint tested).
    pub const SUBSCRIBABLE: &'static [EventType] = &[
        Self::MessageSent,
        Self::MessageDelivered,
        Self::MessageFailed,
        Self::MessageReceived,
        Self::MessageCanceled,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MessageSent => "message.sent",
            Self::MessageDelivered => "message.delivered",
            Self::MessageFailed => "message.failed",
            Self::MessageReceived => "message.received",
            Self::MessageCanceled => "message.canceled",
            Self::TestPing => "test.ping",
        }
    }

    /// A type an endpoint may subscribe to, by its name.
    pub fn parse_subscribable(text: &str) -> Option<Self> {
        Self::SUBSCRIBABLE
            .iter()
            .copied()
            .find(|t| t.as_str() == text)
    }

    /// The event a message entering `status` produces, if any. The one table: a new
    /// status that should notify the application (e.g. `canceled`) adds a line here.
    pub const fn for_status(status: MessageStatus) -> Option<Self> {
        match status {
            MessageStatus::Sent => Some(Self::MessageSent),
            MessageStatus::Delivered => Some(Self::MessageDelivered),
            MessageStatus::Failed => Some(Self::MessageFailed),
            MessageStatus::Received => Some(Self::MessageReceived),
            MessageStatus::Canceled => Some(Self::MessageCanceled),
            _ => None,
        }
    }

    /// `{status: type}` for every status that produces an event, as the outbox statements
    /// read it.
    pub fn status_map() -> serde_json::Value {
        let map = MessageStatus::ALL
            .iter()
            .filter_map(|s| {
                Self::for_status(*s).map(|t| (s.as_str().to_owned(), t.as_str().into()))
            })
            .collect::<serde_json::Map<_, _>>();
        serde_json::Value::Object(map)
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A fresh event id (`webhook-id`).
pub fn new_event_id() -> String {
    format!("evt_{}", Uuid::new_v4().simple())
}

/// A fresh endpoint secret: `whsec_` + base64 of 32 bytes from the OS (two v4 UUIDs,
/// 244 random bits).
pub fn new_secret() -> String {
    let mut bytes = Vec::with_capacity(32);
    bytes.extend_from_slice(Uuid::new_v4().as_bytes());
    bytes.extend_from_slice(Uuid::new_v4().as_bytes());
    format!("{SECRET_PREFIX}{}", BASE64.encode(bytes))
}

/// The key bytes of a `whsec_` secret, or why it is not one.
pub fn secret_key(secret: &str) -> Result<Vec<u8>, &'static str> {
    let encoded = secret
        .strip_prefix(SECRET_PREFIX)
        .ok_or("must start with whsec_")?;
    let key = BASE64
        .decode(encoded)
        .map_err(|_| "must be whsec_ followed by base64")?;
    if key.len() < 24 {
        return Err("must carry at least 24 bytes after whsec_");
    }
    Ok(key)
}

/// One `v1,<base64>` signature of `{id}.{timestamp}.{body}`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header: one signature per key, space-separated.
pub fn signature_header(keys: &[Vec<u8>], id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|k| sign(k, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_like_the_standard_webhooks_reference() {
        // The reference libraries' test vector.
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            sign(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn fresh_secrets_decode_to_enough_bytes_and_differ() {
        let a = new_secret();
        assert!(a.starts_with("whsec_"));
        assert_eq!(secret_key(&a).unwrap().len(), 32);
        assert_ne!(a, new_secret());
        assert!(secret_key("whsec_c2hvcnQ=").is_err());
        assert!(secret_key("nope").is_err());
    }

    #[test]
    fn rotation_signs_with_every_key() {
        let (a, b) = (vec![1u8; 24], vec![2u8; 24]);
        let header = signature_header(&[a.clone(), b.clone()], "evt_1", 5, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(
            parts,
            [sign(&a, "evt_1", 5, b"{}"), sign(&b, "evt_1", 5, b"{}")]
        );
    }

    #[test]
    fn statuses_that_notify() {
        assert_eq!(
            EventType::for_status(MessageStatus::Delivered),
            Some(EventType::MessageDelivered)
        );
        assert_eq!(EventType::for_status(MessageStatus::Sending), None);
        assert_eq!(EventType::status_map()["received"], "message.received");
        assert_eq!(
            EventType::parse_subscribable("message.failed"),
            Some(EventType::MessageFailed)
        );
        assert_eq!(EventType::parse_subscribable("test.ping"), None);
    }
}
