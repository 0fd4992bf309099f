//! Early receipts on both stores: a receipt whose provider id no message carries yet is kept
//! (not lost, and its provider's retries are not dropped as duplicates) and applied by the
//! outcome write that records that id, in the same transaction; kept receipts are purged
//! after their time to live.

use std::sync::Arc;

use messaging_service::domain::{ErrorInfo, MessageStatus, NewMessage, OutboundContent};
use messaging_service::store::{EventOutcome, Inserted, Outcome, Page, ProviderEvent, Store};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

on_every_store!(
    an_early_receipt_is_applied_when_the_outcome_lands_and_its_retries_are_not_dropped,
    an_early_failure_receipt_fails_the_message_with_its_error,
    kept_receipts_are_purged_after_their_time_to_live,
);

fn receipt(key: &str, pmid: &str, target: Option<MessageStatus>) -> ProviderEvent {
    ProviderEvent {
        provider: "twilio",
        dedupe_key: key.into(),
        provider_message_id: pmid.into(),
        event: target.map_or("queued".into(), |t| t.as_str().to_owned()),
        target,
        error: target
            .filter(|t| *t == MessageStatus::Failed)
            .map(|_| ErrorInfo {
                code: "30003".into(),
                message: "Unreachable destination handset".into(),
            }),
        detail: json!({"raw": key}),
    }
}

async fn one_message(store: &Arc<dyn Store>) -> Uuid {
    let m = NewMessage::outbound(OutboundContent {
        from: Some("+15551234567".into()),
        to: Some("+15559876543".into()),
        kind: Some("sms".into()),
        body: Some("early".into()),
        ..Default::default()
    })
    .expect("valid");
    match &store.insert_messages(&[m]).await.expect("insert")[0] {
        Inserted::Created(m) => m.id,
        other => panic!("not created: {other:?}"),
    }
}

async fn send(store: &Arc<dyn Store>, id: Uuid, sid: &str) {
    let claim = store
        .claim(&[id], std::time::Duration::from_secs(60))
        .await
        .expect("claim");
    let applied = store
        .record_outcomes(
            claim.token,
            &[Outcome::Sent {
                id,
                provider: "twilio".into(),
                provider_message_id: sid.into(),
                num_segments: None,
            }],
        )
        .await
        .expect("record the outcome");
    assert_eq!(applied, vec![id]);
}

async fn log_outcomes(store: &Arc<dyn Store>) -> Vec<String> {
    let (log, _) = store
        .webhook_deliveries(
            Some("twilio"),
            Page {
                limit: 100,
                offset: 0,
            },
        )
        .await
        .expect("log");
    let mut outcomes: Vec<String> = log.into_iter().map(|d| d.outcome).collect();
    outcomes.sort();
    outcomes
}

async fn an_early_receipt_is_applied_when_the_outcome_lands_and_its_retries_are_not_dropped(
    store: Arc<dyn Store>,
) {
    let id = one_message(&store).await;
    // Twilio calls back before the worker has written the sid.
    let early = [
        receipt("SMearly:sent", "SMearly", Some(MessageStatus::Sent)),
        receipt(
            "SMearly:delivered",
            "SMearly",
            Some(MessageStatus::Delivered),
        ),
    ];
    let outcomes = store.apply_provider_events(&early).await.expect("apply");
    assert_eq!(outcomes, [EventOutcome::UnknownMessage; 2]);
    // Twilio retries the callback: still unmatched, not a duplicate, kept once.
    let retried = store
        .apply_provider_events(&early[1..])
        .await
        .expect("apply");
    assert_eq!(retried, [EventOutcome::UnknownMessage]);
    assert_eq!(
        store
            .get_message(id)
            .await
            .expect("get")
            .expect("message")
            .status,
        MessageStatus::Pending
    );

    // The outcome lands: the kept receipts apply in the same write.
    send(&store, id, "SMearly").await;
    let m = store.get_message(id).await.expect("get").expect("message");
    assert_eq!(m.status, MessageStatus::Delivered);
    assert!(m.delivered_at.is_some());
    let history: Vec<_> = store
        .message_events(id)
        .await
        .expect("events")
        .into_iter()
        .filter(|e| e.event == "provider_event")
        .collect();
    assert_eq!(history.len(), 2, "each kept receipt once: {history:?}");
    assert_eq!(history[1].to_status, Some(MessageStatus::Delivered));
    assert_eq!(log_outcomes(&store).await, ["applied", "recorded"]);

    // A retry now is a duplicate, and nothing is kept any more.
    let late = store
        .apply_provider_events(&early[1..])
        .await
        .expect("apply");
    assert_eq!(late, [EventOutcome::Duplicate]);
    let future = OffsetDateTime::now_utc() + std::time::Duration::from_secs(60);
    assert_eq!(
        store.purge_unmatched_receipts(future).await.expect("purge"),
        0
    );
}

async fn an_early_failure_receipt_fails_the_message_with_its_error(store: Arc<dyn Store>) {
    let id = one_message(&store).await;
    let failed = [receipt(
        "SMlost:undelivered",
        "SMlost",
        Some(MessageStatus::Failed),
    )];
    let outcomes = store.apply_provider_events(&failed).await.expect("apply");
    assert_eq!(outcomes, [EventOutcome::UnknownMessage]);
    send(&store, id, "SMlost").await;
    let m = store.get_message(id).await.expect("get").expect("message");
    assert_eq!(m.status, MessageStatus::Failed);
    assert_eq!(m.error.map(|e| e.code).as_deref(), Some("30003"));
}

async fn kept_receipts_are_purged_after_their_time_to_live(store: Arc<dyn Store>) {
    let outcomes = store
        .apply_provider_events(&[receipt(
            "SMghost:delivered",
            "SMghost",
            Some(MessageStatus::Delivered),
        )])
        .await
        .expect("apply");
    assert_eq!(outcomes, [EventOutcome::UnknownMessage]);
    let past = OffsetDateTime::now_utc() - std::time::Duration::from_secs(60);
    assert_eq!(
        store.purge_unmatched_receipts(past).await.expect("purge"),
        0
    );
    let future = OffsetDateTime::now_utc() + std::time::Duration::from_secs(60);
    assert_eq!(
        store.purge_unmatched_receipts(future).await.expect("purge"),
        1
    );
    // A message sent with that id later is not touched by the forgotten receipt.
    let id = one_message(&store).await;
    send(&store, id, "SMghost").await;
    assert_eq!(
        store
            .get_message(id)
            .await
            .expect("get")
            .expect("message")
            .status,
        MessageStatus::Sent
    );
}
