//! Provider callbacks: the durable delivery log and applying receipts to messages.

use std::collections::HashMap;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Page, StoreResult};
use crate::domain::{ErrorInfo, MessageStatus};

/// One thing a provider told us about a message we sent.
#[derive(Debug, Clone)]
pub struct ProviderEvent {
    pub provider: &'static str,
    /// What makes a replay recognisable (e.g. `SM…:delivered`, an `sg_event_id`).
    pub dedupe_key: String,
    /// The provider's id for the message, as stored when it was sent.
    pub provider_message_id: String,
    /// The provider's own name for the event (`delivered`, `undelivered`, `open`, …).
    pub event: String,
    /// The status this event moves the message to, if any; events that only inform
    /// (opens, clicks, deferrals) have none.
    pub target: Option<MessageStatus>,
    pub error: Option<ErrorInfo>,
    pub detail: Value,
}

/// What became of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventOutcome {
    /// The message moved to the event's status.
    Applied,
    /// Recorded in the message's history without a status change (informational, or the
    /// message is already further along: callbacks never move a message backwards).
    Recorded,
    /// Seen before: nothing done.
    Duplicate,
    /// No message has this provider id: logged only.
    UnknownMessage,
}

impl EventOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Recorded => "recorded",
            Self::Duplicate => "duplicate",
            Self::UnknownMessage => "unknown_message",
        }
    }
}

/// A logged callback that is not a receipt (a rejected call, an inbound message).
#[derive(Debug, Clone)]
pub struct WebhookLogEntry {
    pub provider: &'static str,
    pub kind: &'static str,
    pub dedupe_key: Option<String>,
    pub verified: bool,
    pub outcome: String,
    pub message_id: Option<Uuid>,
    pub detail: Value,
}

/// A row of the delivery log, as operators see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WebhookDelivery {
    pub id: i64,
    pub provider: String,
    pub kind: String,
    pub dedupe_key: Option<String>,
    pub verified: bool,
    pub outcome: String,
    pub message_id: Option<Uuid>,
    pub detail: Value,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
}

#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Applies receipts in one transaction: replays are recognised by their dedupe key,
    /// messages are found by provider id and only ever move forward, every event lands in
    /// the message's history and in the delivery log. Results are in input order.
    async fn apply_provider_events(
        &self,
        events: &[ProviderEvent],
    ) -> StoreResult<Vec<EventOutcome>>;

    async fn log_webhook(&self, entry: &WebhookLogEntry) -> StoreResult<()>;

    /// Forgets kept early receipts received before `before` (`UNMATCHED_RECEIPT_TTL`); how
    /// many were dropped. Their log rows stay `unknown_message`.
    async fn purge_unmatched_receipts(&self, before: OffsetDateTime) -> StoreResult<u64>;

    /// The delivery log, newest first, optionally for one provider.
    async fn webhook_deliveries(
        &self,
        provider: Option<&str>,
        page: Page,
    ) -> StoreResult<(Vec<WebhookDelivery>, i64)>;
}

/// One receipt's line in a message's history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub message_id: Uuid,
    /// Set when the receipt moved the message.
    pub from: Option<MessageStatus>,
    pub to: Option<MessageStatus>,
    pub detail: Value,
}

/// A message's status after a batch of receipts, with the error of the receipt that set it.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusChange {
    pub message_id: Uuid,
    pub status: MessageStatus,
    pub error: Option<crate::domain::ErrorInfo>,
}

/// What became of the event that claimed a log row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogResult {
    pub log_id: i64,
    pub outcome: EventOutcome,
    pub message_id: Option<Uuid>,
}

/// What a batch of receipts does, decided once for every backend; the backend only writes it.
#[derive(Debug, Default)]
pub struct ReceiptPlan {
    /// One per event, in input order.
    pub outcomes: Vec<EventOutcome>,
    /// Indices of the events that are replays (logged as duplicates).
    pub duplicates: Vec<usize>,
    /// The log row each fresh event claimed, with its outcome and message.
    pub log_results: Vec<LogResult>,
    pub history: Vec<HistoryEntry>,
    pub status_changes: Vec<StatusChange>,
}

