//! Delivery safety: poison messages, leases renewed while a call is in flight, outcomes
//! kept until written.

use std::time::{Duration, Instant};

use messaging_service::domain::MessageStatus;

use crate::helpers::{KillOnDrop, TestApp, sms_body};
use crate::process::binary;

#[tokio::test]
async fn a_message_whose_deliveries_keep_ending_without_an_outcome_is_dead_lettered() {
    let app = TestApp::builder()
        .env("QUEUE_MAX_DELIVERIES", "3")
        .spawn()
        .await;
    let id = app.send(&sms_body()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let uuid = id.parse().unwrap();
    // Three workers claim it and die before recording anything (their leases end at once).
    for _ in 0..3 {
        let claim = app
            .components
            .store
            .claim(&[uuid], Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(claim.messages.len(), 1);
    }
    // The fourth delivery is one too many: no provider call, a clear error, a dead letter.
    let m = app.drain_until(&id, MessageStatus::Failed).await;
    assert_eq!(m["error"]["code"], "delivery_attempts_exhausted", "{m}");
    assert_eq!(app.provider.calls_for(uuid), 0);
    assert!(app.dead_letters().await.contains(&id));
}

#[tokio::test]
async fn deliveries_that_end_with_an_outcome_never_make_a_message_poison() {
    let app = TestApp::builder()
        .env("QUEUE_MAX_DELIVERIES", "1")
        .env("QUEUE_RETRY_DELAY", "0.01")
        .spawn()
        .await;
    app.provider.fail_next([
        crate::helpers::transient("500"),
        crate::helpers::transient("500"),
    ]);
    let id = app.send(&sms_body()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let m = app.drain_until(&id, MessageStatus::Sent).await;
    assert_eq!(m["retry_count"], 2);
}

#[tokio::test]
async fn a_lease_is_renewed_while_the_provider_call_is_in_flight() {
    if !crate::helpers::requires_postgres_and_redis(
        "a_lease_is_renewed_while_the_provider_call_is_in_flight",
    ) {
        return;
    }
    let app = TestApp::builder()
        .env("QUEUE_VISIBILITY_TIMEOUT", "0.4")
        .spawn()
        .await;
    // The call takes five leases' worth; the worker renews its lease meanwhile.
    let _worker = KillOnDrop(
        binary(
            &app,
            "worker",
            &[
                ("MOCK_PROVIDER_LATENCY_MS", "2000"),
                ("QUEUE_VISIBILITY_TIMEOUT", "0.4"),
                ("WORKER_METRICS_PORT", "0"),
            ],
        )
        .spawn()
        .expect("start the worker"),
    );
    let id = app.send(&sms_body()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let uuid = id.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.message(&id).await["status"] != "sending" {
        assert!(Instant::now() < deadline, "the worker never claimed it");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Another worker looks for abandoned work all along: it must find none.
    loop {
        app.worker.reclaim_once().await.unwrap();
        let m = app.message(&id).await;
        if m["status"] == "sent" {
            break;
        }
        assert!(Instant::now() < deadline, "never sent: {m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.provider.calls_for(uuid),
        0,
        "the live claim was not taken"
    );
    let reclaimed = app
        .events(&id)
        .await
        .iter()
        .any(|e| e["detail"]["reclaimed"] == true);
    assert!(!reclaimed, "no second claim while the first was alive");
}
