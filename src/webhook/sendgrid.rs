//! SendGrid's Event Webhook, parsed into receipts.

use serde_json::{Value, json};

use crate::domain::{ErrorInfo, MessageStatus};
use crate::store::ProviderEvent;

/// Our lifecycle's view of a SendGrid event. `None`: recorded, no status change.
pub fn target_status(event: &str) -> Option<MessageStatus> {
    match event {
        "delivered" => Some(MessageStatus::Delivered),
        "bounce" | "dropped" => Some(MessageStatus::Failed),
        // processed, deferred, open, click, spamreport, unsubscribe, group_*: history only.
        _ => None,
    }
}

/// The stored `X-Message-Id` is the part of `sg_message_id` before the first dot.
pub fn message_id_prefix(sg_message_id: &str) -> &str {
    sg_message_id.split('.').next().unwrap_or(sg_message_id)
}

/// Events that cannot be correlated (no `sg_message_id` or `sg_event_id`) are counted and
/// skipped: SendGrid also sends events for mail not sent through us.
pub fn parse_events(body: &Value) -> Result<(Vec<ProviderEvent>, usize), String> {
    let list = body
        .as_array()
        .ok_or("the Event Webhook body must be a JSON array")?;
    let mut events = Vec::with_capacity(list.len());
    let mut skipped = 0;
    for raw in list {
        let field = |name: &str| {
            raw.get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let (Some(event), Some(event_id), Some(sg_message_id)) =
            (field("event"), field("sg_event_id"), field("sg_message_id"))
        else {
            skipped += 1;
            continue;
        };
        let reason = field("reason").or_else(|| field("response"));
        let error = match event {
            "bounce" | "dropped" => Some(ErrorInfo {
                code: field("type")
                    .filter(|_| event == "bounce")
                    .unwrap_or(event)
                    .to_owned(),
                message: reason.unwrap_or(event).to_owned(),
            }),
            _ => None,
        };
        let mut detail = json!({ "sg_event_id": event_id });
        for key in [
            "reason",
            "response",
            "status",
            "attempt",
            "url",
            "type",
            "timestamp",
            // Our id, sent as `custom_args.message_id` and echoed by every event.
            "message_id",
        ] {
            if let Some(v) = raw.get(key) {
                detail[key] = v.clone();
            }
        }
        events.push(ProviderEvent {
            provider: "sendgrid",
            dedupe_key: event_id.to_owned(),
            provider_message_id: message_id_prefix(sg_message_id).to_owned(),
            event: event.to_owned(),
            target: target_status(event),
            error,
            detail,
        });
    }
    Ok((events, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_correlate_by_message_id_prefix() {
        let body = json!([
            {"event": "delivered", "sg_event_id": "e1", "sg_message_id": "abc123.filter0001.16648.5515E0B88.0", "email": "x@example.com"},
            {"event": "bounce", "type": "blocked", "reason": "550 no such user", "sg_event_id": "e2", "sg_message_id": "abc123.filter0002"},
            {"event": "open", "sg_event_id": "e3", "sg_message_id": "abc123"},
            {"event": "processed", "sg_message_id": "abc123"}
        ]);
        let (events, skipped) = parse_events(&body).unwrap();
        assert_eq!(skipped, 1);
        assert!(events.iter().all(|e| e.provider_message_id == "abc123"));
        assert_eq!(events[0].target, Some(MessageStatus::Delivered));
        assert_eq!(events[1].target, Some(MessageStatus::Failed));
        assert_eq!(events[1].error.as_ref().unwrap().code, "blocked");
        assert_eq!(events[2].target, None);
    }

    #[test]
    fn the_body_must_be_an_array() {
        assert!(parse_events(&json!({"event": "delivered"})).is_err());
    }
}
