//! The use-cases, one file each. They sit between the adapters (store, queue, providers,
//! webhook decoding) and the callers (the HTTP handlers, the worker, the command line):
//! a handler extracts its input, calls one function here and shapes the answer.
//!
//! - [`ingest`]: collecting concurrent writes into one batch (the group commit) and
//!   [`ingest::submit`], the one way a new message (sent or received) is stored and logged;
//! - [`send`]: an outbound message, its idempotency key and request fingerprint;
//! - [`receive`]: an inbound message from the original webhook API or a provider;
//! - [`deliver_now`]: synchronous mode, claim, send and settle within the request;
//! - [`schedule`]: canceling a scheduled send before it is due;
//! - [`redrive`]: failed messages back in the queue (retry endpoint and `dlq redrive`);
//! - [`webhook_intake`]: provider callbacks, verified, then applied as receipts or inbound
//!   messages; refused calls logged in one place;
//! - [`inbound_email`]: SendGrid Inbound Parse posts reduced to one email, attachments
//!   stored when configured;
//! - [`messages`] and [`conversations`]: reads and edits whose rules are more than one
//!   store call;
//! - [`search_index`]: the API's merge of the full-text index's pending list.
//!
//! Nothing here knows HTTP; errors are [`ServiceError`]s.

pub mod attachment_urls;
pub mod compliance;
pub mod conversations;
pub mod correct_status;
pub mod deliver_now;
pub mod group_commit;
pub mod inbound_email;
pub mod ingest;
pub mod listing;
pub mod messages;
pub mod receive;
pub mod redrive;
pub mod schedule;
pub mod search_index;
pub mod send;
pub mod webhook_endpoints;
pub mod webhook_intake;

use tokio::sync::{Semaphore, SemaphorePermit};
use uuid::Uuid;

use crate::config::Settings;
use crate::domain::{MessageStatus, TransitionError, ValidationError};
use crate::queue::Queue;
use crate::store::{Store, StoreError};
use crate::worker::Deliverer;
use ingest::{IngestError, Ingestor};

/// What the use-cases run on: the backends and settings of the process.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub store: &'a dyn Store,
    pub queue: &'a dyn Queue,
    pub ingest: &'a Ingestor,
    pub deliverer: &'a Deliverer,
    pub settings: &'a Settings,
    /// Bounds concurrent webhook work so callbacks cannot starve the send path of
    /// database connections.
    pub webhook_permits: &'a Semaphore,
}

impl<'a> Context<'a> {
    /// A webhook work slot; refused only while shutting down.
    async fn webhook_permit(self) -> Result<SemaphorePermit<'a>, ServiceError> {
        self.webhook_permits
            .acquire()
            .await
            .map_err(|_| ServiceError::shutting_down())
    }
}

/// Why a provider callback was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// A signed callback whose signature is missing or wrong.
    Signature,
    /// An Inbound Parse post without the shared secret.
    Secret,
}

/// How a use-case fails. Callers map each kind to their own answer (an HTTP status, an
/// exit code); causes of internal errors are kept, never shown.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("{resource} not found")]
    NotFound { resource: &'static str },
    #[error("the Idempotency-Key was already used for a different request (message {existing})")]
    IdempotencyConflict { existing: Uuid },
    #[error("the recipient {} is on the suppression list ({})", crate::domain::address_mask(&.0.address), .0.reason.as_str())]
    Suppressed(crate::domain::compliance::Suppression),
    #[error("the message is {status}; only a failed message can be retried")]
    NotFailed { status: MessageStatus },
    #[error("the message is {status}; only a scheduled message can be canceled")]
    NotCancelable { status: MessageStatus },
    /// A status change the lifecycle does not allow (an operator's correction).
    #[error(transparent)]
    InvalidTransition(#[from] TransitionError),
    #[error("webhook refused: {reason}")]
    Rejected {
        rejection: Rejection,
        reason: &'static str,
    },
    #[error("{dependency} is unavailable")]
    Unavailable {
        dependency: &'static str,
        reason: Option<&'static str>,
    },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ServiceError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid(ValidationError::new(field, reason))
    }

    pub fn database_unavailable() -> Self {
        Self::Unavailable {
            dependency: "database",
            reason: None,
        }
    }

    pub fn shutting_down() -> Self {
        Self::Unavailable {
            dependency: "api",
            reason: Some("shutting down"),
        }
    }

    /// An error from a step that reports `anyhow` errors: a database outage somewhere in
    /// its chain is still an outage, anything else is internal.
    pub fn from_anyhow(e: anyhow::Error) -> Self {
        let outage = e.chain().any(|c| {
            matches!(
                c.downcast_ref::<StoreError>(),
                Some(StoreError::Unavailable(_))
            )
        });
        if outage {
            tracing::warn!(error = %format!("{e:#}"), "database unavailable");
            Self::database_unavailable()
        } else {
            Self::Internal(e)
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %format!("{cause:#}"), "database unavailable");
                Self::database_unavailable()
            }
            StoreError::Other(cause) => Self::Internal(cause),
        }
    }
}

impl From<IngestError> for ServiceError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Unavailable => Self::database_unavailable(),
            IngestError::ShuttingDown => Self::shutting_down(),
            IngestError::Suppressed(s) => Self::Suppressed(s),
            IngestError::Failed => Self::Internal(anyhow::anyhow!(
                "storing the message failed (cause logged by the writer)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_inside_an_anyhow_chain_is_still_an_outage() {
        let outage = anyhow::Error::from(StoreError::Unavailable(anyhow::anyhow!("refused")))
            .context("recording outcomes");
        assert!(matches!(
            ServiceError::from_anyhow(outage),
            ServiceError::Unavailable {
                dependency: "database",
                ..
            }
        ));
        assert!(matches!(
            ServiceError::from_anyhow(anyhow::anyhow!("bug")),
            ServiceError::Internal(_)
        ));
    }
}