/// One receipt's row in the delivery log.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LogRow {
    pub provider: &'static str,
    pub dedupe_key: String,
    /// JSON text: the event and the provider's message id.
    pub detail: String,
}

impl LogRow {
    fn of(event: &ProviderEvent) -> Self {
        Self {
            provider: event.provider,
            dedupe_key: event.dedupe_key.clone(),
            detail: serde_json::json!({
                "event": event.event,
                "provider_message_id": event.provider_message_id,
            })
            .to_string(),
        }
    }
}

/// The rows of one receipt statement as a single JSON array parameter, each row an array
/// of its values in the order the statement reads them (`value ->> 0`, `value ->> 1`, …).
/// Both backends read this encoding, each with its own JSON functions.
pub(crate) fn json_rows<T: JsonRow>(rows: &[T]) -> String {
    Value::from(rows.iter().map(JsonRow::json).collect::<Vec<_>>()).to_string()
}

/// One row of a receipt statement, as `json_rows` encodes it.
pub(crate) trait JsonRow {
    fn json(&self) -> Value;
}

/// `[provider, dedupe key, detail]`
impl JsonRow for LogRow {
    fn json(&self) -> Value {
        serde_json::json!([self.provider, self.dedupe_key, self.detail])
    }
}

/// `[message id, status, error code, error message]`
impl JsonRow for StatusChange {
    fn json(&self) -> Value {
        let error = self.error.as_ref();
        serde_json::json!([
            self.message_id.to_string(),
            self.status.as_str(),
            error.map(|e| &e.code),
            error.map(|e| &e.message),
        ])
    }
}

/// `[message id, from status, to status, detail as JSON text]`
impl JsonRow for HistoryEntry {
    fn json(&self) -> Value {
        serde_json::json!([
            self.message_id.to_string(),
            self.from.map(MessageStatus::as_str),
            self.to.map(MessageStatus::as_str),
            self.detail.to_string(),
        ])
    }
}

/// `[log row id, outcome, message id]`
impl JsonRow for LogResult {
    fn json(&self) -> Value {
        serde_json::json!([
            self.log_id,
            self.outcome.as_str(),
            self.message_id.map(|id| id.to_string()),
        ])
    }
}

/// A receipt kept because no message carried its provider id yet (an early receipt): applied
/// by the outcome write that records that id ([`apply_kept_receipts`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KeptRow {
    pub provider: String,
    pub provider_message_id: String,
    pub dedupe_key: String,
    /// Its row in the delivery log (settled when it is applied).
    pub log_id: i64,
    /// JSON text: `{"event", "target", "error", "detail"}`.
    pub event: String,
}

impl KeptRow {
    fn of(event: &ProviderEvent, log_id: i64) -> Self {
        Self {
            provider: event.provider.to_owned(),
            provider_message_id: event.provider_message_id.clone(),
            dedupe_key: event.dedupe_key.clone(),
            log_id,
            event: serde_json::json!({
                "event": event.event,
                "target": event.target.map(MessageStatus::as_str),
                "error": event.error.as_ref().map(|e| serde_json::json!({
                    "code": e.code, "message": e.message,
                })),
                "detail": event.detail,
            })
            .to_string(),
        }
    }

    /// The event again; `None` for a row this version cannot read.
    fn event(&self) -> Option<ProviderEvent> {
        let provider = RECEIPT_PROVIDERS
            .iter()
            .find(|p| **p == self.provider)
            .copied()?;
        let v: Value = serde_json::from_str(&self.event).ok()?;
        let target = match v.get("target").and_then(Value::as_str) {
            Some(t) => Some(MessageStatus::parse(t)?),
            None => None,
        };
        let error = v.get("error").filter(|e| !e.is_null()).map(|e| ErrorInfo {
            code: e["code"].as_str().unwrap_or_default().to_owned(),
            message: e["message"].as_str().unwrap_or_default().to_owned(),
        });
        Some(ProviderEvent {
            provider,
            dedupe_key: self.dedupe_key.clone(),
            provider_message_id: self.provider_message_id.clone(),
            event: v.get("event")?.as_str()?.to_owned(),
            target,
            error,
            detail: v.get("detail").cloned().unwrap_or(Value::Null),
        })
    }
}

