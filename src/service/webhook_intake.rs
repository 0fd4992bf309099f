//! Provider callbacks: Twilio's form (or JSON) posts, SendGrid's Event Webhook and its
//! Inbound Parse. Every call is verified before anything is stored, logged durably with its
//! outcome (a refused one too, in [`reject`]), and idempotent: a replay changes nothing.
//! Work is bounded by the context's webhook permits so a storm of callbacks cannot take the
//! connections the send path needs.

use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use super::receive::{self, Received};
use super::{Context, Rejection, ServiceError};
use crate::domain::{InboundContent, MessageType, NewMessage};
use crate::observability::webhook_received;
use crate::store::{EventOutcome, ProviderEvent, WebhookLogEntry};
use crate::webhook::signature::{verify_twilio, verify_twilio_json};
use crate::webhook::{sendgrid, twilio};

/// One Twilio callback as it arrived.
#[derive(Debug, Clone, Copy)]
pub struct TwilioCall<'a> {
    /// Path and query of the request, appended to `WEBHOOK_PUBLIC_BASE_URL` for the
    /// signature.
    pub path_and_query: &'a str,
    /// The media type, lower-case, without parameters.
    pub content_type: &'a str,
    pub signature: Option<&'a str>,
    pub body: &'a [u8],
}

/// Verifies and applies a Twilio callback: a status callback becomes a receipt, an
/// inbound message is stored.
#[tracing::instrument(skip_all, fields(provider = "twilio"))]
pub async fn twilio(ctx: Context<'_>, call: TwilioCall<'_>) -> Result<(), ServiceError> {
    let settings = &ctx.settings.webhooks;
    let is_json = call.content_type == "application/json";
    let params = match call.content_type {
        "application/x-www-form-urlencoded" => url::form_urlencoded::parse(call.body)
            .into_owned()
            .collect(),
        "application/json" => json_params(call.body)?,
        _ => return Err(ServiceError::UnsupportedMediaType),
    };
    if settings.verify_signatures {
        let url = format!("{}{}", settings.public_base_url, call.path_and_query);
        let reason = match (&settings.twilio_auth_token, call.signature) {
            (None, _) => Some("TWILIO_AUTH_TOKEN is not configured"),
            (Some(_), None) => Some("X-Twilio-Signature is missing"),
            (Some(token), Some(signature)) => {
                let token = token.expose_secret();
                let valid = if is_json {
                    verify_twilio_json(token, &url, call.body, signature)
                } else {
                    verify_twilio(token, &url, &params, signature)
                };
                (!valid).then_some("X-Twilio-Signature does not match")
            }
        };
        if let Some(reason) = reason {
            return Err(reject(ctx, "twilio", "unverified", Rejection::Signature, reason).await);
        }
    }
    match twilio::parse(&params).map_err(|e| ServiceError::invalid("body", e.0))? {
        twilio::TwilioCallback::Status(event) => {
            let outcomes = apply(ctx, std::slice::from_ref(&event)).await?;
            let outcome = outcomes.first().map_or("none", |o| o.as_str());
            let (sid, status) = (&event.provider_message_id, &event.event);
            if outcome == EventOutcome::UnknownMessage.as_str() {
                tracing::warn!(sid = %sid, status = %status, "Twilio status callback for an unknown message (kept until its outcome is recorded)");
            } else {
                tracing::info!(sid = %sid, status = %status, outcome, "Twilio status callback");
            }
        }
        twilio::TwilioCallback::Inbound(inbound) => {
            let content_types: Vec<Value> = inbound.media.iter().map(|(_, t)| json!(t)).collect();
            let attachments: Vec<String> = inbound.media.into_iter().map(|(url, _)| url).collect();
            let content = InboundContent {
                kind: if attachments.is_empty() {
                    MessageType::Sms
                } else {
                    MessageType::Mms
                },
                from: Some(inbound.from),
                to: Some(inbound.to),
                body: inbound.body,
                subject: None,
                attachments,
                provider: "twilio".to_owned(),
                provider_message_id: Some(inbound.message_sid),
                provider_timestamp: None,
                metadata: Some(json!({ "media_content_types": content_types })),
            };
            receive_from_provider(ctx, "twilio", content, settings.verify_signatures).await?;
        }
    }
    Ok(())
}

