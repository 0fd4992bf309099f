//! Messages, their validation rules and the status lifecycle.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::segments::{SmsEncoding, count_segments};

use super::address::{Address, ChannelFamily, EmailAddress, PhoneNumber};

/// Largest SMS/MMS body Twilio accepts, in characters.
pub const MAX_SMS_BODY_CHARS: usize = 1600;
/// Largest email body we accept, in bytes (HTML included).
pub const MAX_EMAIL_BODY_BYTES: usize = 1_000_000;
pub const MAX_ATTACHMENTS: usize = 10;
pub const MAX_SUBJECT_CHARS: usize = 998;
pub const MAX_ATTACHMENT_URL_CHARS: usize = 2048;
/// `metadata` is for the client's references, not payloads.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
pub const MAX_METADATA_DEPTH: usize = 8;

/// A client mistake in a message, naming the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    pub field: std::borrow::Cow<'static, str>,
    pub reason: String,
}

impl ValidationError {
    pub fn new(
        field: impl Into<std::borrow::Cow<'static, str>>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(raw: &str) -> Option<Self> {
                match raw { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// The channel a message travels on.
    MessageType { Sms => "sms", Mms => "mms", Email => "email" }
);
string_enum!(
    Direction { Outbound => "outbound", Inbound => "inbound" }
);
string_enum!(
    /// Where a message is in its life. Outbound: `pending → sending → sent → delivered`,
    /// with `sending → retry → sending` and `→ failed`; a scheduled send waits in
    /// `scheduled` until `pending` (or `canceled`). Inbound messages are `received`.
    MessageStatus {
        Pending => "pending",
        Sending => "sending",
        Retry => "retry",
        Sent => "sent",
        Delivered => "delivered",
        Failed => "failed",
        Received => "received",
        Scheduled => "scheduled",
        Canceled => "canceled",
    }
);

impl MessageType {
    pub fn family(self) -> ChannelFamily {
        match self {
            Self::Sms | Self::Mms => ChannelFamily::Phone,
            Self::Email => ChannelFamily::Email,
        }
    }
}

/// An attempted status change the lifecycle does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a message cannot move from {from} to {to}")]
pub struct TransitionError {
    pub from: MessageStatus,
    pub to: MessageStatus,
}

impl MessageStatus {
    /// The one table of legal transitions. Everything that writes a status asks it.
    fn allows(self, next: MessageStatus) -> bool {
        use MessageStatus::*;
        matches!(
            (self, next),
            (Pending, Sending | Failed)
                // A reclaimed message is claimed again by another worker.
                | (Sending, Sending | Sent | Retry | Failed)
                | (Retry, Sending | Failed)
                // The provider's own event shows that an interrupted send was accepted.
                | (Pending | Retry, Sent)
                // A receipt may report a late failure (undelivered) after the send.
                | (Sent, Delivered | Failed)
                // A manual retry or dead-letter redrive puts a failed message back in line.
                | (Failed, Pending)
                // A scheduled send falls due, or is canceled before it does.
                | (Scheduled, Pending | Canceled)
        )
    }

    pub fn transition_to(self, next: MessageStatus) -> Result<MessageStatus, TransitionError> {
        if self.allows(next) {
            Ok(next)
        } else {
            Err(TransitionError {
                from: self,
                to: next,
            })
        }
    }

    /// Every status from which `next` may be reached: the guard of conditional updates.
    pub fn predecessors(next: MessageStatus) -> Vec<MessageStatus> {
        Self::ALL
            .iter()
            .copied()
            .filter(|s| s.allows(next))
            .collect()
    }

    /// A resting status needs no further work from a worker.
    pub fn is_resting(self) -> bool {
        matches!(
            self,
            Self::Sent | Self::Delivered | Self::Failed | Self::Received | Self::Canceled
        )
    }
}

/// A provider or delivery error kept on a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorInfo {
    pub code: String,
    pub message: String,
}

/// A stored message, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Message {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub direction: Direction,
    #[serde(rename = "type")]
    pub kind: MessageType,
    pub from: String,
    pub to: String,
    pub body: Option<String>,
    pub subject: Option<String>,
    pub attachments: Vec<String>,
    pub status: MessageStatus,
    pub provider: Option<String>,
    pub provider_message_id: Option<String>,
    /// Billed segments of an sms/mms, as the provider counted them.
    pub num_segments: Option<i32>,
    pub retry_count: i32,
    pub error: Option<ErrorInfo>,
    pub metadata: Value,
    pub idempotency_key: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub sent_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub delivered_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub failed_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
    /// When the provider says the message was sent or received (inbound and original API).
    #[serde(with = "time::serde::rfc3339::option")]
    pub provider_timestamp: Option<OffsetDateTime>,
    /// When an inbound message was marked read (`POST /conversations/{id}/read`).
    #[serde(with = "time::serde::rfc3339::option")]
    pub read_at: Option<OffsetDateTime>,
    /// When a scheduled send falls due; absent for a message sent at once.
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub send_at: Option<OffsetDateTime>,
    /// Where this message's status events are also POSTed (`status_callback` on send).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_callback: Option<String>,
    /// `segments` and `encoding` of an sms/mms body, counted from the body it was accepted
    /// with; absent for email. Set by `Message::sized`.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = SmsSizeFields)]
    pub size: Option<SmsSize>,
}