/// The providers whose receipts are matched by provider message id.
const RECEIPT_PROVIDERS: [&str; 2] = ["twilio", "sendgrid"];

/// `[provider, provider message id, dedupe key, log id, event]`
impl JsonRow for KeptRow {
    fn json(&self) -> Value {
        serde_json::json!([
            self.provider,
            self.provider_message_id,
            self.dedupe_key,
            self.log_id,
            self.event,
        ])
    }
}

/// A log row a receipt claimed: its id, by (provider, dedupe key).
pub(crate) type ClaimedLogRow = ((String, String), i64);

/// An outbound message a receipt may be about.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReceiptTarget {
    pub provider_message_id: String,
    pub id: Uuid,
    /// As stored; a status this version does not know is left alone.
    pub status: String,
}

/// The statements of a batch of receipts, in one backend's dialect, inside one
/// transaction. `apply_receipts` says which run, and in which order.
#[async_trait]
pub(crate) trait ReceiptWriter: Send {
    /// Inserts a `pending` log row for each key not logged yet (an original, not a
    /// duplicate), in input order; returns those inserted. A key whose row says
    /// `unknown_message` is claimed again (set back to `pending`): a provider's retry of a
    /// receipt that matched nothing is not a duplicate. `rows` has no key twice.
    async fn claim_log_rows(&mut self, rows: &[LogRow]) -> StoreResult<Vec<ClaimedLogRow>>;

    /// Serialises, until the transaction ends, the receipt path and the outcome write for
    /// these provider ids, so a receipt kept while its outcome is being written is seen by
    /// that write (or sees it). A no-op where writes are serialised anyway (SQLite).
    async fn lock_provider_ids(&mut self, _provider_ids: &[&str]) -> StoreResult<()> {
        Ok(())
    }

    /// Keeps receipts that matched no message (a key kept already stays as it is).
    async fn keep_unmatched(&mut self, rows: &[KeptRow]) -> StoreResult<()>;

    /// Removes and returns the kept receipts for these provider ids, oldest first.
    async fn take_kept(&mut self, provider_ids: &[&str]) -> StoreResult<Vec<KeptRow>>;

    /// Outbound messages with these provider ids, locked in id order where the database
    /// locks rows (so concurrent batches cannot deadlock).
    async fn outbound_messages(&mut self, provider_ids: &[&str])
    -> StoreResult<Vec<ReceiptTarget>>;

    /// Records as `sent` (provider `sendgrid`, the given provider id, a `status_changed`
    /// line and its outbound event) each named outbound email that has no provider id yet
    /// and a status `adoptable_statuses` lists, when no outbound message carries that
    /// provider id already; returns the provider ids recorded.
    async fn adopt_sends(
        &mut self,
        adoptions: &[super::sendgrid_reconcile::Adoption],
    ) -> StoreResult<Vec<String>>;

    /// Logs replays, with outcome `duplicate`.
    async fn log_duplicates(&mut self, rows: &[LogRow]) -> StoreResult<()>;

    async fn change_statuses(&mut self, changes: &[StatusChange]) -> StoreResult<()>;

    /// `provider_event` lines in the messages' histories.
    async fn add_history(&mut self, entries: &[HistoryEntry]) -> StoreResult<()>;

    /// The outcome and message of each claimed log row.
    async fn settle_log_rows(&mut self, results: &[LogResult]) -> StoreResult<()>;

    async fn commit(self) -> StoreResult<()>
    where
        Self: Sized;
}

