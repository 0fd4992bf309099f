//! The worker's moves, decided once for every backend: which statuses a claim may take a
//! message from, what a redrive requires, and the columns each send outcome writes. The
//! lifecycle table in `domain` is the judge; the statements' guards follow it.

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::{Outcome, Settlement, StoreError, StoreResult};
use crate::domain::{ErrorInfo, MessageStatus};

/// The error code a deferred (paced) message carries until its attempt.
pub(crate) const DEFERRED_CODE: &str = "paced";

/// The error code of a deferral: a reason written `<code>: <text>` with a known code
/// (`circuit_open`: every provider's circuit is open; `reconcile`: the provider could not be
/// asked whether it already has the message) keeps it; anything else is the pace's.
fn deferral_code(reason: &str) -> &str {
    match reason.split_once(": ") {
        Some((code @ ("circuit_open" | "reconcile"), _)) => code,
        _ => DEFERRED_CODE,
    }
}

/// The statuses a claim may move to `sending`, as the values of the statement's guard.
pub(crate) fn claimable_statuses() -> Vec<&'static str> {
    MessageStatus::predecessors(MessageStatus::Sending)
        .into_iter()
        .map(MessageStatus::as_str)
        .collect()
}

/// The audit detail of a claim taking a message from `old`: a reclaim says so.
pub(crate) fn claim_detail(old: MessageStatus) -> Value {
    if old == MessageStatus::Sending {
        serde_json::json!({ "reclaimed": true })
    } else {
        serde_json::json!({})
    }
}

/// The status a redrive takes messages from (to `pending`), once the lifecycle agrees.
pub(crate) fn redrive_from() -> StoreResult<MessageStatus> {
    let from = MessageStatus::Failed;
    from.transition_to(MessageStatus::Pending)
        .map_err(|e| StoreError::Other(e.into()))?;
    Ok(from)
}

/// What one outcome writes to its message: `None` keeps the stored value (provider,
/// provider id, segments), every other field is written as it is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OutcomeRow {
    pub id: Uuid,
    /// The claim the outcome belongs to: the row is written only while it holds the message.
    pub token: Uuid,
    pub status: MessageStatus,
    pub provider: Option<String>,
    pub provider_message_id: Option<String>,
    pub error: Option<ErrorInfo>,
    pub next_attempt_at: Option<OffsetDateTime>,
    pub num_segments: Option<i32>,
    /// A deferral (pacing) was not an attempt and does not count as a retry.
    pub attempted: bool,
}

impl OutcomeRow {
    pub(crate) fn error_code(&self) -> Option<&str> {
        self.error.as_ref().map(|e| e.code.as_str())
    }

    pub(crate) fn error_message(&self) -> Option<&str> {
        self.error.as_ref().map(|e| e.message.as_str())
    }

    /// The audit detail of the move, without empty fields (as PostgreSQL's
    /// `jsonb_strip_nulls(jsonb_build_object(…))` over the same columns).
    pub(crate) fn detail(&self) -> anyhow::Result<Value> {
        let mut detail = Map::new();
        let mut put = |k: &str, v: Option<&str>| {
            if let Some(v) = v {
                detail.insert(k.to_owned(), Value::String(v.to_owned()));
            }
        };
        put("provider", self.provider.as_deref());
        put("provider_message_id", self.provider_message_id.as_deref());
        put("error_code", self.error_code());
        put("error_message", self.error_message());
        let next = self
            .next_attempt_at
            .map(|t| t.format(&Rfc3339))
            .transpose()?;
        put("next_attempt_at", next.as_deref());
        Ok(Value::Object(detail))
    }
}

/// The rows the outcomes of several claims write, in input order. Every outcome is a move
/// out of `sending`; one the lifecycle table refuses fails the whole batch.
pub(crate) fn plan_outcomes(settlements: &[Settlement]) -> anyhow::Result<Vec<OutcomeRow>> {
    settlements
        .iter()
        .flat_map(|s| s.outcomes.iter().map(|o| outcome_row(s.token, o)))
        .collect()
}