/// The schema of [`Message::size`] flattened into a message: both fields or neither.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct SmsSizeFields {
    /// Segments of an sms/mms body; absent for email.
    #[schema(nullable = false)]
    segments: Option<u32>,
    /// `GSM-7` or `UCS-2`; absent for email.
    #[schema(nullable = false)]
    encoding: Option<SmsEncoding>,
}

/// How an sms/mms body travels: its encoding and the number of segments it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SmsSize {
    pub segments: u32,
    pub encoding: SmsEncoding,
}

impl SmsSize {
    /// The size of `body` for an sms/mms; `None` for email.
    pub fn of(kind: MessageType, body: Option<&str>) -> Option<Self> {
        if kind == MessageType::Email {
            return None;
        }
        let count = count_segments(body.unwrap_or_default());
        Some(Self {
            segments: count.segments,
            encoding: count.encoding,
        })
    }
}

impl Message {
    /// The message with its sms size computed from its body.
    pub fn sized(mut self) -> Self {
        self.size = SmsSize::of(self.kind, self.body.as_deref());
        self
    }
}

/// One entry of a message's audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MessageEvent {
    pub id: i64,
    pub message_id: Uuid,
    pub event: String,
    pub from_status: Option<MessageStatus>,
    pub to_status: Option<MessageStatus>,
    pub detail: Value,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// What a client asked to send, before validation.
#[derive(Debug, Clone, Default)]
pub struct OutboundContent {
    pub from: Option<String>,
    pub to: Option<String>,
    pub kind: Option<String>,
    pub body: Option<String>,
    pub subject: Option<String>,
    pub attachments: Vec<String>,
    pub metadata: Option<Value>,
}

/// A validated message ready to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub id: Uuid,
    pub direction: Direction,
    pub kind: MessageType,
    pub from: Address,
    pub to: Address,
    pub body: Option<String>,
    pub subject: Option<String>,
    pub attachments: Vec<String>,
    pub metadata: Value,
    pub status: MessageStatus,
    pub idempotency_key: Option<String>,
    /// Fingerprint of the request, so a reused idempotency key with other content is caught.
    pub request_hash: Option<String>,
    /// Inbound: the provider that delivered it and its id there (the deduplication key).
    pub provider: Option<String>,
    pub provider_message_id: Option<String>,
    pub provider_timestamp: Option<OffsetDateTime>,
    /// A scheduled send's due time (the message is then `scheduled`, not `pending`).
    pub send_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    /// Where this message's status events are also POSTed.
    pub status_callback: Option<String>,
}

/// What a provider (or the original webhook API) reported as received, before validation.
#[derive(Debug, Clone)]
pub struct InboundContent {
    pub kind: MessageType,
    pub from: Option<String>,
    pub to: Option<String>,
    pub body: Option<String>,
    pub subject: Option<String>,
    pub attachments: Vec<String>,
    /// Short stable name of the provider; with `provider_message_id` it identifies the message.
    pub provider: String,
    pub provider_message_id: Option<String>,
    pub provider_timestamp: Option<OffsetDateTime>,
    pub metadata: Option<Value>,
}