/// `WebhookStore::apply_provider_events` for every backend: opens the backend's writer
/// (`begin`, not awaited for an empty batch), writes the batch, commits.
#[tracing::instrument(skip_all, fields(count = events.len()))]
pub(crate) async fn apply_receipts<W: ReceiptWriter>(
    begin: impl Future<Output = StoreResult<W>> + Send,
    events: &[ProviderEvent],
) -> StoreResult<Vec<EventOutcome>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let mut writer = begin.await?;
    let outcomes = write_receipts(&mut writer, events).await?;
    writer.commit().await?;
    Ok(outcomes)
}

/// Applies a batch of receipts through `w`: claim the keys, read the messages, decide
/// (`plan_receipts`), then write what was decided, skipping empty statements. Receipts that
/// match no message are kept for the outcome write that records their provider id.
pub(crate) async fn write_receipts<W: ReceiptWriter>(
    w: &mut W,
    events: &[ProviderEvent],
) -> StoreResult<Vec<EventOutcome>> {
    let log_rows: Vec<LogRow> = events.iter().map(LogRow::of).collect();
    // Each key once: a repeat within the batch is a replay of the first.
    let mut seen = std::collections::HashSet::new();
    let fresh: Vec<LogRow> = log_rows
        .iter()
        .filter(|r| seen.insert((r.provider, r.dedupe_key.as_str())))
        .cloned()
        .collect();
    let log_ids: HashMap<(String, String), i64> =
        w.claim_log_rows(&fresh).await?.into_iter().collect();
    let provider_ids: Vec<&str> = events
        .iter()
        .map(|e| e.provider_message_id.as_str())
        .collect();
    // SendGrid events that prove an unrecorded send record it first (row locks before the
    // provider-id locks, in the outcome write's order).
    super::sendgrid_reconcile::adopt(w, events).await?;
    w.lock_provider_ids(&provider_ids).await?;
    let messages = receipt_targets(w, &provider_ids).await?;
    let plan = plan_receipts(events, log_ids.clone(), messages);
    let unmatched: Vec<KeptRow> = events
        .iter()
        .zip(&plan.outcomes)
        .filter(|(_, o)| **o == EventOutcome::UnknownMessage)
        .filter_map(|(e, _)| {
            let key = (e.provider.to_owned(), e.dedupe_key.clone());
            log_ids.get(&key).map(|id| KeptRow::of(e, *id))
        })
        .collect();
    if !unmatched.is_empty() {
        w.keep_unmatched(&unmatched).await?;
    }
    write_plan(w, &plan, &log_rows).await?;
    Ok(plan.outcomes)
}

/// The outcome write's hook: applies the receipts kept for these provider ids (just recorded
/// on their messages, in the writer's transaction) as if they arrived now, and settles their
/// log rows. Returns how many were applied.
pub(crate) async fn apply_kept_receipts<W: ReceiptWriter>(
    w: &mut W,
    provider_ids: &[&str],
) -> StoreResult<usize> {
    if provider_ids.is_empty() {
        return Ok(0);
    }
    w.lock_provider_ids(provider_ids).await?;
    let kept = w.take_kept(provider_ids).await?;
    if kept.is_empty() {
        return Ok(0);
    }
    let mut events = Vec::with_capacity(kept.len());
    let mut log_ids = HashMap::new();
    for row in &kept {
        if let Some(event) = row.event() {
            log_ids.insert(
                (event.provider.to_owned(), event.dedupe_key.clone()),
                row.log_id,
            );
            events.push(event);
        }
    }
    let ids: Vec<&str> = events
        .iter()
        .map(|e| e.provider_message_id.as_str())
        .collect();
    let messages = receipt_targets(w, &ids).await?;
    let plan = plan_receipts(&events, log_ids, messages);
    write_plan(w, &plan, &[]).await?;
    Ok(events.len())
}

/// The outbound messages with these provider ids and their statuses (the first message of
/// a provider id wins; a status this version does not know is left alone).
async fn receipt_targets<W: ReceiptWriter>(
    w: &mut W,
    provider_ids: &[&str],
) -> StoreResult<HashMap<String, (Uuid, MessageStatus)>> {
    let mut messages: HashMap<String, (Uuid, MessageStatus)> = HashMap::new();
    for target in w.outbound_messages(provider_ids).await? {
        if let Some(status) = MessageStatus::parse(&target.status) {
            messages
                .entry(target.provider_message_id)
                .or_insert((target.id, status));
        }
    }
    Ok(messages)
}

