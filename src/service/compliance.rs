//! Compliance: the suppression list and what feeds it. Opt-out and opt-in keywords in
//! inbound SMS, SendGrid's bounce, complaint and unsubscribe events, and operators through
//! the API add or lift entries; the send path refuses a suppressed recipient (checked for
//! once per group-committed batch, see [`suppression_keys`]), and outbound sms/mms
//! bodies are sized here (smart encoding, the segment limit).

use serde_json::{Value, json};
use tracing::{info, warn};

use super::{Context, ServiceError, ingest};
use crate::config::Settings;
use crate::domain::compliance::{
    Keyword, REPLY_MARKER, SuppressedAddress, Suppression, SuppressionCause, SuppressionReason,
    is_reply, keyword, sendgrid_reason,
};
use crate::domain::segments::{count_segments, smart_encode};
use crate::domain::{
    ChannelFamily, Direction, Message, MessageType, NewMessage, OutboundContent, address_mask,
};
use crate::store::{Inserted, Page, Suppressed, SuppressionFilter};

/// Sizes an outbound sms/mms body: look-alikes replaced when smart encoding is on, then the
/// segment limit (sms). Refuses the reserved metadata key.
pub fn prepare_outbound(settings: &Settings, message: &mut NewMessage) -> Result<(), ServiceError> {
    if is_reply(&message.metadata) {
        return Err(ServiceError::invalid(
            "metadata",
            format!("{REPLY_MARKER} is reserved"),
        ));
    }
    shape_body(settings, message)
}

fn shape_body(settings: &Settings, message: &mut NewMessage) -> Result<(), ServiceError> {
    if message.kind == MessageType::Email {
        return Ok(());
    }
    let rules = &settings.compliance;
    if rules.sms_smart_encoding
        && let Some(body) = &message.body
    {
        message.body = Some(smart_encode(body));
    }
    if message.kind == MessageType::Sms {
        let count = count_segments(message.body.as_deref().unwrap_or_default());
        if count.segments > rules.sms_max_segments {
            return Err(ServiceError::invalid(
                "body",
                format!(
                    "takes {} {} segments; at most {} are allowed",
                    count.segments,
                    count.encoding.as_str(),
                    rules.sms_max_segments
                ),
            ));
        }
    }
    Ok(())
}

/// For each message of a batch, the address the suppression list is checked for: the
/// recipient of an outbound message that is not an automatic reply (which answers a keyword
/// and must reach even a recipient who just opted out); none for the others.
pub fn suppression_keys(batch: &[NewMessage]) -> Vec<Option<SuppressedAddress>> {
    batch
        .iter()
        .map(|m| {
            (m.direction == Direction::Outbound && !is_reply(&m.metadata))
                .then(|| SuppressedAddress::of(&m.to))
        })
        .collect()
}

/// Queues the configured confirmation of an inbound keyword (the list change itself was
/// made by the store in the transaction that stored the message).
pub async fn confirm_keyword(ctx: Context<'_>, message: &Message) {
    if message.direction != Direction::Inbound || message.kind == MessageType::Email {
        return;
    }
    let replies = &ctx.settings.compliance;
    let (kind, text) = match message.body.as_deref().and_then(keyword) {
        Some(Keyword::OptOut) => ("opt_out", &replies.opt_out_reply),
        Some(Keyword::OptIn) => ("opt_in", &replies.opt_in_reply),
        Some(Keyword::Help) => ("help", &replies.help_reply),
        None => return,
    };
    info!(message_id = %message.id, from = %address_mask(&message.from), keyword = kind, "Keyword received");
    if let Some(text) = text {
        send_reply(ctx, message, kind, text).await;
    }
}

/// Queues a keyword's confirmation from the number that received it. Best effort: the
/// keyword itself is already applied.
async fn send_reply(ctx: Context<'_>, inbound: &Message, kind: &str, text: &str) {
    let content = OutboundContent {
        from: Some(inbound.to.clone()),
        to: Some(inbound.from.clone()),
        kind: Some(MessageType::Sms.as_str().to_owned()),
        body: Some(text.to_owned()),
        ..Default::default()
    };
    let mut reply = match NewMessage::outbound(content) {
        Ok(m) => m,
        Err(e) => {
            warn!(field = %e.field, reason = %e.reason, "keyword reply not sent: invalid");
            return;
        }
    };
    reply.metadata = json!({ REPLY_MARKER: kind, "in_reply_to": inbound.id });
    // One reply per keyword message, even if it is received twice.
    reply.idempotency_key = Some(format!("{REPLY_MARKER}:{}", inbound.id));
    if let Err(e) = shape_body(ctx.settings, &mut reply) {
        warn!(error = %e, "keyword reply not sent");
        return;
    }
    match ingest::submit(ctx, reply).await {
        Ok(Inserted::Created(m)) => {
            info!(message_id = %m.id, in_reply_to = %inbound.id, kind, "Keyword reply queued")
        }
        Ok(Inserted::Existing { .. }) => {}
        Err(e) => warn!(error = %e, kind, "keyword reply not queued"),
    }
}