/// Longest provider message id accepted.
pub const MAX_PROVIDER_MESSAGE_ID_CHARS: usize = 255;

impl NewMessage {
    /// Validates an outbound request; the first broken rule is reported with its field.
    pub fn outbound(content: OutboundContent) -> Result<Self, ValidationError> {
        let to_raw = non_empty(content.to.as_deref())
            .ok_or_else(|| ValidationError::new("to", "is required"))?;
        let from_raw = non_empty(content.from.as_deref())
            .ok_or_else(|| ValidationError::new("from", "is required"))?;

        let kind = match content.kind.as_deref().map(str::trim) {
            Some(t) if !t.is_empty() => MessageType::parse(&t.to_ascii_lowercase())
                .ok_or_else(|| ValidationError::new("type", "must be one of sms, mms, email"))?,
            _ if to_raw.contains('@') => MessageType::Email,
            _ if content.attachments.is_empty() => MessageType::Sms,
            _ => MessageType::Mms,
        };

        let (to, from) = match kind.family() {
            ChannelFamily::Phone => (
                PhoneNumber::parse(to_raw)
                    .map(Address::Phone)
                    .map_err(|r| ValidationError::new("to", r))?,
                PhoneNumber::parse(from_raw)
                    .map(Address::Phone)
                    .map_err(|r| ValidationError::new("from", r))?,
            ),
            ChannelFamily::Email => (
                EmailAddress::parse(to_raw)
                    .map(Address::Email)
                    .map_err(|r| ValidationError::new("to", r))?,
                EmailAddress::parse(from_raw)
                    .map(Address::Email)
                    .map_err(|r| ValidationError::new("from", r))?,
            ),
        };

        let (body, subject, metadata) = validate_content(
            kind,
            content.body,
            content.subject,
            &content.attachments,
            content.metadata,
        )?;

        Ok(Self {
            id: Uuid::now_v7(),
            direction: Direction::Outbound,
            kind,
            from,
            to,
            body,
            subject,
            attachments: content.attachments,
            metadata,
            status: MessageStatus::Pending,
            idempotency_key: None,
            request_hash: None,
            provider: None,
            provider_message_id: None,
            provider_timestamp: None,
            send_at: None,
            created_at: now_micros(),
            status_callback: None,
        })
    }

    /// Validates a received message. Addresses are parsed in the family of `kind`; an SMS
    /// that arrives with media is stored as MMS, since that is what it is. The provider id
    /// is required: it is what makes a replayed webhook a duplicate instead of a new message.
    pub fn inbound(content: InboundContent) -> Result<Self, ValidationError> {
        let kind = match content.kind {
            MessageType::Sms if !content.attachments.is_empty() => MessageType::Mms,
            k => k,
        };
        let from = parse_in_family(kind.family(), "from", content.from.as_deref())?;
        let to = parse_in_family(kind.family(), "to", content.to.as_deref())?;
        let provider_message_id = non_empty(content.provider_message_id.as_deref())
            .ok_or_else(|| ValidationError::new("provider_message_id", "is required"))?;
        if provider_message_id.contains('\0') {
            return Err(ValidationError::new(
                "provider_message_id",
                "must not contain NUL characters",
            ));
        }
        if provider_message_id.chars().count() > MAX_PROVIDER_MESSAGE_ID_CHARS {
            return Err(ValidationError::new(
                "provider_message_id",
                format!("must be at most {MAX_PROVIDER_MESSAGE_ID_CHARS} characters"),
            ));
        }
        let (body, subject, metadata) = validate_content(
            kind,
            content.body,
            content.subject,
            &content.attachments,
            content.metadata,
        )?;
        Ok(Self {
            id: Uuid::now_v7(),
            direction: Direction::Inbound,
            kind,
            from,
            to,
            body,
            subject,
            attachments: content.attachments,
            metadata,
            status: MessageStatus::Received,
            idempotency_key: None,
            request_hash: None,
            provider: Some(content.provider),
            provider_message_id: Some(provider_message_id.to_owned()),
            provider_timestamp: content.provider_timestamp,
            send_at: None,
            created_at: now_micros(),
            status_callback: None,
        })
    }

