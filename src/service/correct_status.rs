//! An operator's status correction (`PATCH /api/v1/messages/{id}/status`): only the moves
//! the lifecycle table allows, recorded as a `corrected` event with the operator's reason.
//! A message put back to `pending` is enqueued again (the sweeper does it if that fails).

use tracing::{info, warn};
use uuid::Uuid;

use super::{Context, ServiceError};
use crate::domain::{Message, MessageStatus, TransitionError};
use crate::store::Correction;

/// Longest `reason` accepted, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// What the operator asked for, before validation.
#[derive(Debug, Clone)]
pub struct CorrectionRequest {
    pub status: Option<String>,
    pub reason: Option<String>,
}

/// The status a correction names, or a validation error naming `status`.
pub fn parse_status(raw: &str) -> Result<MessageStatus, ServiceError> {
    MessageStatus::parse(raw).ok_or_else(|| {
        let allowed: Vec<&str> = MessageStatus::ALL.iter().map(|s| s.as_str()).collect();
        ServiceError::invalid("status", format!("must be one of {}", allowed.join(", ")))
    })
}

fn check_reason(reason: Option<&str>) -> Result<Option<&str>, ServiceError> {
    match reason.map(str::trim) {
        Some(r) if r.chars().count() > MAX_REASON_CHARS => Err(ServiceError::invalid(
            "reason",
            format!("must be at most {MAX_REASON_CHARS} characters"),
        )),
        Some("") | None => Ok(None),
        Some(r) => Ok(Some(r)),
    }
}

#[tracing::instrument(skip_all, fields(message_id = %id))]
pub async fn correct(
    ctx: Context<'_>,
    id: Uuid,
    request: &CorrectionRequest,
) -> Result<Message, ServiceError> {
    let raw = request
        .status
        .as_deref()
        .ok_or_else(|| ServiceError::invalid("status", "is required"))?;
    let to = parse_status(raw)?;
    let reason = check_reason(request.reason.as_deref())?;
    let current = super::messages::get(ctx, id).await?;
    let from = current.status;
    from.transition_to(to)?;
    let correction = Correction {
        id,
        from,
        to,
        reason,
    };
    let Some(message) = ctx.store.correct_status(&correction).await? else {
        // Someone else moved it between our read and our update: the client sees where
        // it is now and may ask again.
        let now = super::messages::get(ctx, id).await?;
        return Err(ServiceError::InvalidTransition(TransitionError {
            from: now.status,
            to,
        }));
    };
    info!(from = %from, to = %to, "Message status corrected");
    if to == MessageStatus::Pending
        && let Err(e) = ctx.queue.enqueue_messages(&[&message]).await
    {
        warn!(error = %format!("{e:#}"), "could not enqueue the corrected message; the sweeper will");
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_status_names_the_field_and_the_choices() {
        match parse_status("lost") {
            Err(ServiceError::Invalid(v)) => {
                assert_eq!(v.field, "status");
                assert!(v.reason.contains("delivered"), "{}", v.reason);
            }
            other => panic!("expected a validation error, got {other:?}"),
        }
        assert_eq!(parse_status("failed").ok(), Some(MessageStatus::Failed));
    }

    #[test]
    fn a_blank_reason_is_none_and_a_long_one_is_refused() {
        assert_eq!(check_reason(Some("  ")).ok(), Some(None));
        assert_eq!(
            check_reason(Some(" late DLR ")).ok(),
            Some(Some("late DLR"))
        );
        let long = "x".repeat(MAX_REASON_CHARS + 1);
        assert!(matches!(
            check_reason(Some(&long)),
            Err(ServiceError::Invalid(v)) if v.field == "reason"
        ));
    }
}
