//! The event outbox, endpoints and deliveries, run on PostgreSQL and on SQLite.

use std::sync::Arc;
use std::time::Duration;

use messaging_service::domain::event::new_secret;
use messaging_service::domain::{InboundContent, MessageType, NewMessage};
use messaging_service::store::outbox::{AttemptOutcome, AttemptResult, DueDelivery, NewEndpoint};
use messaging_service::store::{Page, Store};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

on_every_store!(
    events_are_written_only_when_someone_listens,
    claims_respect_busy_endpoints_their_caps_and_leases,
    attempts_retry_fail_disable_and_redrive,
);

/// An event an earlier version stored without its deliveries (it fanned out in a step of its
/// own) is fanned out by `dispatch_events`, once; on each backend, the row written by hand.
#[tokio::test]
async fn events_left_without_deliveries_by_an_earlier_version_are_fanned_out_on_postgresql() {
    let (store, db) = crate::backends::postgres().await;
    let a = endpoint(&store, Some(vec!["message.received"])).await;
    let pool = sqlx::PgPool::connect(&db.url()).await.expect("connect");
    sqlx::query(
        "insert into events (id, type, status, dispatched) values ('evt_old', 'message.received', 'received', false)",
    )
    .execute(&pool)
    .await
    .expect("insert an undispatched event");
    pool.close().await;
    an_old_event_is_fanned_out_once(&store, a).await;
}

#[tokio::test]
async fn events_left_without_deliveries_by_an_earlier_version_are_fanned_out_on_sqlite() {
    let (store, dir) = crate::backends::sqlite().await;
    let a = endpoint(&store, Some(vec!["message.received"])).await;
    let pool = sqlx::SqlitePool::connect(&dir.sqlite_url())
        .await
        .expect("connect");
    sqlx::query(
        "insert into events (id, type, status, dispatched, created_at)
         values ('evt_old', 'message.received', 'received', 0, '2026-12-01T00:00:00.000000Z')",
    )
    .execute(&pool)
    .await
    .expect("insert an undispatched event");
    pool.close().await;
    an_old_event_is_fanned_out_once(&store, a).await;
}

