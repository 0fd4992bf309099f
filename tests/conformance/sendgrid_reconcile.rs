//! SendGrid events that name one of our messages (`custom_args.message_id`) on both stores:
//! an outbound email without a provider id (`pending`, `sending`, `retry`) is recorded as
//! `sent` with the event's provider id before the event applies, in one transaction; other
//! messages are left alone and the event is kept as an early receipt, as before.

use std::sync::Arc;

use messaging_service::domain::{MessageStatus, NewMessage, OutboundContent};
use messaging_service::store::{EventOutcome, Inserted, Outcome, ProviderEvent, Store};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

on_every_store!(
    an_event_naming_an_unrecorded_email_records_it_sent_then_applies,
    an_event_records_a_retry_and_applies_receipts_kept_for_its_id,
    only_unrecorded_outbound_emails_are_adopted,
);

fn event(key: &str, pmid: &str, message_id: Uuid, target: Option<MessageStatus>) -> ProviderEvent {
    ProviderEvent {
        provider: "sendgrid",
        dedupe_key: key.into(),
        provider_message_id: pmid.into(),
        event: target.map_or("processed".into(), |t| t.as_str().to_owned()),
        target,
        error: None,
        detail: json!({"sg_event_id": key, "message_id": message_id.to_string()}),
    }
}

async fn insert(store: &Arc<dyn Store>, kind: &str) -> Uuid {
    let (from, to) = if kind == "email" {
        ("news@example.com", "ann@example.org")
    } else {
        ("+15551234567", "+15559876543")
    };
    let m = NewMessage::outbound(OutboundContent {
        from: Some(from.into()),
        to: Some(to.into()),
        kind: Some(kind.into()),
        subject: (kind == "email").then(|| "Hi".into()),
        body: Some("reconcile me".into()),
        ..Default::default()
    })
    .expect("valid");
    match &store.insert_messages(&[m]).await.expect("insert")[0] {
        Inserted::Created(m) => m.id,
        other => panic!("not created: {other:?}"),
    }
}

async fn status_of(store: &Arc<dyn Store>, id: Uuid) -> (MessageStatus, Option<String>) {
    let m = store.get_message(id).await.expect("get").expect("message");
    (m.status, m.provider_message_id)
}

async fn an_event_naming_an_unrecorded_email_records_it_sent_then_applies(store: Arc<dyn Store>) {
    let id = insert(&store, "email").await;
    // A worker claimed it and died after SendGrid accepted it.
    let claim = store
        .claim(&[id], std::time::Duration::from_secs(60))
        .await
        .expect("claim");
    assert_eq!(claim.messages.len(), 1);
    let outcomes = store
        .apply_provider_events(&[
            event("e1", "sgA", id, None),
            event("e2", "sgA", id, Some(MessageStatus::Delivered)),
        ])
        .await
        .expect("apply");
    assert_eq!(outcomes, [EventOutcome::Recorded, EventOutcome::Applied]);
    assert_eq!(
        status_of(&store, id).await,
        (MessageStatus::Delivered, Some("sgA".into()))
    );
    let m = store.get_message(id).await.expect("get").expect("message");
    assert_eq!(m.provider.as_deref(), Some("sendgrid"));
    assert!(m.sent_at.is_some());
    let history = store.message_events(id).await.expect("history");
    let line = history
        .iter()
        .find(|e| e.to_status == Some(MessageStatus::Sent))
        .expect("a line to sent");
    assert_eq!(line.from_status, Some(MessageStatus::Sending));
    assert_eq!(line.detail["reconciled"], true);
    assert_eq!(line.detail["provider_message_id"], "sgA");
    // The dead worker's claim is over: a late outcome of it changes nothing.
    let applied = store
        .record_outcomes(
            claim.token,
            &[Outcome::Sent {
                id,
                provider: "sendgrid".into(),
                provider_message_id: "sgA".into(),
                num_segments: None,
            }],
        )
        .await
        .expect("record");
    assert!(applied.is_empty());
    assert_eq!(status_of(&store, id).await.0, MessageStatus::Delivered);
    // Nor can it be claimed again.
    let again = store
        .claim(&[id], std::time::Duration::ZERO)
        .await
        .expect("claim");
    assert!(again.messages.is_empty());
}