    /// The conversation this message threads into: the unordered pair plus the family.
    pub fn conversation_key(&self) -> (ChannelFamily, String, String) {
        let (a, b) = (self.from.as_str(), self.to.as_str());
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        (self.kind.family(), low.to_owned(), high.to_owned())
    }
}

/// Now, to the microsecond: the precision both databases store, so a message's creation
/// time reads back exactly as it was answered.
fn now_micros() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1000 * 1000)
        .unwrap_or(now)
}

fn non_empty(raw: Option<&str>) -> Option<&str> {
    raw.map(str::trim).filter(|s| !s.is_empty())
}

fn parse_in_family(
    family: ChannelFamily,
    field: &'static str,
    raw: Option<&str>,
) -> Result<Address, ValidationError> {
    let raw = non_empty(raw).ok_or_else(|| ValidationError::new(field, "is required"))?;
    match family {
        ChannelFamily::Phone => PhoneNumber::parse(raw).map(Address::Phone),
        ChannelFamily::Email => EmailAddress::parse(raw).map(Address::Email),
    }
    .map_err(|r| ValidationError::new(field, r))
}

/// Body, subject, attachments and metadata rules shared by both directions.
fn validate_content(
    kind: MessageType,
    body: Option<String>,
    subject: Option<String>,
    attachments: &[String],
    metadata: Option<Value>,
) -> Result<(Option<String>, Option<String>, Value), ValidationError> {
    let body = body.filter(|b| !b.trim().is_empty());
    if body.is_none() && attachments.is_empty() {
        return Err(ValidationError::new(
            "body",
            "a body or at least one attachment is required",
        ));
    }
    if let Some(b) = &body {
        if b.contains('\0') {
            return Err(ValidationError::new(
                "body",
                "must not contain NUL characters",
            ));
        }
        match kind {
            MessageType::Sms | MessageType::Mms if b.chars().count() > MAX_SMS_BODY_CHARS => {
                return Err(ValidationError::new(
                    "body",
                    format!("must be at most {MAX_SMS_BODY_CHARS} characters"),
                ));
            }
            MessageType::Email if b.len() > MAX_EMAIL_BODY_BYTES => {
                return Err(ValidationError::new(
                    "body",
                    format!("must be at most {MAX_EMAIL_BODY_BYTES} bytes"),
                ));
            }
            _ => {}
        }
    }

    let subject = subject.filter(|s| !s.trim().is_empty());
    if let Some(s) = &subject {
        if kind != MessageType::Email {
            return Err(ValidationError::new("subject", "is only allowed for email"));
        }
        if s.chars().count() > MAX_SUBJECT_CHARS || s.contains(['\r', '\n', '\0']) {
            return Err(ValidationError::new(
                "subject",
                format!("must be one line of at most {MAX_SUBJECT_CHARS} characters"),
            ));
        }
    }

    validate_attachments(kind, attachments)?;

    let metadata = match metadata {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(v @ Value::Object(_)) => {
            validate_metadata(&v)?;
            v
        }
        Some(_) => return Err(ValidationError::new("metadata", "must be a JSON object")),
    };

    Ok((body, subject, metadata))
}

/// Bounded size and depth, and no NUL characters (which PostgreSQL cannot store).
fn validate_metadata(v: &Value) -> Result<(), ValidationError> {
    fn walk(v: &Value, depth: usize) -> Result<(), &'static str> {
        if depth > MAX_METADATA_DEPTH {
            return Err("is nested too deeply");
        }
        match v {
            Value::String(s) if s.contains('\0') => Err("must not contain NUL characters"),
            Value::Array(items) => items.iter().try_for_each(|i| walk(i, depth + 1)),
            Value::Object(map) => map.iter().try_for_each(|(k, i)| {
                if k.contains('\0') {
                    Err("must not contain NUL characters")
                } else {
                    walk(i, depth + 1)
                }
            }),
            _ => Ok(()),
        }
    }
    walk(v, 1).map_err(|reason| ValidationError::new("metadata", reason))?;
    if !super::json_numbers::numbers_storable(v) {
        return Err(ValidationError::new(
            "metadata",
            "numbers must be within ±1e300",
        ));
    }
    if v.to_string().len() > MAX_METADATA_BYTES {
        return Err(ValidationError::new(
            "metadata",
            format!("must be at most {MAX_METADATA_BYTES} bytes of JSON"),
        ));
    }
    Ok(())
}