async fn an_old_event_is_fanned_out_once(store: &Arc<dyn Store>, endpoint_id: Uuid) {
    assert!(
        store
            .claim_deliveries(10, LEASE, &[], 10)
            .await
            .unwrap()
            .is_empty(),
        "no delivery before the fan-out"
    );
    assert_eq!(store.dispatch_events(10).await.unwrap(), 1);
    assert_eq!(store.dispatch_events(10).await.unwrap(), 0, "once");
    let due = store.claim_deliveries(10, LEASE, &[], 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(
        (due[0].event_id.as_str(), due[0].endpoint_id),
        ("evt_old", Some(endpoint_id))
    );
}

fn inbound(id: &str) -> NewMessage {
    NewMessage::inbound(InboundContent {
        kind: MessageType::Sms,
        from: Some("+15559876543".into()),
        to: Some("+15551234567".into()),
        body: Some(format!("inbound {id}")),
        subject: None,
        attachments: Vec::new(),
        provider: "twilio".into(),
        provider_message_id: Some(id.into()),
        provider_timestamp: None,
        metadata: None,
    })
    .unwrap()
}

async fn endpoint(store: &Arc<dyn Store>, events: Option<Vec<&str>>) -> Uuid {
    let e = NewEndpoint {
        id: Uuid::now_v7(),
        url: "https://hooks.example.com/in".into(),
        events: events.map(|v| v.into_iter().map(str::to_owned).collect()),
        description: None,
        secret: new_secret(),
    };
    store.create_endpoint(&e).await.unwrap().id
}

fn result(d: &DueDelivery, outcome: AttemptOutcome, code: i32, gone: bool) -> AttemptResult {
    AttemptResult {
        delivery_id: d.delivery_id,
        endpoint_id: d.endpoint_id,
        event_id: d.event_id.clone(),
        event_type: d.event_type.clone(),
        attempt: d.attempt,
        status_code: Some(code),
        error: None,
        duration_ms: 3,
        outcome,
        payload: json!({"type": d.event_type}),
        gone,
    }
}

const LEASE: Duration = Duration::from_secs(60);

fn long_ago() -> OffsetDateTime {
    OffsetDateTime::now_utc() - Duration::from_secs(3600)
}

async fn events_are_written_only_when_someone_listens(store: Arc<dyn Store>) {
    store.insert_messages(&[inbound("SM1")]).await.unwrap();
    assert_eq!(store.events_pending().await.unwrap(), 0, "nobody listens");

    // An endpoint for another type does not count.
    endpoint(&store, Some(vec!["message.failed"])).await;
    store.insert_messages(&[inbound("SM2")]).await.unwrap();
    assert_eq!(store.events_pending().await.unwrap(), 0);

    let id = endpoint(&store, Some(vec!["message.received"])).await;
    store.insert_messages(&[inbound("SM3")]).await.unwrap();
    assert_eq!(store.events_pending().await.unwrap(), 1);
    assert_eq!(
        store.dispatch_events(10).await.unwrap(),
        0,
        "fanned out as it was written"
    );
    let due = store.claim_deliveries(10, LEASE, &[], 10).await.unwrap();
    assert_eq!(due.len(), 1);
    let d = &due[0];
    assert_eq!(d.event_type, "message.received");
    assert_eq!(d.endpoint_id, Some(id));
    assert_eq!(d.status.as_deref(), Some("received"));
    assert_eq!(d.attempt, 1);
    assert_eq!(d.secrets.len(), 1);
    assert!(d.endpoint_enabled);
    assert!(d.event_id.starts_with("evt_"));
    store
        .record_attempts(
            &[result(d, AttemptOutcome::Delivered, 200, false)],
            long_ago(),
        )
        .await
        .unwrap();
    assert_eq!(store.events_pending().await.unwrap(), 0);
    let (attempts, total) = store
        .endpoint_attempts(
            id,
            Page {
                limit: 10,
                offset: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(total, 1);
    assert_eq!(attempts[0].status_code, Some(200));
    assert_eq!(attempts[0].event_id, d.event_id);
}

async fn claims_respect_busy_endpoints_their_caps_and_leases(store: Arc<dyn Store>) {
    let a = endpoint(&store, None).await;
    for _ in 0..5 {
        store.add_test_event(a, &json!({})).await.unwrap();
    }
    assert_eq!(
        store.dispatch_events(100).await.unwrap(),
        0,
        "a test ping is fanned out as it is written"
    );

    let first = store.claim_deliveries(10, LEASE, &[], 2).await.unwrap();
    assert_eq!(first.len(), 2, "at most two for one endpoint");
    assert!(
        store
            .claim_deliveries(10, LEASE, &[a], 2)
            .await
            .unwrap()
            .is_empty()
    );
    let second = store.claim_deliveries(10, LEASE, &[], 2).await.unwrap();
    assert_eq!(second.len(), 2);
    assert!(
        second
            .iter()
            .all(|d| first.iter().all(|f| f.delivery_id != d.delivery_id))
    );

    // A lease that ran out (a dead worker) makes the claim due again, as the next attempt.
    let last = store
        .claim_deliveries(10, Duration::ZERO, &[], 2)
        .await
        .unwrap();
    assert_eq!(last.len(), 1);
    let again = store.claim_deliveries(10, LEASE, &[], 2).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].delivery_id, last[0].delivery_id);
    assert_eq!(again[0].attempt, 2);
    assert_eq!(store.events_pending().await.unwrap(), 5);
}

async fn attempts_retry_fail_disable_and_redrive(store: Arc<dyn Store>) {
    let a = endpoint(&store, None).await;
    store.add_test_event(a, &json!({})).await.unwrap();
    let d = store
        .claim_deliveries(10, LEASE, &[], 10)
        .await
        .unwrap()
        .remove(0);

    let later = OffsetDateTime::now_utc() + Duration::from_secs(600);
    store
        .record_attempts(
            &[result(&d, AttemptOutcome::Retry { at: later }, 500, false)],
            long_ago(),
        )
        .await
        .unwrap();
    assert!(
        store
            .claim_deliveries(10, LEASE, &[], 10)
            .await
            .unwrap()
            .is_empty(),
        "not due before its retry time"
    );
    assert_eq!(store.events_pending().await.unwrap(), 1);
    let (attempts, _) = store
        .endpoint_attempts(
            a,
            Page {
                limit: 10,
                offset: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(attempts[0].status_code, Some(500));
    assert!(attempts[0].next_attempt_at.is_some());

    // 410: the chain fails and the endpoint is disabled.
    store
        .record_attempts(&[result(&d, AttemptOutcome::Failed, 410, true)], long_ago())
        .await
        .unwrap();
    let e = store.get_endpoint(a).await.unwrap().unwrap();
    assert!(!e.enabled);
    assert!(e.disabled_reason.unwrap().contains("410"));
    let failed = store
        .failed_deliveries(Page {
            limit: 10,
            offset: 0,
        })
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].event_type, "test.ping");
    assert_eq!(store.events_pending().await.unwrap(), 0);

    assert_eq!(store.redrive_deliveries(None).await.unwrap(), 1);
    let redriven = store.claim_deliveries(10, LEASE, &[], 10).await.unwrap();
    assert_eq!(redriven.len(), 1);
    assert_eq!(redriven[0].attempt, 1, "a redrive starts the chain again");
    assert!(!redriven[0].endpoint_enabled, "still disabled: not sent");
    // A body, once stored, is never replaced (retries send the same data).
    assert_eq!(redriven[0].payload, Some(json!({})));

    // A failure streak longer than the limit disables an endpoint.
    let b = endpoint(&store, None).await;
    store.add_test_event(b, &json!({})).await.unwrap();
    let d = store
        .claim_deliveries(10, LEASE, &[a], 10)
        .await
        .unwrap()
        .remove(0);
    store
        .record_attempts(
            &[result(&d, AttemptOutcome::Retry { at: later }, 500, false)],
            OffsetDateTime::now_utc() + Duration::from_secs(1),
        )
        .await
        .unwrap();
    let e = store.get_endpoint(b).await.unwrap().unwrap();
    assert!(!e.enabled);
    assert!(e.disabled_reason.unwrap().contains("failing without pause"));
}
