//! A message's audit trail as it is shown. The accept transaction writes no event row for a
//! message's creation: the message row already records it (`created_at`, and the status it
//! was stored with, which is the `from_status` of its first transition, or its status while
//! it has none). The `created` entry is derived here on read, the same entry older versions
//! stored as a row (those are shown as stored), with id 0: before every transition.

use serde_json::json;

use crate::domain::{Message, MessageEvent};

/// The id of a derived `created` entry: ids only order a message's trail, and this one
/// comes first.
pub(crate) const CREATED_EVENT_ID: i64 = 0;

/// The trail of `message` with its `created` entry first. `events` are its stored rows in
/// id order, read *after* the message: a transition written in between then shows in
/// `events`, whose first `from_status` is still the status the message was stored with.
pub(crate) fn with_creation(
    message: Option<&Message>,
    mut events: Vec<MessageEvent>,
) -> Vec<MessageEvent> {
    let Some(message) = message else {
        return events;
    };
    if events.iter().any(|e| e.event == "created") {
        return events;
    }
    let stored_as = events
        .iter()
        .find_map(|e| e.from_status)
        .unwrap_or(message.status);
    events.insert(
        0,
        MessageEvent {
            id: CREATED_EVENT_ID,
            message_id: message.id,
            event: "created".to_owned(),
            from_status: None,
            to_status: Some(stored_as),
            detail: json!({}),
            created_at: message.created_at,
        },
    );
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{MessageStatus, NewMessage, OutboundContent};
    use crate::store::batch::created_message;
    use uuid::Uuid;

    fn message() -> Message {
        let new = NewMessage::outbound(OutboundContent {
            from: Some("+15551234567".into()),
            to: Some("+15559876543".into()),
            body: Some("hi".into()),
            ..OutboundContent::default()
        })
        .unwrap();
        created_message(&new, Uuid::now_v7())
    }

    fn transition(m: &Message, id: i64, from: MessageStatus, to: MessageStatus) -> MessageEvent {
        MessageEvent {
            id,
            message_id: m.id,
            event: "status_changed".into(),
            from_status: Some(from),
            to_status: Some(to),
            detail: json!({}),
            created_at: m.created_at,
        }
    }

    #[test]
    fn the_creation_entry_comes_first_with_the_status_the_message_was_stored_with() {
        let mut m = message();
        let trail = with_creation(Some(&m), Vec::new());
        assert_eq!(trail.len(), 1);
        assert_eq!(trail[0].event, "created");
        assert_eq!(trail[0].from_status, None);
        assert_eq!(trail[0].to_status, Some(MessageStatus::Pending));
        assert_eq!(trail[0].created_at, m.created_at);
        assert_eq!(trail[0].detail, json!({}));

        // Later transitions do not change what the message was stored as.
        m.status = MessageStatus::Sent;
        let stored = vec![
            transition(&m, 7, MessageStatus::Pending, MessageStatus::Sending),
            transition(&m, 9, MessageStatus::Sending, MessageStatus::Sent),
        ];
        let trail = with_creation(Some(&m), stored);
        assert_eq!(trail.len(), 3);
        assert_eq!(trail[0].to_status, Some(MessageStatus::Pending));
        assert!(trail.windows(2).all(|w| w[0].id < w[1].id));
    }

    #[test]
    fn a_stored_creation_row_is_shown_as_stored_and_no_message_adds_nothing() {
        let m = message();
        let mut created = transition(&m, 3, MessageStatus::Pending, MessageStatus::Pending);
        created.event = "created".into();
        created.from_status = None;
        let trail = with_creation(Some(&m), vec![created.clone()]);
        assert_eq!(trail.len(), 1);
        assert_eq!(trail[0].id, 3);
        assert!(with_creation(None, Vec::new()).is_empty());
    }
}