fn outcome_row(token: Uuid, outcome: &Outcome) -> anyhow::Result<OutcomeRow> {
    use anyhow::Context;
    let status = MessageStatus::Sending
        .transition_to(outcome.status())
        .context("recording an outcome")?;
    let unchanged = OutcomeRow {
        id: outcome.id(),
        token,
        status,
        provider: None,
        provider_message_id: None,
        error: None,
        next_attempt_at: None,
        num_segments: None,
        attempted: true,
    };
    Ok(match outcome {
        Outcome::Sent {
            provider,
            provider_message_id,
            num_segments,
            ..
        } => OutcomeRow {
            provider: Some(provider.clone()),
            provider_message_id: Some(provider_message_id.clone()),
            num_segments: *num_segments,
            ..unchanged
        },
        Outcome::Retry {
            provider,
            error,
            next_attempt_at,
            ..
        } => OutcomeRow {
            next_attempt_at: Some(*next_attempt_at),
            provider: Some(provider.clone()),
            error: Some(error.clone()),
            ..unchanged
        },
        Outcome::Failed {
            provider, error, ..
        } => OutcomeRow {
            provider: provider.clone(),
            error: Some(error.clone()),
            ..unchanged
        },
        // Not an attempt: the pace's reason is the error until the attempt.
        Outcome::Deferred {
            reason,
            next_attempt_at,
            ..
        } => OutcomeRow {
            error: Some(ErrorInfo {
                code: deferral_code(reason).to_owned(),
                message: reason.clone(),
            }),
            next_attempt_at: Some(*next_attempt_at),
            attempted: false,
            ..unchanged
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settled(outcome: Outcome) -> [Settlement; 1] {
        [Settlement {
            token: Uuid::now_v7(),
            outcomes: vec![outcome],
        }]
    }

    #[test]
    fn a_deferral_is_paced_and_not_an_attempt() {
        let at = time::macros::datetime!(2026-11-28 10:00:00 UTC);
        let id = Uuid::now_v7();
        let rows = plan_outcomes(&settled(Outcome::Deferred {
            id,
            reason: "sender pace".into(),
            next_attempt_at: at,
        }))
        .unwrap();
        assert_eq!(rows[0].status, MessageStatus::Retry);
        assert_eq!(rows[0].error_code(), Some(DEFERRED_CODE));
        assert!(!rows[0].attempted);
        assert_eq!(rows[0].provider, None);
        assert_eq!(
            rows[0].detail().unwrap(),
            serde_json::json!({
                "error_code": "paced",
                "error_message": "sender pace",
                "next_attempt_at": "2026-11-28T10:00:00Z",
            })
        );
    }

    #[test]
    fn a_deferral_for_a_circuit_or_a_reconcile_keeps_its_code() {
        let at = time::macros::datetime!(2026-12-02 10:00:00 UTC);
        let deferred = |reason: &str| {
            plan_outcomes(&settled(Outcome::Deferred {
                id: Uuid::now_v7(),
                reason: reason.into(),
                next_attempt_at: at,
            }))
            .unwrap()
            .remove(0)
        };
        let circuit = deferred("circuit_open: every provider of this channel (twilio) is open");
        assert_eq!(circuit.error_code(), Some("circuit_open"));
        assert!(!circuit.attempted);
        assert_eq!(
            deferred("reconcile: timeout").error_code(),
            Some("reconcile")
        );
        assert_eq!(
            deferred("sender pace: 1 per second").error_code(),
            Some(DEFERRED_CODE)
        );
    }

    #[test]
    fn a_success_writes_its_provider_and_segments_and_clears_the_error() {
        let id = Uuid::now_v7();
        let rows = plan_outcomes(&settled(Outcome::Sent {
            id,
            provider: "mock".into(),
            provider_message_id: "SM1".into(),
            num_segments: Some(2),
        }))
        .unwrap();
        assert_eq!(rows[0].status, MessageStatus::Sent);
        assert_eq!(rows[0].error, None);
        assert_eq!(rows[0].num_segments, Some(2));
        assert!(rows[0].attempted);
        assert_eq!(
            rows[0].detail().unwrap(),
            serde_json::json!({ "provider": "mock", "provider_message_id": "SM1" })
        );
    }

    #[test]
    fn a_failure_without_a_provider_keeps_the_stored_one() {
        let rows = plan_outcomes(&settled(Outcome::Failed {
            id: Uuid::now_v7(),
            provider: None,
            error: ErrorInfo {
                code: "21211".into(),
                message: "invalid".into(),
            },
        }))
        .unwrap();
        assert_eq!(rows[0].status, MessageStatus::Failed);
        assert_eq!(rows[0].provider, None);
        assert_eq!(rows[0].next_attempt_at, None);
    }

    #[test]
    fn outcomes_of_several_claims_keep_their_order_and_each_its_claims_token() {
        let sent = |id| Outcome::Sent {
            id,
            provider: "mock".into(),
            provider_message_id: format!("SM{id}"),
            num_segments: None,
        };
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
        let rows = plan_outcomes(&[
            Settlement {
                token: first,
                outcomes: vec![sent(a), sent(b)],
            },
            Settlement {
                token: second,
                outcomes: vec![sent(c)],
            },
        ])
        .unwrap();
        let planned: Vec<(Uuid, Uuid)> = rows.iter().map(|r| (r.id, r.token)).collect();
        assert_eq!(planned, vec![(a, first), (b, first), (c, second)]);
    }

    #[test]
    fn claims_take_pending_retry_and_stale_sending_and_redrives_take_failed() {
        let mut s = claimable_statuses();
        s.sort_unstable();
        assert_eq!(s, ["pending", "retry", "sending"]);
        assert_eq!(claim_detail(MessageStatus::Sending)["reclaimed"], true);
        assert_eq!(claim_detail(MessageStatus::Pending), serde_json::json!({}));
        assert_eq!(redrive_from().unwrap(), MessageStatus::Failed);
    }
}
