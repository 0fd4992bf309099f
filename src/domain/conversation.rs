//! Conversations: the unordered pair of participants in one channel family, with the
//! rules for creating and editing one. Counters are kept by the store as messages arrive.

use serde::Serialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use super::address::{Address, ChannelFamily, EmailAddress, PhoneNumber};
use super::message::ValidationError;

pub const MAX_TITLE_CHARS: usize = 200;
/// Longest search text accepted by `POST /conversations/search`.
pub const MAX_SEARCH_QUERY_CHARS: usize = 200;

/// Whether a conversation is in use. An archived one re-opens when an inbound message arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConversationStatus {
    Active,
    Archived,
    Closed,
}

impl ConversationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Archived => "archived",
            Self::Closed => "closed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "active" => Some(Self::Active),
            "archived" => Some(Self::Archived),
            "closed" => Some(Self::Closed),
            _ => None,
        }
    }
}

/// A stored conversation, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Conversation {
    pub id: Uuid,
    /// `phone` (sms and mms) or `email`.
    #[schema(value_type = String, pattern = "^(phone|email)$")]
    pub channel: ChannelFamily,
    /// The two addresses, in their stored (sorted) order.
    pub participants: [String; 2],
    pub status: ConversationStatus,
    pub title: Option<String>,
    pub message_count: i64,
    pub unread_count: i64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_message_at: Option<OffsetDateTime>,
    pub metadata: Value,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Serialize for ChannelFamily {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Parses a channel as clients name it: the family (`phone`, `email`) or a message type
/// (`sms` and `mms` talk in the phone family).
pub fn parse_channel(raw: &str) -> Option<ChannelFamily> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "phone" | "sms" | "mms" => Some(ChannelFamily::Phone),
        "email" => Some(ChannelFamily::Email),
        _ => None,
    }
}

/// Parses an address of the given family, normalised as messages are.
pub fn parse_address(family: ChannelFamily, raw: &str) -> Result<Address, &'static str> {
    match family {
        ChannelFamily::Phone => PhoneNumber::parse(raw).map(Address::Phone),
        ChannelFamily::Email => EmailAddress::parse(raw).map(Address::Email),
    }
}

/// A validated request to open a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct NewConversation {
    pub id: Uuid,
    pub channel: ChannelFamily,
    /// Sorted, so that the pair matches the one messages thread into.
    pub participants: (String, String),
    pub title: Option<String>,
    pub metadata: Value,
}

impl NewConversation {
    /// `channel` may be omitted when the participants make the family obvious.
    pub fn new(
        participants: Option<Vec<String>>,
        channel: Option<&str>,
        title: Option<String>,
        metadata: Option<Value>,
    ) -> Result<Self, ValidationError> {
        let participants =
            participants.ok_or_else(|| ValidationError::new("participants", "is required"))?;
        let [first, second] = <[String; 2]>::try_from(participants)
            .map_err(|_| ValidationError::new("participants", "must list exactly two addresses"))?;
        let channel = match channel.map(str::trim).filter(|c| !c.is_empty()) {
            Some(raw) => parse_channel(raw)
                .ok_or_else(|| ValidationError::new("channel", "must be one of phone, email"))?,
            None => Address::parse_any(&first)
                .map_err(|r| ValidationError::new("participants", r))?
                .family(),
        };
        let a = parse_address(channel, &first)
            .map_err(|r| ValidationError::new("participants", format!("first address {r}")))?;
        let b = parse_address(channel, &second)
            .map_err(|r| ValidationError::new("participants", format!("second address {r}")))?;
        if a == b {
            return Err(ValidationError::new(
                "participants",
                "must be two different addresses",
            ));
        }
        let (low, high) = if a.as_str() <= b.as_str() {
            (a, b)
        } else {
            (b, a)
        };
        Ok(Self {
            id: Uuid::now_v7(),
            channel,
            participants: (low.as_str().to_owned(), high.as_str().to_owned()),
            title: validate_title(title)?,
            metadata: validate_metadata(metadata)?.unwrap_or_else(|| Value::Object(Map::new())),
        })
    }
}

/// A validated edit. Metadata is merged at the top level: a key set to `null` is removed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConversationPatch {
    /// `Some(None)` clears the title.
    pub title: Option<Option<String>>,
    pub status: Option<ConversationStatus>,
    pub metadata_set: Map<String, Value>,
    pub metadata_remove: Vec<String>,
}

impl ConversationPatch {
    /// `title` is `None` when absent and `Some(Value::Null)` when explicitly cleared.
    pub fn new(
        title: Option<Value>,
        status: Option<&str>,
        metadata: Option<Value>,
    ) -> Result<Self, ValidationError> {
        let title = match title {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::String(s)) => Some(validate_title(Some(s))?),
            Some(_) => return Err(ValidationError::new("title", "must be a string or null")),
        };
        let status = status
            .map(|raw| {
                ConversationStatus::parse(raw).ok_or_else(|| {
                    ValidationError::new("status", "must be one of active, archived, closed")
                })
            })
            .transpose()?;
        let mut patch = Self {
            title,
            status,
            ..Self::default()
        };
        if let Some(Value::Object(map)) = validate_metadata(metadata)? {
            for (k, v) in map {
                if v.is_null() {
                    patch.metadata_remove.push(k);
                } else {
                    patch.metadata_set.insert(k, v);
                }
            }
        }
        Ok(patch)
    }
}

