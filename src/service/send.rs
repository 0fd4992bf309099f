//! Sending a message: validate it, check its idempotency key against the fingerprint of
//! what was asked, store and queue it through the batch writers, and in synchronous mode
//! deliver it before answering. Used by `POST /api/v1/messages/send` and the original
//! API's `POST /api/messages/{sms,email}`.

use serde_json::json;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::{Context, ServiceError, compliance, deliver_now, ingest};
use crate::domain::schedule::parse_send_at;
use crate::domain::{Message, MessageStatus, NewMessage, OutboundContent};
use crate::store::Inserted;

pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// What a client asked to send.
#[derive(Debug, Default)]
pub struct SendRequest {
    pub content: OutboundContent,
    /// The raw `Idempotency-Key` header, which wins over the body's `idempotency_key`.
    pub key_header: Option<Vec<u8>>,
    pub key_field: Option<String>,
    /// When the client says the message was written (the original API).
    pub provider_timestamp: Option<OffsetDateTime>,
    /// `send_at`: schedule the message instead of sending it now.
    pub send_at: Option<String>,
}

/// The answer to a send.
#[derive(Debug)]
pub enum Sent {
    /// Stored now (and, in synchronous mode, already delivered or failed).
    Created(Message),
    /// The same request was sent before with this key: its message, unchanged.
    Repeated(Message),
}

impl Sent {
    pub fn message(&self) -> &Message {
        match self {
            Self::Created(m) | Self::Repeated(m) => m,
        }
    }
}

/// Stores and queues one outbound message.
#[tracing::instrument(skip_all)]
pub async fn send(ctx: Context<'_>, request: SendRequest) -> Result<Sent, ServiceError> {
    let key = idempotency_key(request.key_header.as_deref(), request.key_field)?;
    let mut message = NewMessage::outbound(request.content)?;
    compliance::prepare_outbound(ctx.settings, &mut message)?;
    message.provider_timestamp = request.provider_timestamp;
    if let Some(raw) = request.send_at.as_deref() {
        message = message.scheduled(parse_send_at(raw, OffsetDateTime::now_utc())?);
    }
    if key.is_some() {
        message.request_hash = Some(request_hash(&message));
        message.idempotency_key = key;
    }
    let hash = message.request_hash.clone();
    match ingest::submit(ctx, message).await? {
        Inserted::Created(created)
            if ctx.settings.sync_message_processing && created.status == MessageStatus::Pending =>
        {
            Ok(Sent::Created(deliver_now::deliver_now(ctx, created).await?))
        }
        Inserted::Created(created) => Ok(Sent::Created(created)),
        Inserted::Existing {
            message,
            request_hash,
        } if request_hash == hash => Ok(Sent::Repeated(message)),
        Inserted::Existing { message, .. } => Err(ServiceError::IdempotencyConflict {
            existing: message.id,
        }),
    }
}

/// The name of the provider that sends (or sent) `message`: the one recorded on it, else
/// the first configured for its type.
pub fn provider_name(ctx: Context<'_>, message: &Message) -> String {
    message.provider.clone().unwrap_or_else(|| {
        ctx.deliverer
            .providers
            .for_type(message.kind)
            .name()
            .to_owned()
    })
}

/// The idempotency key from the header (preferred) or the body: trimmed, 1 to 255
/// characters, no control characters; a header must be visible ASCII.
pub fn idempotency_key(
    header: Option<&[u8]>,
    field: Option<String>,
) -> Result<Option<String>, ServiceError> {
    let header = match header {
        Some(raw) => Some(
            std::str::from_utf8(raw)
                .ok()
                .filter(|v| v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)))
                .ok_or_else(|| ServiceError::invalid("Idempotency-Key", "must be visible ASCII"))?
                .to_owned(),
        ),
        None => None,
    };
    match header.or(field).map(|k| k.trim().to_owned()) {
        Some(k) if k.contains(char::is_control) => Err(ServiceError::invalid(
            "idempotency_key",
            "must not contain control characters",
        )),
        Some(k) if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY_LEN => Err(ServiceError::invalid(
            "idempotency_key",
            format!("must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} characters"),
        )),
        other => Ok(other),
    }
}

/// Fingerprint of what was asked, so a reused key with a different request is caught.
fn request_hash(m: &NewMessage) -> String {
    let mut canonical = json!([
        m.kind.as_str(),
        m.from.as_str(),
        m.to.as_str(),
        m.body,
        m.subject,
        m.attachments,
        m.metadata
    ]);
    // Only when scheduled, so that the fingerprints of other requests stay as they were.
    if let (Some(at), Some(parts)) = (m.send_at, canonical.as_array_mut()) {
        parts.push(json!(at.unix_timestamp_nanos().to_string()));
    }
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_wins_and_keys_are_trimmed_and_bounded() {
        assert_eq!(
            idempotency_key(Some(b" h "), Some("b".into()))
                .ok()
                .flatten(),
            Some("h".to_owned())
        );
        assert_eq!(
            idempotency_key(None, Some("b".into())).ok().flatten(),
            Some("b".to_owned())
        );
        assert!(idempotency_key(None, None).is_ok_and(|k| k.is_none()));
        assert!(idempotency_key(Some("é".as_bytes()), None).is_err());
        assert!(idempotency_key(None, Some("a\u{7}b".into())).is_err());
        assert!(idempotency_key(None, Some("  ".into())).is_err());
        assert!(idempotency_key(None, Some("k".repeat(256))).is_err());
        assert!(idempotency_key(None, Some("k".repeat(255))).is_ok());
    }
}