/// Suppresses the recipients of SendGrid events that say the address must not be mailed
/// again (hard bounces, drops for bounced or invalid addresses, spam reports,
/// unsubscribes). Returns how many addresses joined the list.
pub async fn from_sendgrid_events(ctx: Context<'_>, events: &Value) -> Result<usize, ServiceError> {
    let mut added = 0;
    for raw in events.as_array().map(Vec::as_slice).unwrap_or_default() {
        let field = |name: &str| {
            raw.get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let Some(event) = field("event") else {
            continue;
        };
        let Some(reason) = sendgrid_reason(event, field("type"), field("reason")) else {
            continue;
        };
        let Some(address) = field("email")
            .and_then(|e| SuppressedAddress::parse(e).ok())
            .filter(|a| a.channel() == ChannelFamily::Email)
        else {
            continue;
        };
        let cause = SuppressionCause::ProviderEvent {
            provider: "sendgrid".into(),
            id: field("sg_event_id").unwrap_or(event).to_owned(),
        };
        if let Suppressed::Added(_) = ctx.store.suppress(&address, reason, &cause).await? {
            info!(email = %address_mask(address.as_str()), event, reason = reason.as_str(), "Recipient suppressed by a SendGrid event");
            added += 1;
        }
    }
    Ok(added)
}

/// `GET /api/v1/suppressions`.
pub async fn list(
    ctx: Context<'_>,
    filter: &SuppressionFilter,
    page: Page,
) -> Result<(Vec<Suppression>, i64), ServiceError> {
    Ok(ctx.store.list_suppressions(filter, page).await?)
}

/// The address a client named, normalised; a bad one is a 422 naming `field`.
pub fn parse_address(field: &'static str, raw: &str) -> Result<SuppressedAddress, ServiceError> {
    SuppressedAddress::parse(raw).map_err(|reason| ServiceError::invalid(field, reason))
}

/// `POST /api/v1/suppressions`: adds an address (`manual` unless a reason is given).
pub async fn add(
    ctx: Context<'_>,
    address: Option<&str>,
    reason: Option<&str>,
) -> Result<Suppressed, ServiceError> {
    let address = address
        .filter(|a| !a.trim().is_empty())
        .ok_or_else(|| ServiceError::invalid("address", "is required"))?;
    let address = parse_address("address", address)?;
    let reason = match reason {
        None => SuppressionReason::Manual,
        Some(raw) => SuppressionReason::parse(raw).ok_or_else(|| {
            ServiceError::invalid(
                "reason",
                "must be one of opted_out, bounced, complained, unsubscribed, manual",
            )
        })?,
    };
    let done = ctx
        .store
        .suppress(&address, reason, &SuppressionCause::Api)
        .await?;
    if let Suppressed::Added(_) = done {
        info!(address = %address_mask(address.as_str()), reason = reason.as_str(), "Address suppressed through the API");
    }
    Ok(done)
}

/// `DELETE /api/v1/suppressions/{address}`: lifts an entry; not found if absent.
pub async fn remove(ctx: Context<'_>, raw: &str) -> Result<Suppression, ServiceError> {
    let address = parse_address("address", raw)?;
    let removed = ctx
        .store
        .unsuppress(&address, &SuppressionCause::Api)
        .await?
        .ok_or(ServiceError::NotFound {
            resource: "suppression",
        })?;
    info!(address = %address_mask(address.as_str()), "Suppression lifted through the API");
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Env;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_env(&Env::from_pairs(pairs.iter().copied())).unwrap()
    }

    fn sms(body: &str) -> NewMessage {
        NewMessage::outbound(OutboundContent {
            from: Some("+15551234567".into()),
            to: Some("+15559876543".into()),
            body: Some(body.into()),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn smart_encoding_is_off_by_default_and_replaces_look_alikes_when_on() {
        let body = "\u{201C}Hi\u{201D} \u{2014} it\u{2019}s here";
        let mut m = sms(body);
        prepare_outbound(&settings(&[]), &mut m).unwrap();
        assert_eq!(m.body.as_deref(), Some(body));
        let mut m = sms(body);
        prepare_outbound(&settings(&[("SMS_SMART_ENCODING", "true")]), &mut m).unwrap();
        assert_eq!(m.body.as_deref(), Some("\"Hi\" - it's here"));
    }

    #[test]
    fn the_segment_limit_names_the_body() {
        let s = settings(&[("SMS_MAX_SEGMENTS", "2")]);
        assert!(prepare_outbound(&s, &mut sms(&"a".repeat(306))).is_ok());
        let Err(ServiceError::Invalid(e)) = prepare_outbound(&s, &mut sms(&"a".repeat(307))) else {
            panic!("expected a validation error");
        };
        assert_eq!(e.field, "body");
    }

    #[test]
    fn the_reply_marker_is_reserved() {
        let mut m = sms("hi");
        m.metadata = json!({ REPLY_MARKER: "opt_out" });
        assert!(prepare_outbound(&settings(&[]), &mut m).is_err());
    }
}
