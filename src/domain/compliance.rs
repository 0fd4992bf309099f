//! Compliance rules: who must not be messaged and why. The suppression list is keyed by a
//! normalised address (E.164 for phones, the whole email address lower-cased); opt-out and
//! opt-in keywords in inbound SMS, SendGrid events and SMTP refusals decide what joins or
//! leaves it. Nothing here knows where the list is kept.

use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::address::{Address, ChannelFamily, EmailAddress, PhoneNumber};

/// Why an address is on the suppression list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SuppressionReason {
    /// The recipient replied with an opt-out keyword.
    OptedOut,
    /// The address bounced permanently.
    Bounced,
    /// The recipient marked a message as spam.
    Complained,
    /// The recipient unsubscribed through the email provider.
    Unsubscribed,
    /// Added by an operator through the API.
    Manual,
}

impl SuppressionReason {
    pub const ALL: [Self; 5] = [
        Self::OptedOut,
        Self::Bounced,
        Self::Complained,
        Self::Unsubscribed,
        Self::Manual,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OptedOut => "opted_out",
            Self::Bounced => "bounced",
            Self::Complained => "complained",
            Self::Unsubscribed => "unsubscribed",
            Self::Manual => "manual",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == raw)
    }
}

/// Metadata key marking a keyword's confirmation reply. Clients may not set it: the reply
/// to an opt-out goes to a number that is already suppressed, and is sent all the same.
pub const REPLY_MARKER: &str = "compliance_reply";

/// Whether a message's metadata marks it as a keyword's confirmation reply.
pub fn is_reply(metadata: &serde_json::Value) -> bool {
    metadata.get(REPLY_MARKER).is_some()
}

/// What caused a change to the list, kept in its audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SuppressionCause {
    /// An inbound message carrying a keyword (its id).
    Keyword(Uuid),
    /// A provider's event (`sendgrid`, `sg_event_id`) or refusal (`smtp`, message id).
    ProviderEvent { provider: String, id: String },
    /// A request to the suppressions API.
    Api,
}

impl SuppressionCause {
    /// The kind of cause as stored.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Keyword(_) => "keyword",
            Self::ProviderEvent { .. } => "provider_event",
            Self::Api => "api",
        }
    }

    /// What identifies the cause (a message id, `provider:event id`), as stored.
    pub fn reference(&self) -> Option<String> {
        match self {
            Self::Keyword(id) => Some(id.to_string()),
            Self::ProviderEvent { provider, id } => Some(format!("{provider}:{id}")),
            Self::Api => None,
        }
    }
}

/// A normalised address the list is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SuppressedAddress {
    channel: ChannelFamily,
    address: String,
}

impl SuppressedAddress {
    /// An E.164 number or an email address (anything with `@`), normalised.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        Address::parse_any(raw).map(|a| Self::of(&a))
    }

    /// The key of a validated address: email addresses compare without regard to case.
    pub fn of(address: &Address) -> Self {
        match address {
            Address::Phone(p) => Self::phone(p),
            Address::Email(e) => Self::email(e),
        }
    }

    pub fn phone(p: &PhoneNumber) -> Self {
        Self {
            channel: ChannelFamily::Phone,
            address: p.as_str().to_owned(),
        }
    }

    pub fn email(e: &EmailAddress) -> Self {
        Self {
            channel: ChannelFamily::Email,
            address: e.as_str().to_lowercase(),
        }
    }

    /// The key of an address as stored on a message (already validated when accepted).
    pub fn of_stored(raw: &str) -> Option<Self> {
        Self::parse(raw).ok()
    }

    pub fn channel(&self) -> ChannelFamily {
        self.channel
    }

    pub fn as_str(&self) -> &str {
        &self.address
    }
}

/// One entry of the suppression list.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Suppression {
    pub address: String,
    /// `phone` or `email`.
    #[schema(value_type = String, pattern = "^(phone|email)$")]
    pub channel: ChannelFamily,
    pub reason: SuppressionReason,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
}

/// One entry of the list's audit trail: an address added or removed, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SuppressionChange {
    pub id: i64,
    pub address: String,
    pub channel: ChannelFamily,
    /// `added` or `removed`.
    pub action: String,
    pub reason: Option<SuppressionReason>,
    pub cause: String,
    pub cause_ref: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// What an inbound SMS body asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    OptOut,
    OptIn,
    Help,
}

const OPT_OUT: [&str; 8] = [
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
];
const OPT_IN: [&str; 3] = ["START", "UNSTOP", "YES"];
const HELP: [&str; 2] = ["HELP", "INFO"];

/// The keyword an inbound SMS body is, trimmed and compared without case; `None` for any
/// other text (a keyword inside a sentence is not one).
pub fn keyword(body: &str) -> Option<Keyword> {
    let word = body.trim().to_uppercase();
    if OPT_OUT.contains(&word.as_str()) {
        Some(Keyword::OptOut)
    } else if OPT_IN.contains(&word.as_str()) {
        Some(Keyword::OptIn)
    } else if HELP.contains(&word.as_str()) {
        Some(Keyword::Help)
    } else {
        None
    }
}

/// The list change an inbound message asks for: an sms/mms from a phone number whose body
/// is an opt-out or opt-in keyword suppresses or lifts its sender. `HELP` changes nothing.
pub fn keyword_change(
    direction: super::Direction,
    kind: super::MessageType,
    from: &Address,
    body: Option<&str>,
) -> Option<(SuppressedAddress, Keyword)> {
    if direction != super::Direction::Inbound || kind == super::MessageType::Email {
        return None;
    }
    let Address::Phone(sender) = from else {
        return None;
    };
    match body.and_then(keyword)? {
        Keyword::Help => None,
        word => Some((SuppressedAddress::phone(sender), word)),
    }
}

