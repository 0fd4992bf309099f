//! Reconciling SendGrid sends through their events. Every SendGrid event echoes our id
//! (`custom_args.message_id`, a top-level `message_id`). An event whose `sg_message_id`
//! matches no message but that names one of our outbound emails without a provider id (its
//! worker died after SendGrid accepted it, before the outcome was written) proves the send:
//! the receipt path records that message as `sent` with the provider id, in its own
//! transaction, and then applies the event as usual.

use std::collections::HashSet;

use serde_json::Value;
use uuid::Uuid;

use super::StoreResult;
use super::webhooks::{JsonRow, ProviderEvent, ReceiptWriter};
use crate::domain::{MessageStatus, MessageType};

/// The provider whose events are matched by our id.
pub(crate) const PROVIDER: &str = "sendgrid";

/// One message to record as `sent` with the provider id an event showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Adoption {
    pub message_id: Uuid,
    pub provider_message_id: String,
}

/// `[message id, provider message id]`
impl JsonRow for Adoption {
    fn json(&self) -> Value {
        serde_json::json!([self.message_id.to_string(), self.provider_message_id])
    }
}

/// The statuses a message may be recorded `sent` from by an event (the lifecycle table's
/// predecessors of `sent`: `pending`, `sending`, `retry`), as the statement's guard values.
/// The statement also requires an outbound email with no provider id yet.
pub(crate) fn adoptable_statuses() -> Vec<&'static str> {
    MessageStatus::predecessors(MessageStatus::Sent)
        .into_iter()
        .map(MessageStatus::as_str)
        .collect()
}

/// The message type an event may adopt.
pub(crate) const ADOPTABLE_TYPE: MessageType = MessageType::Email;

/// The matching rule's event side: SendGrid events that name one of our ids; each message
/// and each provider id once, the first event wins. The message side (an outbound email
/// without a provider id, in an adoptable status, and no message with this provider id) is
/// the writer's statement guard ([`ReceiptWriter::adopt_sends`]).
pub(crate) fn adoptions(events: &[ProviderEvent]) -> Vec<Adoption> {
    let mut messages = HashSet::new();
    let mut provider_ids = HashSet::new();
    events
        .iter()
        .filter(|e| e.provider == PROVIDER)
        .filter_map(|e| {
            let id = e.detail.get("message_id")?.as_str()?;
            let message_id = Uuid::parse_str(id).ok()?;
            Some(Adoption {
                message_id,
                provider_message_id: e.provider_message_id.clone(),
            })
        })
        .filter(|a| {
            messages.insert(a.message_id) && provider_ids.insert(a.provider_message_id.clone())
        })
        .collect()
}

/// The receipt path's hook, before it reads the messages its events name: records the
/// messages the events prove sent, then applies the receipts kept for their provider ids
/// (early receipts that came without our id). Returns the provider ids recorded.
pub(crate) async fn adopt<W: ReceiptWriter>(
    w: &mut W,
    events: &[ProviderEvent],
) -> StoreResult<Vec<String>> {
    let wanted = adoptions(events);
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let adopted = w.adopt_sends(&wanted).await?;
    let ids: Vec<&str> = adopted.iter().map(String::as_str).collect();
    super::webhooks::apply_kept_receipts(w, &ids).await?;
    for _ in &adopted {
        // Counted when decided; a batch whose transaction fails is retried by SendGrid.
        crate::observability::message_reconciled(ADOPTABLE_TYPE, PROVIDER);
    }
    if !adopted.is_empty() {
        tracing::info!(
            count = adopted.len(),
            "SendGrid events showed interrupted sends; recorded as sent without sending again"
        );
    }
    Ok(adopted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(provider: &'static str, pmid: &str, message_id: Option<&str>) -> ProviderEvent {
        let mut detail = serde_json::json!({ "sg_event_id": "e" });
        if let Some(id) = message_id {
            detail["message_id"] = id.into();
        }
        ProviderEvent {
            provider,
            dedupe_key: format!("{pmid}:{message_id:?}"),
            provider_message_id: pmid.into(),
            event: "delivered".into(),
            target: Some(MessageStatus::Delivered),
            error: None,
            detail,
        }
    }

    #[test]
    fn only_sendgrid_events_naming_one_of_our_messages_are_adopted_once() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let (a_s, b_s) = (a.to_string(), b.to_string());
        let events = [
            // Twilio events are matched by sid only.
            event("twilio", "SM1", Some(&a_s)),
            // No id of ours, or not an id: kept as an early receipt as before.
            event("sendgrid", "x1", None),
            event("sendgrid", "x2", Some("not-a-uuid")),
            event("sendgrid", "sg-a", Some(&a_s)),
            // A second event of the same message: once.
            event("sendgrid", "sg-a", Some(&a_s)),
            // Another provider id naming the same message: the first wins.
            event("sendgrid", "sg-a2", Some(&a_s)),
            event("sendgrid", "sg-b", Some(&b_s)),
        ];
        assert_eq!(
            adoptions(&events),
            [
                Adoption {
                    message_id: a,
                    provider_message_id: "sg-a".into()
                },
                Adoption {
                    message_id: b,
                    provider_message_id: "sg-b".into()
                },
            ]
        );
    }

    #[test]
    fn a_message_is_adopted_from_pending_sending_or_retry_only() {
        let mut statuses = adoptable_statuses();
        statuses.sort_unstable();
        assert_eq!(statuses, ["pending", "retry", "sending"]);
    }
}