fn validate_attachments(kind: MessageType, attachments: &[String]) -> Result<(), ValidationError> {
    if attachments.is_empty() {
        return Ok(());
    }
    if kind == MessageType::Sms {
        return Err(ValidationError::new(
            "attachments",
            "sms messages cannot carry attachments; use type mms",
        ));
    }
    if attachments.len() > MAX_ATTACHMENTS {
        return Err(ValidationError::new(
            "attachments",
            format!("at most {MAX_ATTACHMENTS} attachments are allowed"),
        ));
    }
    for raw in attachments {
        let ok = raw.len() <= MAX_ATTACHMENT_URL_CHARS
            && url::Url::parse(raw)
                .map(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                .unwrap_or(false);
        if !ok {
            return Err(ValidationError::new(
                "attachments",
                "every attachment must be an http(s) URL",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sms(body: &str) -> OutboundContent {
        OutboundContent {
            from: Some("+15551234567".into()),
            to: Some("+15559876543".into()),
            kind: Some("sms".into()),
            body: Some(body.into()),
            ..Default::default()
        }
    }

    #[test]
    fn nul_characters_and_oversized_metadata_are_refused_before_storage() {
        let err = NewMessage::outbound(sms("a\0b")).unwrap_err();
        assert_eq!(err.field, "body");
        for metadata in [
            serde_json::json!({"k\0": 1}),
            serde_json::json!({"k": ["\0"]}),
            serde_json::json!({"k": "x".repeat(MAX_METADATA_BYTES)}),
            serde_json::json!({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}}),
        ] {
            let content = OutboundContent {
                metadata: Some(metadata.clone()),
                ..sms("ok")
            };
            let err = NewMessage::outbound(content).unwrap_err();
            assert_eq!(err.field, "metadata", "{metadata}");
        }
        let fine = OutboundContent {
            metadata: Some(serde_json::json!({"order": {"id": 7, "tags": ["a"]}})),
            ..sms("ok")
        };
        assert!(NewMessage::outbound(fine).is_ok());
    }

    #[test]
    fn the_lifecycle_allows_the_happy_path_and_retries() {
        use MessageStatus::*;
        for (a, b) in [
            (Pending, Sending),
            (Sending, Sent),
            (Sent, Delivered),
            (Sending, Retry),
            (Retry, Sending),
            (Sending, Failed),
            (Failed, Pending),
        ] {
            assert_eq!(a.transition_to(b), Ok(b), "{a} -> {b}");
        }
    }

    #[test]
    fn the_lifecycle_refuses_going_backwards() {
        use MessageStatus::*;
        for (a, b) in [
            (Delivered, Sending),
            (Sent, Sending),
            (Delivered, Sent),
            (Received, Sending),
            (Sent, Pending),
            (Delivered, Failed),
        ] {
            assert!(a.transition_to(b).is_err(), "{a} -> {b} must be refused");
        }
    }

    #[test]
    fn predecessors_of_sending_are_pending_sending_and_retry() {
        let mut p = MessageStatus::predecessors(MessageStatus::Sending);
        p.sort_by_key(|s| s.as_str());
        assert_eq!(
            p,
            vec![
                MessageStatus::Pending,
                MessageStatus::Retry,
                MessageStatus::Sending
            ]
        );
    }

    #[test]
    fn type_is_inferred_from_the_recipient_and_attachments() {
        let mut c = sms("hi");
        c.kind = None;
        assert_eq!(
            NewMessage::outbound(c.clone()).unwrap().kind,
            MessageType::Sms
        );
        c.attachments = vec!["https://example.com/a.png".into()];
        assert_eq!(NewMessage::outbound(c).unwrap().kind, MessageType::Mms);
        let e = OutboundContent {
            from: Some("a@example.com".into()),
            to: Some("b@Example.com".into()),
            body: Some("x".into()),
            ..Default::default()
        };
        let m = NewMessage::outbound(e).unwrap();
        assert_eq!(m.kind, MessageType::Email);
        assert_eq!(m.to.as_str(), "b@example.com");
    }

    #[test]
    fn each_rule_names_its_field() {
        let cases: Vec<(OutboundContent, &str)> = vec![
            (
                OutboundContent {
                    to: None,
                    ..sms("x")
                },
                "to",
            ),
            (
                OutboundContent {
                    from: None,
                    ..sms("x")
                },
                "from",
            ),
            (
                OutboundContent {
                    to: Some("555".into()),
                    ..sms("x")
                },
                "to",
            ),
            (
                OutboundContent {
                    kind: Some("fax".into()),
                    ..sms("x")
                },
                "type",
            ),
            (sms(""), "body"),
            (sms(&"a".repeat(1601)), "body"),
            (
                OutboundContent {
                    kind: Some("mms".into()),
                    attachments: vec!["ftp://x.com/a".into()],
                    ..sms("x")
                },
                "attachments",
            ),
            (
                OutboundContent {
                    kind: Some("mms".into()),
                    attachments: vec!["https://x.com/a".into(); 11],
                    ..sms("x")
                },
                "attachments",
            ),
            (
                OutboundContent {
                    subject: Some("s".into()),
                    ..sms("x")
                },
                "subject",
            ),
            (
                OutboundContent {
                    metadata: Some(Value::from(3)),
                    ..sms("x")
                },
                "metadata",
            ),
        ];
        for (content, field) in cases {
            assert_eq!(NewMessage::outbound(content).unwrap_err().field, field);
        }
    }

    #[test]
    fn a_body_of_exactly_1600_characters_is_accepted() {
        assert!(NewMessage::outbound(sms(&"é".repeat(1600))).is_ok());
    }

    fn inbound_sms(body: &str) -> InboundContent {
        InboundContent {
            kind: MessageType::Sms,
            from: Some("+15559876543".into()),
            to: Some("+15551234567".into()),
            body: Some(body.into()),
            subject: None,
            attachments: vec![],
            provider: "twilio".into(),
            provider_message_id: Some("SM123".into()),
            provider_timestamp: Some(time::macros::datetime!(2024-11-01 14:00 UTC)),
            metadata: None,
        }
    }

    #[test]
    fn an_inbound_message_is_received_and_keeps_its_provider_id_and_timestamp() {
        let m = NewMessage::inbound(inbound_sms("hi")).unwrap();
        assert_eq!(m.direction, Direction::Inbound);
        assert_eq!(m.status, MessageStatus::Received);
        assert_eq!(m.provider.as_deref(), Some("twilio"));
        assert_eq!(m.provider_message_id.as_deref(), Some("SM123"));
        assert_eq!(
            m.provider_timestamp,
            Some(time::macros::datetime!(2024-11-01 14:00 UTC))
        );
        // A reply threads into the conversation of the message it answers.
        let outbound = NewMessage::outbound(sms("x")).unwrap();
        assert_eq!(m.conversation_key(), outbound.conversation_key());
    }

    #[test]
    fn an_inbound_message_takes_its_address_family_from_the_channel() {
        let mut email = inbound_sms("<p>hi</p>");
        email.kind = MessageType::Email;
        assert_eq!(
            NewMessage::inbound(email.clone()).unwrap_err().field,
            "from"
        );
        email.from = Some("A@Example.COM".into());
        email.to = Some("b@example.com".into());
        let m = NewMessage::inbound(email).unwrap();
        assert_eq!(m.from.as_str(), "A@example.com");
        let mut media = inbound_sms("look");
        media.attachments = vec!["https://example.com/a.png".into()];
        assert_eq!(NewMessage::inbound(media).unwrap().kind, MessageType::Mms);
    }

    #[test]
    fn an_inbound_message_without_a_provider_id_is_refused() {
        let mut c = inbound_sms("hi");
        c.provider_message_id = Some(" ".into());
        assert_eq!(
            NewMessage::inbound(c).unwrap_err().field,
            "provider_message_id"
        );
    }

    #[test]
    fn conversation_key_is_the_same_in_both_directions() {
        let a = NewMessage::outbound(sms("x")).unwrap();
        let mut reply = sms("y");
        std::mem::swap(&mut reply.from, &mut reply.to);
        let b = NewMessage::outbound(reply).unwrap();
        assert_eq!(a.conversation_key(), b.conversation_key());
    }
}
