//! Events to the application, decided once for every backend: the endpoint rows, the
//! deliveries a worker claims, what an attempt's result writes, and the row decoders. Each
//! backend's `events.rs` speaks its dialect, including `record_events`, the one outbox
//! insert every status-changing write calls inside its own transaction (it writes the
//! events' deliveries in the same transaction).

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::rows::StoredRow;
use super::{Page, StoreResult};

/// A webhook endpoint as clients see it (never its secrets).
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[schema(as = WebhookEndpoint)]
pub struct Endpoint {
    pub id: Uuid,
    pub url: String,
    /// The subscribed types; `null` is every type.
    #[schema(value_type = Option<Vec<crate::domain::event::EventType>>)]
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: bool,
    /// Why the service disabled it (410 Gone, failing for too long), if it did.
    pub disabled_reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(Clone)]
pub struct NewEndpoint {
    pub id: Uuid,
    pub url: String,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    pub secret: String,
}

/// Without the secret: secrets are never logged.
impl std::fmt::Debug for NewEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewEndpoint")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

/// A partial update; `None` leaves the field as it is.
#[derive(Debug, Clone, Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub events: Option<Option<Vec<String>>>,
    pub enabled: Option<bool>,
    pub description: Option<Option<String>>,
}

/// One delivery attempt, as `GET /webhook-endpoints/{id}/attempts` lists it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[schema(as = WebhookAttempt)]
pub struct AttemptRecord {
    pub event_id: String,
    /// An event type, or `test.ping`.
    pub event_type: String,
    pub attempt: i32,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub attempted_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
}

/// A delivery a worker claimed: what to send, where, and with which keys.
#[derive(Clone)]
pub struct DueDelivery {
    pub delivery_id: i64,
    pub event_id: String,
    pub event_type: String,
    pub message_id: Option<Uuid>,
    /// The message status the event reports.
    pub status: Option<String>,
    /// The body, once frozen by an earlier attempt.
    pub payload: Option<Value>,
    pub created_at: OffsetDateTime,
    /// `None` for a message's status callback.
    pub endpoint_id: Option<Uuid>,
    pub url: String,
    /// The endpoint's secret and, during a rotation's overlap, the previous one; empty for
    /// a status callback (signed with `STATUS_CALLBACK_SECRET`).
    pub secrets: Vec<String>,
    /// This attempt's number (1 for the first).
    pub attempt: i32,
    /// False once the endpoint was disabled after the event was fanned out: not sent.
    pub endpoint_enabled: bool,
}

/// Without the secrets: secrets are never logged.
impl std::fmt::Debug for DueDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DueDelivery")
            .field("delivery_id", &self.delivery_id)
            .field("event_id", &self.event_id)
            .field("event_type", &self.event_type)
            .field("endpoint_id", &self.endpoint_id)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

/// What became of a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    Retry {
        at: OffsetDateTime,
    },
    /// The chain is over: the schedule is exhausted, or the endpoint is gone.
    Failed,
}

impl AttemptOutcome {
    pub fn delivery_status(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retry { .. } => "pending",
            Self::Failed => "failed",
        }
    }

    pub fn next_attempt_at(self) -> Option<OffsetDateTime> {
        match self {
            Self::Retry { at } => Some(at),
            _ => None,
        }
    }
}

/// An attempt's result, as the worker hands it to the store.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    pub delivery_id: i64,
    pub endpoint_id: Option<Uuid>,
    pub event_id: String,
    pub event_type: String,
    pub attempt: i32,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub outcome: AttemptOutcome,
    /// The body sent, frozen for later attempts.
    pub payload: Value,
    /// The receiver answered 410 Gone: disable the endpoint.
    pub gone: bool,
}