/// A JSON object's members as Twilio's form parameters (strings as they are, other values
/// as JSON text).
fn json_params(body: &[u8]) -> Result<Vec<(String, String)>, ServiceError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ServiceError::MalformedJson(e.to_string()))?;
    let object = value
        .as_object()
        .ok_or_else(|| ServiceError::invalid("body", "must be a JSON object"))?;
    Ok(object
        .iter()
        .map(|(k, v)| {
            let v = v
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string());
            (k.clone(), v)
        })
        .collect())
}

/// One post of SendGrid's Event Webhook as it arrived.
#[derive(Debug, Clone, Copy)]
pub struct SendgridEventsCall<'a> {
    pub signature: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub body: &'a [u8],
}

/// What a post of events did, event by event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EventSummary {
    pub received: usize,
    pub applied: usize,
    pub recorded: usize,
    pub duplicate: usize,
    pub unknown_message: usize,
    pub skipped: usize,
}

/// Verifies a post of SendGrid events (signed with the account's key, recent timestamp)
/// and applies them as receipts.
#[tracing::instrument(skip_all, fields(provider = "sendgrid"))]
pub async fn sendgrid_events(
    ctx: Context<'_>,
    call: SendgridEventsCall<'_>,
) -> Result<EventSummary, ServiceError> {
    let settings = &ctx.settings.webhooks;
    if settings.verify_signatures {
        let reason = match (
            &settings.sendgrid_public_key,
            call.signature,
            call.timestamp,
        ) {
            (None, _, _) => Some("SENDGRID_WEBHOOK_PUBLIC_KEY is not configured"),
            (Some(_), None, _) | (Some(_), _, None) => {
                Some("signature or timestamp header is missing")
            }
            (Some(key), Some(signature), Some(timestamp)) => {
                match timestamp.trim().parse::<i64>() {
                    Err(_) => Some("the timestamp is not a number"),
                    Ok(ts)
                        if (OffsetDateTime::now_utc().unix_timestamp() - ts).unsigned_abs()
                            > settings.max_clock_skew.as_secs() =>
                    {
                        Some("the timestamp is stale")
                    }
                    Ok(_) => (!key.verify(timestamp.trim(), call.body, signature))
                        .then_some("the signature does not match"),
                }
            }
        };
        if let Some(reason) = reason {
            return Err(reject(ctx, "sendgrid", "unverified", Rejection::Signature, reason).await);
        }
    }
    let value: Value = serde_json::from_slice(call.body)
        .map_err(|e| ServiceError::MalformedJson(e.to_string()))?;
    let (events, skipped) =
        sendgrid::parse_events(&value).map_err(|reason| ServiceError::invalid("body", reason))?;
    let outcomes = apply(ctx, &events).await?;
    super::compliance::from_sendgrid_events(ctx, &value).await?;
    let count = |o: EventOutcome| outcomes.iter().filter(|x| **x == o).count();
    let summary = EventSummary {
        received: events.len() + skipped,
        applied: count(EventOutcome::Applied),
        recorded: count(EventOutcome::Recorded),
        duplicate: count(EventOutcome::Duplicate),
        unknown_message: count(EventOutcome::UnknownMessage),
        skipped,
    };
    tracing::info!(summary = ?summary, "SendGrid events");
    Ok(summary)
}

/// Applies receipts under the webhook concurrency limit.
async fn apply(
    ctx: Context<'_>,
    events: &[ProviderEvent],
) -> Result<Vec<EventOutcome>, ServiceError> {
    let _permit = ctx.webhook_permit().await?;
    let outcomes = ctx.store.apply_provider_events(events).await?;
    for (event, outcome) in events.iter().zip(&outcomes) {
        webhook_received(event.provider, outcome.as_str());
    }
    if outcomes.contains(&EventOutcome::UnknownMessage) {
        purge_unmatched(ctx).await;
    }
    Ok(outcomes)
}