/// Whether a SendGrid event suppresses its recipient, and why: a hard bounce (not a
/// `blocked` one, which is the receiving server refusing this sender for now), a drop for a
/// bounced or invalid address, a spam report, an unsubscribe.
pub fn sendgrid_reason(
    event: &str,
    bounce_type: Option<&str>,
    reason: Option<&str>,
) -> Option<SuppressionReason> {
    match event {
        "bounce" if bounce_type != Some("blocked") => Some(SuppressionReason::Bounced),
        "dropped" => {
            let reason = reason.unwrap_or_default().to_ascii_lowercase();
            (reason.contains("bounce") || reason.contains("invalid"))
                .then_some(SuppressionReason::Bounced)
        }
        "spamreport" => Some(SuppressionReason::Complained),
        "unsubscribe" | "group_unsubscribe" => Some(SuppressionReason::Unsubscribed),
        _ => None,
    }
}

/// Whether an SMTP refusal says the address itself is bad: a permanent (5xx) reply whose
/// enhanced status is 5.1.x (bad mailbox, bad domain, moved), e.g. `550 5.1.1 User unknown`.
pub fn smtp_refusal_suppresses(code: &str, text: &str) -> bool {
    if !code.starts_with('5') {
        return false;
    }
    text.split(|c: char| c.is_whitespace() || c == ':' || c == ',')
        .any(|word| {
            word.strip_prefix("5.1.")
                .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_whole_bodies_trimmed_and_without_case() {
        for body in [
            "STOP",
            " stop ",
            "Stop\n",
            "stopall",
            "UNSUBSCRIBE",
            "cancel",
            "End",
            "quit",
            "revoke",
            "OptOut",
        ] {
            assert_eq!(keyword(body), Some(Keyword::OptOut), "{body:?}");
        }
        for body in ["START", "unstop", " yes "] {
            assert_eq!(keyword(body), Some(Keyword::OptIn), "{body:?}");
        }
        for body in ["help", "INFO"] {
            assert_eq!(keyword(body), Some(Keyword::Help), "{body:?}");
        }
        for body in ["please stop", "STOP!", "", "stopp", "no"] {
            assert_eq!(keyword(body), None, "{body:?}");
        }
    }

    #[test]
    fn only_inbound_sms_and_mms_from_a_phone_change_the_list() {
        use crate::domain::{Direction, EmailAddress, MessageType};
        let phone = Address::Phone(PhoneNumber::parse("+15551234567").unwrap());
        let change = |d, k, body| {
            keyword_change(d, k, &phone, Some(body)).map(|(a, w)| (a.as_str().to_owned(), w))
        };
        assert_eq!(
            change(Direction::Inbound, MessageType::Sms, "STOP"),
            Some(("+15551234567".to_owned(), Keyword::OptOut))
        );
        assert_eq!(
            change(Direction::Inbound, MessageType::Mms, "start"),
            Some(("+15551234567".to_owned(), Keyword::OptIn))
        );
        assert_eq!(change(Direction::Inbound, MessageType::Sms, "HELP"), None);
        assert_eq!(change(Direction::Outbound, MessageType::Sms, "STOP"), None);
        let email = Address::Email(EmailAddress::parse("a@example.com").unwrap());
        assert!(
            keyword_change(Direction::Inbound, MessageType::Email, &email, Some("STOP")).is_none()
        );
    }

    #[test]
    fn addresses_are_keyed_normalised() {
        let a = SuppressedAddress::parse("+1 (555) 123-4567").unwrap();
        assert_eq!(a.as_str(), "+15551234567");
        assert_eq!(a.channel(), ChannelFamily::Phone);
        let e = SuppressedAddress::parse(" Jane.Doe@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "jane.doe@example.com");
        assert_eq!(e.channel(), ChannelFamily::Email);
        assert!(SuppressedAddress::parse("nobody").is_err());
    }

    #[test]
    fn sendgrid_events_that_suppress() {
        use SuppressionReason::*;
        assert_eq!(
            sendgrid_reason("bounce", Some("bounce"), None),
            Some(Bounced)
        );
        assert_eq!(sendgrid_reason("bounce", None, None), Some(Bounced));
        assert_eq!(sendgrid_reason("bounce", Some("blocked"), None), None);
        assert_eq!(
            sendgrid_reason("dropped", None, Some("Bounced Address")),
            Some(Bounced)
        );
        assert_eq!(
            sendgrid_reason("dropped", None, Some("Invalid")),
            Some(Bounced)
        );
        assert_eq!(sendgrid_reason("dropped", None, Some("Spam Content")), None);
        assert_eq!(sendgrid_reason("spamreport", None, None), Some(Complained));
        assert_eq!(
            sendgrid_reason("unsubscribe", None, None),
            Some(Unsubscribed)
        );
        assert_eq!(
            sendgrid_reason("group_unsubscribe", None, None),
            Some(Unsubscribed)
        );
        for other in ["delivered", "open", "deferred", "processed"] {
            assert_eq!(sendgrid_reason(other, None, None), None);
        }
    }

    #[test]
    fn only_permanent_5_1_refusals_suppress() {
        assert!(smtp_refusal_suppresses("550", "550 5.1.1 User unknown"));
        assert!(smtp_refusal_suppresses(
            "550",
            "permanent error (550): 5.1.10 Recipient not found"
        ));
        assert!(!smtp_refusal_suppresses("550", "550 5.7.1 Relaying denied"));
        assert!(!smtp_refusal_suppresses("450", "450 4.1.1 try later"));
        assert!(!smtp_refusal_suppresses("552", "552 mailbox full"));
    }

    #[test]
    fn reasons_round_trip() {
        for r in SuppressionReason::ALL {
            assert_eq!(SuppressionReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(SuppressionReason::parse("other"), None);
    }
}
