//! Crashes and outages: nothing accepted is ever lost.

use std::time::{Duration, Instant};

use messaging_service::domain::MessageStatus;

use crate::helpers::{TestApp, sms_body};

#[tokio::test]
async fn a_worker_killed_mid_flight_loses_nothing() {
    let app = TestApp::builder()
        .env("QUEUE_VISIBILITY_TIMEOUT", "0.3")
        .spawn()
        .await;
    let lease = Duration::from_millis(300);
    let id = app.send(&sms_body()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let uuid = id.parse().unwrap();

    // A worker reads the task and claims the message, then dies before sending or acking.
    let dead = app
        .components
        .queue
        .fetch("doomed-worker", 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    let claim = app.components.store.claim(&[uuid], lease).await.unwrap();
    assert_eq!(claim.messages.len(), 1);
    assert_eq!(app.message(&id).await["status"], "sending");

    // Fresh reads see nothing: the task belongs to the dead worker until its claim expires.
    assert_eq!(app.worker.process_once().await.unwrap(), 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.worker.reclaim_once().await.unwrap() == 0 {
        assert!(
            Instant::now() < deadline,
            "the abandoned task was never reclaimed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = app.message(&id).await;
    assert_eq!(m["status"], "sent");
    assert_eq!(app.provider.calls_for(uuid), 1);
    assert_eq!(app.xlen("message_queue:sms").await, 0);
    let reclaimed = app
        .events(&id)
        .await
        .iter()
        .any(|e| e["detail"]["reclaimed"] == true);
    assert!(reclaimed, "the audit trail shows the reclaim");
}

/// A worker claims a message and dies, and its task is lost as well (acknowledged, as if
/// the queue had dropped it), so no reclaim can find it. The sweeper leaves the claim alone
/// while its lease holds, then takes it back, and the message is sent once.
#[tokio::test]
async fn an_abandoned_claim_whose_task_was_lost_is_swept_back_and_sent_once() {
    let app = TestApp::builder()
        .env("QUEUE_VISIBILITY_TIMEOUT", "2")
        .env("QUEUE_SWEEP_AGE", "0")
        .spawn()
        .await;
    let id = app.send(&sms_body()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let uuid = id.parse().unwrap();
    let dead = app
        .components
        .queue
        .fetch("doomed-worker", 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    let claim = app
        .components
        .store
        .claim(&[uuid], Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(claim.messages.len(), 1);
    app.components.queue.ack(&dead).await.unwrap();
    assert_eq!(
        app.worker.sweep_once().await.unwrap(),
        0,
        "a live claim is not swept"
    );
    assert_eq!(app.message(&id).await["status"], "sending");

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match app.worker.sweep_once().await.unwrap() {
            0 => assert!(
                Instant::now() < deadline,
                "the abandoned claim was never swept back"
            ),
            swept => {
                assert_eq!(swept, 1);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.drain_until(&id, MessageStatus::Sent).await;
    assert_eq!(app.provider.calls_for(uuid), 1);
}

#[tokio::test]
async fn a_slow_live_worker_is_not_robbed_before_its_claim_expires() {
    let app = spawn_with_visibility("30").await;
    let id = app.send(&sms_body()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let uuid = id.parse().unwrap();
    let _held = app
        .components
        .queue
        .fetch("slow-worker", 10, Duration::ZERO)
        .await
        .unwrap();
    app.components
        .store
        .claim(&[uuid], Duration::from_secs(30))
        .await
        .unwrap();
    // Another copy of the task (as the sweeper might add) must not cause a second send.
    app.components
        .queue
        .enqueue(&[messaging_service::queue::Task {
            message_id: uuid,
            kind: messaging_service::domain::MessageType::Sms,
        }])
        .await
        .unwrap();
    assert_eq!(app.worker.process_once().await.unwrap(), 1);
    assert_eq!(app.provider.calls_for(uuid), 0);
    assert_eq!(app.message(&id).await["status"], "sending");
}

async fn spawn_with_visibility(secs: &str) -> TestApp {
    TestApp::builder()
        .env("QUEUE_VISIBILITY_TIMEOUT", secs)
        .spawn()
        .await
}

#[tokio::test]
async fn with_redis_unreachable_a_send_is_still_accepted_and_the_sweeper_delivers_it_later() {
    if !crate::helpers::requires_postgres_and_redis(
        "with_redis_unreachable_a_send_is_still_accepted_and_the_sweeper_delivers_it_later",
    ) {
        return;
    }
    let app = TestApp::builder()
        .redis_proxy()
        .env("QUEUE_SWEEP_AGE", "0")
        .spawn()
        .await;
    let proxy = app.redis_proxy.as_ref().unwrap();
    proxy.cut();

    let started = Instant::now();
    let resp = app.post_send(&sms_body()).await;
    assert_eq!(resp.status(), 201, "the database has it: accept it");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the send path does not hang on Redis"
    );
    let m: serde_json::Value = resp.json().await.unwrap();
    let id = m["id"].as_str().unwrap().to_owned();
    assert_eq!(m["status"], "pending");
    assert_eq!(
        app.xlen("message_queue:sms").await,
        0,
        "nothing reached the stream"
    );

    // While Redis is away the message waits, safe in PostgreSQL.
    assert!(app.worker.sweep_once().await.is_err());
    assert_eq!(app.message(&id).await["status"], "pending");

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if app.worker.sweep_once().await.is_ok_and(|n| n > 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sweeper never re-enqueued the message"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sent = app.drain_until(&id, MessageStatus::Sent).await;
    assert!(sent["sent_at"].is_string());
    assert_eq!(app.provider.calls_for(id.parse().unwrap()), 1);
}

#[tokio::test]
async fn the_sweeper_leaves_recent_pending_messages_alone() {
    let app = TestApp::builder()
        .env("QUEUE_SWEEP_AGE", "3600")
        .spawn()
        .await;
    app.send(&sms_body()).await;
    assert_eq!(app.worker.sweep_once().await.unwrap(), 0);
    assert_eq!(
        app.xlen("message_queue:sms").await,
        1,
        "no duplicate entries for healthy messages"
    );
}

#[tokio::test]
async fn a_retry_whose_scheduled_entry_was_lost_is_swept_back() {
    if !crate::helpers::requires_postgres_and_redis(
        "a_retry_whose_scheduled_entry_was_lost_is_swept_back",
    ) {
        return;
    }
    let app = TestApp::builder().env("QUEUE_SWEEP_AGE", "0").spawn().await;
    app.provider.fail_next([crate::helpers::transient("500")]);
    let id = app.send(&sms_body()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.drain_until(&id, MessageStatus::Retry).await;
    // Lose the delayed entry, as if Redis had been flushed.
    let mut conn = app.redis().await;
    let _: () = redis::cmd("DEL")
        .arg(format!("{}message_queue:delayed", app.prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    // The sweeper takes the retry back once it falls due (QUEUE_RETRY_DELAY is 10 ms here).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match app.worker.sweep_once().await.unwrap() {
            0 => assert!(Instant::now() < deadline, "the retry was never swept back"),
            swept => {
                assert_eq!(swept, 1);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app.drain_until(&id, MessageStatus::Sent).await;
}