async fn an_event_records_a_retry_and_applies_receipts_kept_for_its_id(store: Arc<dyn Store>) {
    let id = insert(&store, "email").await;
    let claim = store
        .claim(&[id], std::time::Duration::from_secs(60))
        .await
        .expect("claim");
    // The re-send waits for events (a deferral: `retry`, not an attempt).
    store
        .record_outcomes(
            claim.token,
            &[Outcome::Deferred {
                id,
                reason: "reconcile: waiting for SendGrid events".into(),
                next_attempt_at: OffsetDateTime::now_utc() + time::Duration::minutes(2),
            }],
        )
        .await
        .expect("defer");
    assert_eq!(status_of(&store, id).await.0, MessageStatus::Retry);
    // An event without our id came first: kept as an early receipt.
    let mut anonymous = event("e0", "sgB", id, Some(MessageStatus::Delivered));
    anonymous.detail = json!({"sg_event_id": "e0"});
    let kept = store
        .apply_provider_events(&[anonymous])
        .await
        .expect("apply");
    assert_eq!(kept, [EventOutcome::UnknownMessage]);
    // Then one that names us: the send is recorded and the kept receipt applies too.
    let outcomes = store
        .apply_provider_events(&[event("e1", "sgB", id, None)])
        .await
        .expect("apply");
    assert_eq!(outcomes, [EventOutcome::Recorded]);
    assert_eq!(
        status_of(&store, id).await,
        (MessageStatus::Delivered, Some("sgB".into()))
    );
    let m = store.get_message(id).await.expect("get").expect("message");
    assert_eq!(m.error, None, "the deferral's reason is cleared");
    assert_eq!(m.next_attempt_at, None);
}

async fn only_unrecorded_outbound_emails_are_adopted(store: Arc<dyn Store>) {
    // An SMS is never adopted through a SendGrid event.
    let sms = insert(&store, "sms").await;
    let outcomes = store
        .apply_provider_events(&[event("s1", "sgS", sms, Some(MessageStatus::Delivered))])
        .await
        .expect("apply");
    assert_eq!(outcomes, [EventOutcome::UnknownMessage]);
    assert_eq!(status_of(&store, sms).await, (MessageStatus::Pending, None));

    // An email already recorded with another provider id keeps it.
    let sent = insert(&store, "email").await;
    let claim = store
        .claim(&[sent], std::time::Duration::from_secs(60))
        .await
        .expect("claim");
    store
        .record_outcomes(
            claim.token,
            &[Outcome::Sent {
                id: sent,
                provider: "sendgrid".into(),
                provider_message_id: "sgFirst".into(),
                num_segments: None,
            }],
        )
        .await
        .expect("record");
    let outcomes = store
        .apply_provider_events(&[event("s2", "sgOther", sent, Some(MessageStatus::Delivered))])
        .await
        .expect("apply");
    assert_eq!(outcomes, [EventOutcome::UnknownMessage]);
    assert_eq!(
        status_of(&store, sent).await,
        (MessageStatus::Sent, Some("sgFirst".into()))
    );

    // A provider id another message already carries is applied to that message only.
    let pending = insert(&store, "email").await;
    let outcomes = store
        .apply_provider_events(&[event(
            "s3",
            "sgFirst",
            pending,
            Some(MessageStatus::Delivered),
        )])
        .await
        .expect("apply");
    assert_eq!(outcomes, [EventOutcome::Applied]);
    assert_eq!(
        status_of(&store, pending).await,
        (MessageStatus::Pending, None)
    );
    assert_eq!(status_of(&store, sent).await.0, MessageStatus::Delivered);

    // A pending email (its claim's worker died before even marking it) is adopted.
    let outcomes = store
        .apply_provider_events(&[event("s4", "sgP", pending, None)])
        .await
        .expect("apply");
    assert_eq!(outcomes, [EventOutcome::Recorded]);
    assert_eq!(
        status_of(&store, pending).await,
        (MessageStatus::Sent, Some("sgP".into()))
    );
}