/// When this process last purged kept early receipts (unix seconds).
static LAST_PURGE: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Housekeeping of early receipts, done where they are kept: at most once a minute per
/// process, receipts kept longer than `UNMATCHED_RECEIPT_TTL` are dropped (best effort).
async fn purge_unmatched(ctx: Context<'_>) {
    use std::sync::atomic::Ordering;
    let now = OffsetDateTime::now_utc();
    let last = LAST_PURGE.load(Ordering::Relaxed);
    if now.unix_timestamp() - last < 60
        || LAST_PURGE
            .compare_exchange(
                last,
                now.unix_timestamp(),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_err()
    {
        return;
    }
    match ctx
        .store
        .purge_unmatched_receipts(now - ctx.settings.receipts.unmatched_ttl)
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            count = n,
            "purged unmatched receipts past UNMATCHED_RECEIPT_TTL"
        ),
        Err(e) => {
            tracing::warn!(error = %format!("{:#}", anyhow::Error::from(e)), "could not purge unmatched receipts")
        }
    }
}

/// Stores an inbound message a provider posted and logs the call with its outcome; an
/// invalid message is logged as such and refused.
pub async fn receive_from_provider(
    ctx: Context<'_>,
    provider: &'static str,
    content: InboundContent,
    verified: bool,
) -> Result<Uuid, ServiceError> {
    let dedupe_key = content.provider_message_id.clone();
    let entry = |outcome: &str, message_id: Option<Uuid>, detail: Value| WebhookLogEntry {
        provider,
        kind: "inbound",
        dedupe_key: dedupe_key.clone(),
        verified,
        outcome: outcome.to_owned(),
        message_id,
        detail,
    };
    let message = match NewMessage::inbound(content) {
        Ok(m) => m,
        Err(e) => {
            webhook_received(provider, "invalid");
            let detail = json!({ "field": e.field, "reason": e.reason });
            log_quietly(ctx, &entry("invalid", None, detail)).await;
            return Err(e.into());
        }
    };
    let _permit = ctx.webhook_permit().await?;
    let Received {
        message_id,
        duplicate,
    } = receive::store(ctx, message).await?;
    let outcome = if duplicate { "duplicate" } else { "stored" };
    ctx.store
        .log_webhook(&entry(outcome, Some(message_id), json!({})))
        .await?;
    webhook_received(provider, outcome);
    Ok(message_id)
}

/// Refuses a call that failed verification: counted, logged (best effort: the refusal
/// stands even if the log cannot be written) and returned as the error to answer with.
pub async fn reject(
    ctx: Context<'_>,
    provider: &'static str,
    kind: &'static str,
    rejection: Rejection,
    reason: &'static str,
) -> ServiceError {
    tracing::warn!(provider, reason, "webhook rejected");
    webhook_received(provider, "rejected");
    let entry = WebhookLogEntry {
        provider,
        kind,
        dedupe_key: None,
        verified: false,
        outcome: "rejected".into(),
        message_id: None,
        detail: json!({ "reason": reason }),
    };
    log_quietly(ctx, &entry).await;
    ServiceError::Rejected { rejection, reason }
}

async fn log_quietly(ctx: Context<'_>, entry: &WebhookLogEntry) {
    if let Err(e) = ctx.store.log_webhook(entry).await {
        tracing::warn!(error = %format!("{:#}", anyhow::Error::from(e)), outcome = %entry.outcome, "could not log a webhook");
    }
}

/// The delivery log operators read, newest first, optionally for one provider.
pub async fn deliveries(
    ctx: Context<'_>,
    provider: Option<&str>,
    page: crate::store::Page,
) -> Result<(Vec<crate::store::WebhookDelivery>, i64), ServiceError> {
    Ok(ctx.store.webhook_deliveries(provider, page).await?)
}