fn validate_title(title: Option<String>) -> Result<Option<String>, ValidationError> {
    let title = title.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
    if let Some(t) = &title
        && (t.chars().count() > MAX_TITLE_CHARS || t.contains(['\r', '\n']))
    {
        return Err(ValidationError::new(
            "title",
            format!("must be one line of at most {MAX_TITLE_CHARS} characters"),
        ));
    }
    Ok(title)
}

fn validate_metadata(metadata: Option<Value>) -> Result<Option<Value>, ValidationError> {
    match metadata {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) if !super::json_numbers::numbers_storable(&v) => Err(
            ValidationError::new("metadata", "numbers must be within ±1e300"),
        ),
        Some(v @ Value::Object(_)) => Ok(Some(v)),
        Some(_) => Err(ValidationError::new("metadata", "must be a JSON object")),
    }
}

/// What `POST /conversations/search` looks for: words of message text, and, when the text
/// is an address, the conversations that address takes part in.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    pub text: String,
    /// The query normalised as an address of either family, when it is one.
    pub address: Option<String>,
}

impl SearchQuery {
    pub fn parse(raw: Option<&str>) -> Result<Self, ValidationError> {
        let text = raw
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ValidationError::new("query", "is required"))?;
        if text.chars().count() > MAX_SEARCH_QUERY_CHARS {
            return Err(ValidationError::new(
                "query",
                format!("must be at most {MAX_SEARCH_QUERY_CHARS} characters"),
            ));
        }
        Ok(Self {
            text: text.to_owned(),
            address: Address::parse_any(text).ok().map(|a| a.as_str().to_owned()),
        })
    }
}

/// Totals of one conversation.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ConversationStatistics {
    pub conversation_id: Uuid,
    pub total_messages: i64,
    pub inbound: i64,
    pub outbound: i64,
    pub failed: i64,
    /// Mean seconds from accepted (created) to sent, over outbound messages that were sent.
    pub average_seconds_to_sent: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pair(a: &str, b: &str) -> Option<Vec<String>> {
        Some(vec![a.to_owned(), b.to_owned()])
    }

    #[test]
    fn participants_are_normalised_and_sorted_whatever_their_order() {
        let one = NewConversation::new(pair("+1 555 987 6543", "+15551234567"), None, None, None)
            .unwrap();
        let two = NewConversation::new(
            pair("+15551234567", "+15559876543"),
            Some("sms"),
            None,
            None,
        )
        .unwrap();
        assert_eq!(one.participants, two.participants);
        assert_eq!(one.participants.0, "+15551234567");
        assert_eq!(one.channel, ChannelFamily::Phone);
    }

    #[test]
    fn a_conversation_needs_two_different_addresses_of_its_channel() {
        for (participants, channel) in [
            (None, None),
            (Some(vec!["+15551234567".to_owned()]), None),
            (pair("+15551234567", "+15551234567"), None),
            (pair("a@example.com", "+15551234567"), Some("email")),
            (pair("+15551234567", "+15559876543"), Some("fax")),
        ] {
            let err = NewConversation::new(participants, channel, None, None).unwrap_err();
            assert!(
                err.field == "participants" || err.field == "channel",
                "{err}"
            );
        }
    }

    #[test]
    fn a_patch_separates_metadata_to_set_from_keys_to_remove() {
        let p = ConversationPatch::new(
            Some(Value::Null),
            Some("archived"),
            Some(json!({"a": 1, "b": null})),
        )
        .unwrap();
        assert_eq!(p.title, Some(None));
        assert_eq!(p.status, Some(ConversationStatus::Archived));
        assert_eq!(p.metadata_set.get("a"), Some(&json!(1)));
        assert_eq!(p.metadata_remove, vec!["b".to_owned()]);
        assert_eq!(
            ConversationPatch::new(None, Some("deleted"), None)
                .unwrap_err()
                .field,
            "status"
        );
        assert_eq!(
            ConversationPatch::new(Some(json!(3)), None, None)
                .unwrap_err()
                .field,
            "title"
        );
    }

    #[test]
    fn a_search_for_an_address_also_matches_participants() {
        let q = SearchQuery::parse(Some(" +1 (555) 123-4567 ")).unwrap();
        assert_eq!(q.address.as_deref(), Some("+15551234567"));
        assert_eq!(SearchQuery::parse(Some("invoice")).unwrap().address, None);
        assert_eq!(SearchQuery::parse(Some("  ")).unwrap_err().field, "query");
    }
}