/// Writes what `plan_receipts` decided; `log_rows` are the events' rows (for replays).
async fn write_plan<W: ReceiptWriter>(
    w: &mut W,
    plan: &ReceiptPlan,
    log_rows: &[LogRow],
) -> StoreResult<()> {
    if !plan.duplicates.is_empty() {
        let replays: Vec<LogRow> = plan
            .duplicates
            .iter()
            .filter_map(|i| log_rows.get(*i).cloned())
            .collect();
        if !replays.is_empty() {
            w.log_duplicates(&replays).await?;
        }
    }
    if !plan.status_changes.is_empty() {
        w.change_statuses(&plan.status_changes).await?;
    }
    if !plan.history.is_empty() {
        w.add_history(&plan.history).await?;
    }
    if !plan.log_results.is_empty() {
        w.settle_log_rows(&plan.log_results).await?;
    }
    Ok(())
}

/// Decides, in order, what each event does. `log_ids` maps (provider, dedupe key) to the log
/// row the event claimed; an event without one is a replay. `messages` maps provider ids to
/// the message and its status, which later events of the batch see as updated. The
/// lifecycle table is the judge: a receipt only ever moves a message forward.
pub fn plan_receipts(
    events: &[ProviderEvent],
    mut log_ids: HashMap<(String, String), i64>,
    mut messages: HashMap<String, (Uuid, MessageStatus)>,
) -> ReceiptPlan {
    let mut plan = ReceiptPlan::default();
    let mut changes: HashMap<Uuid, StatusChange> = HashMap::new();
    for (index, event) in events.iter().enumerate() {
        let Some(log_id) = log_ids.remove(&(event.provider.to_owned(), event.dedupe_key.clone()))
        else {
            plan.duplicates.push(index);
            plan.outcomes.push(EventOutcome::Duplicate);
            continue;
        };
        let (outcome, message_id) = match messages.get_mut(&event.provider_message_id) {
            None => (EventOutcome::UnknownMessage, None),
            Some((id, status)) => {
                let from = *status;
                let moved = event
                    .target
                    .filter(|t| *t != from && from.transition_to(*t).is_ok());
                if let Some(to) = moved {
                    *status = to;
                    changes.insert(
                        *id,
                        StatusChange {
                            message_id: *id,
                            status: to,
                            error: event.error.clone(),
                        },
                    );
                }
                let mut detail = event.detail.clone();
                if let Value::Object(map) = &mut detail {
                    map.insert("provider".into(), event.provider.into());
                    map.insert("event".into(), event.event.clone().into());
                }
                plan.history.push(HistoryEntry {
                    message_id: *id,
                    from: moved.map(|_| from),
                    to: moved,
                    detail,
                });
                let outcome = if moved.is_some() {
                    EventOutcome::Applied
                } else {
                    EventOutcome::Recorded
                };
                (outcome, Some(*id))
            }
        };
        plan.log_results.push(LogResult {
            log_id,
            outcome,
            message_id,
        });
        plan.outcomes.push(outcome);
    }
    plan.status_changes = changes.into_values().collect();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ErrorInfo;
    use crate::store::StoreError;

    fn event(key: &str, sid: &str, target: Option<MessageStatus>) -> ProviderEvent {
        ProviderEvent {
            provider: "twilio",
            dedupe_key: key.into(),
            provider_message_id: sid.into(),
            event: "x".into(),
            target,
            error: target
                .filter(|t| *t == MessageStatus::Failed)
                .map(|_| ErrorInfo {
                    code: "30003".into(),
                    message: "unreachable".into(),
                }),
            detail: serde_json::json!({}),
        }
    }

    #[test]
    fn receipts_move_forward_only_and_replays_and_strangers_are_told_apart() {
        let id = Uuid::now_v7();
        let events = [
            event("a", "SM1", Some(MessageStatus::Delivered)),
            event("b", "SM1", Some(MessageStatus::Sent)),
            event("a", "SM1", Some(MessageStatus::Delivered)),
            event("c", "SM9", Some(MessageStatus::Delivered)),
        ];
        let log_ids: HashMap<_, _> = [("a", 1), ("b", 2), ("c", 3)]
            .into_iter()
            .map(|(k, v)| (("twilio".to_owned(), k.to_owned()), v))
            .collect();
        let messages = HashMap::from([("SM1".to_owned(), (id, MessageStatus::Sent))]);
        let plan = plan_receipts(&events, log_ids, messages);
        use EventOutcome::*;
        assert_eq!(
            plan.outcomes,
            [Applied, Recorded, Duplicate, UnknownMessage]
        );
        assert_eq!(plan.duplicates, [2]);
        assert_eq!(
            plan.status_changes,
            [StatusChange {
                message_id: id,
                status: MessageStatus::Delivered,
                error: None
            }]
        );
        assert_eq!(plan.history.len(), 2);
        assert_eq!(plan.history[1].to, None, "the late `sent` is history only");
        let log_result = |log_id, outcome, message_id| LogResult {
            log_id,
            outcome,
            message_id,
        };
        assert_eq!(
            plan.log_results,
            [
                log_result(1, Applied, Some(id)),
                log_result(2, Recorded, Some(id)),
                log_result(3, UnknownMessage, None)
            ]
        );
    }

    /// Records what `write_receipts` asks for; key `a` is already logged.
    #[derive(Default)]
    struct Recorder {
        duplicates: Vec<LogRow>,
        history: usize,
        changes: Vec<StatusChange>,
        settled: Vec<LogResult>,
        message: Option<Uuid>,
        kept: Vec<KeptRow>,
        committed: bool,
    }

    #[async_trait]
    impl ReceiptWriter for Recorder {
        async fn claim_log_rows(&mut self, rows: &[LogRow]) -> StoreResult<Vec<ClaimedLogRow>> {
            Ok(rows
                .iter()
                .zip(1..)
                .filter(|(r, _)| r.dedupe_key != "a")
                .map(|(r, id)| ((r.provider.to_owned(), r.dedupe_key.clone()), id))
                .collect())
        }
        async fn outbound_messages(&mut self, _: &[&str]) -> StoreResult<Vec<ReceiptTarget>> {
            let target = |pmid: &str, id, status: &str| ReceiptTarget {
                provider_message_id: pmid.into(),
                id,
                status: status.into(),
            };
            Ok(vec![
                target("SM1", self.message.unwrap_or_default(), "sent"),
                target("SM1", Uuid::now_v7(), "sent"),
                target("SM2", Uuid::now_v7(), "not a status"),
            ])
        }
        async fn adopt_sends(
            &mut self,
            _: &[crate::store::sendgrid_reconcile::Adoption],
        ) -> StoreResult<Vec<String>> {
            Ok(Vec::new())
        }
        async fn log_duplicates(&mut self, rows: &[LogRow]) -> StoreResult<()> {
            self.duplicates.extend_from_slice(rows);
            Ok(())
        }
        async fn keep_unmatched(&mut self, rows: &[KeptRow]) -> StoreResult<()> {
            self.kept.extend_from_slice(rows);
            Ok(())
        }
        async fn take_kept(&mut self, _: &[&str]) -> StoreResult<Vec<KeptRow>> {
            Ok(std::mem::take(&mut self.kept))
        }
        async fn change_statuses(&mut self, changes: &[StatusChange]) -> StoreResult<()> {
            self.changes.extend_from_slice(changes);
            Ok(())
        }
        async fn add_history(&mut self, entries: &[HistoryEntry]) -> StoreResult<()> {
            self.history += entries.len();
            Ok(())
        }
        async fn settle_log_rows(&mut self, results: &[LogResult]) -> StoreResult<()> {
            self.settled.extend_from_slice(results);
            Ok(())
        }
        async fn commit(mut self) -> StoreResult<()> {
            self.committed = true;
            Ok(())
        }
    }

    #[tokio::test]
    async fn receipts_are_written_as_planned_and_the_first_message_of_a_provider_id_wins() {
        let id = Uuid::now_v7();
        let mut w = Recorder {
            message: Some(id),
            ..Default::default()
        };
        let events = [
            event("a", "SM1", Some(MessageStatus::Delivered)),
            event("b", "SM1", Some(MessageStatus::Delivered)),
            event("c", "SM2", Some(MessageStatus::Delivered)),
        ];
        let outcomes = write_receipts(&mut w, &events).await.unwrap();
        use EventOutcome::*;
        assert_eq!(outcomes, [Duplicate, Applied, UnknownMessage]);
        assert_eq!(w.duplicates.len(), 1);
        assert_eq!(w.duplicates[0].dedupe_key, "a");
        assert_eq!(
            serde_json::from_str::<Value>(&w.duplicates[0].detail).unwrap(),
            serde_json::json!({ "event": "x", "provider_message_id": "SM1" })
        );
        assert_eq!(w.changes.len(), 1);
        assert_eq!(w.changes[0].message_id, id);
        assert_eq!(w.history, 1);
        let settled: Vec<_> = w.settled.iter().map(|r| (r.log_id, r.outcome)).collect();
        assert_eq!(settled, [(2, Applied), (3, UnknownMessage)]);
        assert_eq!(w.settled[0].message_id, Some(id));
        // The receipt for SM2 (no message knows it) is kept with its log row.
        assert_eq!(w.kept.len(), 1);
        assert_eq!(
            (w.kept[0].provider_message_id.as_str(), w.kept[0].log_id),
            ("SM2", 3)
        );
    }

    #[tokio::test]
    async fn kept_receipts_apply_when_their_message_is_known_and_settle_their_log_rows() {
        let id = Uuid::now_v7();
        let mut w = Recorder {
            message: Some(id),
            ..Default::default()
        };
        w.kept = vec![
            KeptRow::of(&event("s", "SM1", Some(MessageStatus::Sent)), 10),
            KeptRow::of(&event("d", "SM1", Some(MessageStatus::Delivered)), 11),
        ];
        let read_back = w.kept[1].event().map(|e| (e.dedupe_key, e.target));
        assert_eq!(
            read_back,
            Some(("d".to_owned(), Some(MessageStatus::Delivered)))
        );
        let applied = apply_kept_receipts(&mut w, &["SM1"]).await.unwrap();
        assert_eq!(applied, 2);
        use EventOutcome::*;
        let settled: Vec<_> = w.settled.iter().map(|r| (r.log_id, r.outcome)).collect();
        assert_eq!(settled, [(10, Recorded), (11, Applied)]);
        assert_eq!(w.changes.len(), 1);
        assert_eq!(w.changes[0].status, MessageStatus::Delivered);
        assert!(w.duplicates.is_empty());
        assert_eq!(apply_kept_receipts(&mut w, &[]).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn an_empty_batch_opens_no_transaction() {
        let begin = async { Err(StoreError::Other(anyhow::anyhow!("a writer was opened"))) };
        let outcomes = apply_receipts::<Recorder>(begin, &[]).await.unwrap();
        assert!(outcomes.is_empty());
    }

    #[test]
    fn a_failure_keeps_the_error_of_the_receipt_that_set_it() {
        let id = Uuid::now_v7();
        let events = [event("f", "SM1", Some(MessageStatus::Failed))];
        let log_ids = HashMap::from([(("twilio".to_owned(), "f".to_owned()), 7)]);
        let plan = plan_receipts(
            &events,
            log_ids,
            HashMap::from([("SM1".to_owned(), (id, MessageStatus::Sent))]),
        );
        assert_eq!(
            plan.status_changes[0]
                .error
                .as_ref()
                .map(|e| e.code.as_str()),
            Some("30003")
        );
    }
}
