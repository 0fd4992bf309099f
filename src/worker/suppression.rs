//! The suppression list at delivery time: a message whose recipient joined the list after it
//! was accepted fails with `recipient_suppressed` instead of reaching the provider (one
//! lookup per claimed batch), and an SMTP 5.1.x refusal puts the address on the list.

use std::collections::HashMap;
use std::time::Duration;

use time::OffsetDateTime;
use tracing::{info, warn};
use uuid::Uuid;

use crate::domain::compliance::{
    SuppressedAddress, SuppressionCause, SuppressionReason, is_reply, smtp_refusal_suppresses,
};
use crate::domain::{Direction, ErrorInfo, Message, MessageType, address_mask};
use crate::observability;
use crate::store::{Outcome, Store, Suppressed, suppressions_of};

/// The wire code of a message held back because its recipient is suppressed.
pub const SUPPRESSED_CODE: &str = "recipient_suppressed";

/// If the list cannot be read, the batch waits this long rather than risk a send.
const LOOKUP_RETRY: Duration = Duration::from_secs(5);

/// The outcomes of the messages that must not be sent, by id: failed for a suppressed
/// recipient, deferred (not counted as a retry) for every message when the list cannot
/// be read.
pub async fn held_back(store: &dyn Store, messages: &[Message]) -> HashMap<Uuid, Outcome> {
    let keys: Vec<Option<SuppressedAddress>> = messages
        .iter()
        .map(|m| {
            (m.direction == Direction::Outbound && !is_reply(&m.metadata))
                .then(|| SuppressedAddress::of_stored(&m.to))
                .flatten()
        })
        .collect();
    let found = match suppressions_of(store, &keys).await {
        Ok(found) => found,
        Err(e) => {
            warn!(error = %format!("{:#}", anyhow::Error::from(e)), count = messages.len(), "could not read the suppression list; deferring the batch");
            return messages
                .iter()
                .map(|m| {
                    let outcome = Outcome::Deferred {
                        id: m.id,
                        reason: "the suppression list could not be read".into(),
                        next_attempt_at: OffsetDateTime::now_utc() + LOOKUP_RETRY,
                    };
                    (m.id, outcome)
                })
                .collect();
        }
    };
    messages
        .iter()
        .zip(found)
        .filter_map(|(m, s)| {
            let s = s?;
            info!(message_id = %m.id, to = %address_mask(&m.to), reason = s.reason.as_str(), "Recipient suppressed; message not sent");
            observability::message_failed(m.kind, "none", SUPPRESSED_CODE);
            let outcome = Outcome::Failed {
                id: m.id,
                provider: None,
                error: ErrorInfo {
                    code: SUPPRESSED_CODE.into(),
                    message: format!(
                        "the recipient is on the suppression list ({})",
                        s.reason.as_str()
                    ),
                },
            };
            Some((m.id, outcome))
        })
        .collect()
}

/// Puts on the list the email recipients an SMTP server refused as unknown (5.1.x). Best
/// effort: the message's own failure is recorded either way.
pub async fn learn_from_refusals(store: &dyn Store, messages: &[Message], outcomes: &[Outcome]) {
    for outcome in outcomes {
        let Outcome::Failed {
            id,
            provider: Some(provider),
            error,
        } = outcome
        else {
            continue;
        };
        // Behind failover the provider is named by its list (`sendgrid,smtp`).
        let by_smtp = provider.split(',').any(|p| p == "smtp");
        if !by_smtp || !smtp_refusal_suppresses(&error.code, &error.message) {
            continue;
        }
        let Some(address) = messages
            .iter()
            .find(|m| m.id == *id && m.kind == MessageType::Email)
            .and_then(|m| SuppressedAddress::of_stored(&m.to))
        else {
            continue;
        };
        let cause = SuppressionCause::ProviderEvent {
            provider: "smtp".into(),
            id: id.to_string(),
        };
        match store
            .suppress(&address, SuppressionReason::Bounced, &cause)
            .await
        {
            Ok(Suppressed::Added(_)) => {
                info!(message_id = %id, to = %address_mask(address.as_str()), "SMTP refused the mailbox; address suppressed")
            }
            Ok(Suppressed::Existing(_)) => {}
            Err(e) => {
                warn!(error = %format!("{:#}", anyhow::Error::from(e)), message_id = %id, "could not suppress a refused address")
            }
        }
    }
}
