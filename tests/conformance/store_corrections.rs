//! Status corrections (`PATCH /api/v1/messages/{id}/status`) on PostgreSQL and on SQLite.

use std::sync::Arc;

use messaging_service::domain::{MessageStatus, NewMessage, OutboundContent};
use messaging_service::store::{Correction, Inserted, Store};
use serde_json::json;

on_every_store!(a_correction_moves_only_from_the_status_it_saw_and_is_recorded);

async fn a_correction_moves_only_from_the_status_it_saw_and_is_recorded(store: Arc<dyn Store>) {
    let new = NewMessage::outbound(OutboundContent {
        from: Some("+15551234567".into()),
        to: Some("+15559876543".into()),
        kind: Some("sms".into()),
        body: Some("corrected".into()),
        ..Default::default()
    })
    .expect("a valid message");
    let inserted = store.insert_messages(&[new]).await.expect("insert");
    let Some(Inserted::Created(message)) = inserted.first() else {
        panic!("expected a created message, got {inserted:?}");
    };
    let id = message.id;

    // A caller that saw another status moves nothing.
    let stale = Correction {
        id,
        from: MessageStatus::Sent,
        to: MessageStatus::Delivered,
        reason: Some("stale"),
    };
    assert!(store.correct_status(&stale).await.unwrap().is_none());
    let corrected = |events: &[messaging_service::domain::MessageEvent]| {
        events
            .iter()
            .filter(|e| e.event == "corrected")
            .map(|e| (e.from_status, e.to_status, e.detail.clone()))
            .collect::<Vec<_>>()
    };
    assert!(corrected(&store.message_events(id).await.unwrap()).is_empty());

    let failed = store
        .correct_status(&Correction {
            id,
            from: MessageStatus::Pending,
            to: MessageStatus::Failed,
            reason: Some("number disconnected"),
        })
        .await
        .unwrap()
        .expect("moved");
    assert_eq!(failed.status, MessageStatus::Failed);
    assert!(failed.failed_at.is_some());

    let pending = store
        .correct_status(&Correction {
            id,
            from: MessageStatus::Failed,
            to: MessageStatus::Pending,
            reason: None,
        })
        .await
        .unwrap()
        .expect("moved");
    assert_eq!(pending.status, MessageStatus::Pending);
    assert_eq!(pending.failed_at, None);

    assert_eq!(
        corrected(&store.message_events(id).await.unwrap()),
        [
            (
                Some(MessageStatus::Pending),
                Some(MessageStatus::Failed),
                json!({"reason": "number disconnected"})
            ),
            (
                Some(MessageStatus::Failed),
                Some(MessageStatus::Pending),
                json!({})
            ),
        ]
    );
}