/// A failed chain, for `messaging-service events list`.
#[derive(Debug, Clone, Serialize)]
pub struct FailedDelivery {
    pub id: i64,
    pub event_id: String,
    pub event_type: String,
    pub endpoint_id: Option<Uuid>,
    pub url: Option<String>,
    pub attempts: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    async fn create_endpoint(&self, endpoint: &NewEndpoint) -> StoreResult<Endpoint>;
    async fn list_endpoints(&self) -> StoreResult<Vec<Endpoint>>;
    async fn get_endpoint(&self, id: Uuid) -> StoreResult<Option<Endpoint>>;
    async fn update_endpoint(
        &self,
        id: Uuid,
        patch: &EndpointPatch,
    ) -> StoreResult<Option<Endpoint>>;
    async fn delete_endpoint(&self, id: Uuid) -> StoreResult<bool>;
    /// Installs `secret`; the current one keeps signing until `previous_until`.
    async fn rotate_secret(
        &self,
        id: Uuid,
        secret: &str,
        previous_until: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// Attempts to one endpoint, newest first.
    async fn endpoint_attempts(
        &self,
        id: Uuid,
        page: Page,
    ) -> StoreResult<(Vec<AttemptRecord>, i64)>;
    /// Queues a `test.ping` for one endpoint.
    async fn add_test_event(&self, endpoint_id: Uuid, payload: &Value) -> StoreResult<String>;

    /// Fans out events stored without their deliveries (by an earlier version, which did
    /// this step apart; events are now fanned out as they are written): one delivery per
    /// subscribed enabled endpoint and status callback. Returns how many events it took.
    async fn dispatch_events(&self, limit: i64) -> StoreResult<usize>;
    /// Claims due deliveries for `lease` (a crashed worker's claims come due again),
    /// skipping deliveries to `busy` endpoints and taking at most `per_endpoint` for one
    /// endpoint.
    async fn claim_deliveries(
        &self,
        limit: i64,
        lease: std::time::Duration,
        busy: &[Uuid],
        per_endpoint: i64,
    ) -> StoreResult<Vec<DueDelivery>>;
    /// Writes attempts' results; an endpoint failing since before `disable_before` is
    /// disabled.
    async fn record_attempts(
        &self,
        results: &[AttemptResult],
        disable_before: OffsetDateTime,
    ) -> StoreResult<()>;
    /// Deliveries not yet delivered nor failed, and events not yet fanned out.
    async fn events_pending(&self) -> StoreResult<i64>;
    async fn failed_deliveries(&self, page: Page) -> StoreResult<Vec<FailedDelivery>>;
    /// Failed chains (all, or those listed) start again from attempt 1, due now.
    async fn redrive_deliveries(&self, ids: Option<&[i64]>) -> StoreResult<u64>;
}

pub(crate) const ENDPOINT_COLUMNS: &str =
    "id, url, event_types, description, enabled, disabled_reason, created_at, updated_at";

fn string_list(raw: Option<String>) -> anyhow::Result<Option<Vec<String>>> {
    raw.map(|r| serde_json::from_str(&r))
        .transpose()
        .map_err(|e| anyhow::anyhow!("event_types column: {e}"))
}

/// Reads `ENDPOINT_COLUMNS`; `event_types` as text on both backends.
pub(crate) fn endpoint<R: StoredRow>(row: &R) -> anyhow::Result<Endpoint> {
    Ok(Endpoint {
        id: row.uuid("id")?,
        url: row.get("url")?,
        events: string_list(row.get("event_types")?)?,
        description: row.get("description")?,
        enabled: row.get("enabled")?,
        disabled_reason: row.get("disabled_reason")?,
        created_at: row.instant("created_at")?,
        updated_at: row.instant("updated_at")?,
    })
}

pub(crate) const ATTEMPT_COLUMNS: &str =
    "event_id, event_type, attempt, status_code, error, duration_ms, attempted_at, next_attempt_at";

pub(crate) fn attempt<R: StoredRow>(row: &R) -> anyhow::Result<AttemptRecord> {
    Ok(AttemptRecord {
        event_id: row.get("event_id")?,
        event_type: row.get("event_type")?,
        attempt: row.get("attempt")?,
        status_code: row.get("status_code")?,
        error: row.get("error")?,
        duration_ms: row.get("duration_ms")?,
        attempted_at: row.instant("attempted_at")?,
        next_attempt_at: row.opt_instant("next_attempt_at")?,
    })
}

/// Reads a claimed delivery joined with its event and endpoint (`payload` as text; the
/// previous secret only while it is still valid).
pub(crate) fn due<R: StoredRow>(row: &R) -> anyhow::Result<DueDelivery> {
    let payload: Option<String> = row.get("payload")?;
    let secret: Option<String> = row.get("secret")?;
    let previous: Option<String> = row.get("previous_secret")?;
    let url: Option<String> = row.get("url")?;
    Ok(DueDelivery {
        delivery_id: row.get("delivery_id")?,
        event_id: row.get("event_id")?,
        event_type: row.get("type")?,
        message_id: row.opt_uuid("message_id")?,
        status: row.get("status")?,
        payload: payload.map(|p| serde_json::from_str(&p)).transpose()?,
        created_at: row.instant("created_at")?,
        endpoint_id: row.opt_uuid("endpoint_id")?,
        url: url.unwrap_or_default(),
        secrets: secret.into_iter().chain(previous).collect(),
        attempt: row.get("attempts")?,
        endpoint_enabled: row.get::<Option<bool>>("enabled")?.unwrap_or(true),
    })
}

pub(crate) fn failed<R: StoredRow>(row: &R) -> anyhow::Result<FailedDelivery> {
    Ok(FailedDelivery {
        id: row.get("id")?,
        event_id: row.get("event_id")?,
        event_type: row.get("type")?,
        endpoint_id: row.opt_uuid("endpoint_id")?,
        url: row.get("url")?,
        attempts: row.get("attempts")?,
        updated_at: row.instant("updated_at")?,
    })
}

/// An attempt's result as the JSON object the backends' batch statements read.
pub(crate) fn attempt_json(r: &AttemptResult, now: &str, next: Option<String>) -> Value {
    serde_json::json!({
        "delivery_id": r.delivery_id,
        "endpoint_id": r.endpoint_id.map(|id| id.to_string()),
        "event_id": r.event_id,
        "event_type": r.event_type,
        "attempt": r.attempt,
        "status_code": r.status_code,
        "error": r.error,
        "duration_ms": r.duration_ms,
        "status": r.outcome.delivery_status(),
        "next_attempt_at": next,
        // Frozen for the retries of a failed attempt only: a delivered event is not sent
        // again, so its body is not written back.
        "payload": (r.outcome != AttemptOutcome::Delivered).then(|| r.payload.to_string()),
        "ok": r.outcome == AttemptOutcome::Delivered,
        "gone": r.gone,
        "now": now,
    })
}

/// The status → event type table as the outbox statements read it (see
/// `domain::event::EventType::for_status`).
pub(crate) fn status_map() -> String {
    crate::domain::event::EventType::status_map().to_string()
}

/// The ids of the new messages whose status notifies the application (inbound messages):
/// outbound messages start `pending`, so the send path never pays for the outbox.
pub(crate) fn notifying(batch: &[crate::domain::NewMessage]) -> Vec<Uuid> {
    batch
        .iter()
        .filter(|m| crate::domain::event::EventType::for_status(m.status).is_some())
        .map(|m| m.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{MessageStatus, NewMessage, OutboundContent};

    #[test]
    fn only_new_messages_whose_status_notifies_are_recorded() {
        let mut outbound = NewMessage::outbound(OutboundContent {
            from: Some("+15551234567".into()),
            to: Some("+15559876543".into()),
            body: Some("hi".into()),
            ..OutboundContent::default()
        })
        .unwrap();
        assert!(notifying(std::slice::from_ref(&outbound)).is_empty());
        outbound.status = MessageStatus::Received;
        assert_eq!(notifying(std::slice::from_ref(&outbound)), [outbound.id]);
    }
}
