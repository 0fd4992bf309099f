//! Scheduled sends in the database: promoting the due ones to `pending` and canceling one
//! before it is due. Both are status-conditional writes, so several schedulers (one per
//! worker) never promote a message twice, and a cancel racing a promotion has one winner.

use async_trait::async_trait;
use uuid::Uuid;

use super::{StoreError, StoreResult, Stranded};
use crate::domain::{Message, MessageStatus};

#[async_trait]
pub trait ScheduleStore: Send + Sync + 'static {
    /// Moves up to `limit` scheduled messages whose `send_at` has come to `pending`, marks
    /// them enqueued now (the sweeper enqueues them again if the caller dies before it
    /// does), records the move in their audit trail and returns them, earliest due first.
    async fn promote_due(&self, limit: i64) -> StoreResult<Vec<Stranded>>;

    /// Cancels the message if it is still `scheduled` and returns it; `None` if it is not
    /// (or does not exist): the caller reads it to say which.
    async fn cancel_scheduled(&self, id: Uuid) -> StoreResult<Option<Message>>;
}

/// The move a promotion makes, as the lifecycle table allows it.
pub(crate) fn promotion() -> StoreResult<(MessageStatus, MessageStatus)> {
    allowed(MessageStatus::Scheduled, MessageStatus::Pending)
}

/// The move a cancel makes, as the lifecycle table allows it.
pub(crate) fn cancellation() -> StoreResult<(MessageStatus, MessageStatus)> {
    allowed(MessageStatus::Scheduled, MessageStatus::Canceled)
}

fn allowed(from: MessageStatus, to: MessageStatus) -> StoreResult<(MessageStatus, MessageStatus)> {
    from.transition_to(to)
        .map(|to| (from, to))
        .map_err(|e| StoreError::Other(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promotion_and_cancellation_start_from_scheduled() {
        assert_eq!(
            promotion().unwrap(),
            (MessageStatus::Scheduled, MessageStatus::Pending)
        );
        assert_eq!(
            cancellation().unwrap(),
            (MessageStatus::Scheduled, MessageStatus::Canceled)
        );
    }
}
