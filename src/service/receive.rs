//! Receiving a message: an inbound SMS, MMS or email is validated, threaded into the
//! conversation of its two parties and stored through the batch writers (never queued).
//! A replay (same provider and provider id) stores nothing and is answered like the first
//! call. Used by the original API's `POST /api/webhooks/{sms,email}` and, through
//! [`super::webhook_intake`], by the provider callbacks.

use uuid::Uuid;

use super::{Context, ServiceError, compliance, ingest};
use crate::domain::{InboundContent, NewMessage, ValidationError};
use crate::store::Inserted;

/// What a receive did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub message_id: Uuid,
    /// A replay: the message was already stored.
    pub duplicate: bool,
}

/// Validates and stores one inbound message. `id_field` names the provider id in the
/// caller's payload, so a missing or bad one is reported under the name the client sent.
#[tracing::instrument(skip_all, fields(provider = %content.provider))]
pub async fn receive(
    ctx: Context<'_>,
    content: InboundContent,
    id_field: &'static str,
) -> Result<Received, ServiceError> {
    let message = NewMessage::inbound(content).map_err(|e| {
        if e.field == "provider_message_id" {
            ValidationError::new(id_field, e.reason)
        } else {
            e
        }
    })?;
    store(ctx, message).await
}

/// Stores an already validated inbound message.
pub async fn store(ctx: Context<'_>, message: NewMessage) -> Result<Received, ServiceError> {
    Ok(match ingest::submit(ctx, message).await? {
        Inserted::Created(m) => {
            compliance::confirm_keyword(ctx, &m).await;
            Received {
                message_id: m.id,
                duplicate: false,
            }
        }
        Inserted::Existing { message, .. } => Received {
            message_id: message.id,
            duplicate: true,
        },
    })
}
