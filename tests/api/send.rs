use messaging_service::domain::MessageStatus;
use serde_json::json;

use crate::helpers::{sms_body, spawn_app};

#[tokio::test]
async fn send_sms_returns_201_pending_and_queues_it_in_redis() {
    let app = spawn_app().await;
    let m = app.send(&sms_body()).await;
    assert_eq!(m["status"], "pending");
    assert_eq!(m["type"], "sms");
    assert_eq!(m["direction"], "outbound");
    assert_eq!(m["from"], "+15551234567");
    assert!(m["conversation_id"].is_string());
    assert!(m["sent_at"].is_null());
    // No worker has run: the backlog is exactly this message.
    assert_eq!(app.xlen("message_queue:sms").await, 1);
}

#[tokio::test]
async fn worker_delivers_sms_mms_and_email_to_sent() {
    let app = spawn_app().await;
    let bodies = [
        sms_body(),
        json!({"from": "+15551234567", "to": "+15559876543", "type": "mms", "body": "pic",
               "attachments": ["https://example.com/cat.png"]}),
        json!({"from": "sender@example.com", "to": "Recipient@Example.COM", "type": "email",
               "subject": "Hello", "body": "<p>Hi</p>"}),
    ];
    for body in bodies {
        let m = app.send(&body).await;
        let id = m["id"].as_str().unwrap();
        let sent = app.drain_until(id, MessageStatus::Sent).await;
        assert_eq!(sent["provider"], "fake");
        assert!(
            sent["provider_message_id"]
                .as_str()
                .unwrap()
                .starts_with("FAKE")
        );
        assert!(sent["sent_at"].is_string());
        assert_eq!(app.provider.calls_for(id.parse().unwrap()), 1);
    }
    assert_eq!(
        app.xlen("message_queue:sms").await,
        0,
        "acknowledged entries are deleted"
    );
    assert_eq!(app.xlen("message_queue:mms").await, 0);
    assert_eq!(app.xlen("message_queue:email").await, 0);
}

#[tokio::test]
async fn type_is_inferred_from_the_recipient() {
    let app = spawn_app().await;
    let email = app
        .send(&json!({"from": "a@example.com", "to": "b@example.com", "body": "x"}))
        .await;
    assert_eq!(email["type"], "email");
    let mms = app
        .send(&json!({"from": "+15551234567", "to": "+15559876543", "attachments": ["https://example.com/a.jpg"]}))
        .await;
    assert_eq!(mms["type"], "mms");
    let sms = app
        .send(&json!({"from": "+15551234567", "to": "+15559876543", "body": "x"}))
        .await;
    assert_eq!(sms["type"], "sms");
}

#[tokio::test]
async fn events_record_every_transition_of_a_delivered_message() {
    let app = spawn_app().await;
    let id = app.send(&sms_body()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.drain_until(&id, MessageStatus::Sent).await;
    let events = app.events(&id).await;
    let path: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["from_status"].as_str().unwrap_or("").to_owned(),
                e["to_status"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        path,
        vec![
            ("".into(), "pending".into()),
            ("pending".into(), "sending".into()),
            ("sending".into(), "sent".into())
        ]
    );
}

#[tokio::test]
async fn replies_thread_into_the_same_conversation() {
    let app = spawn_app().await;
    let a = app.send(&sms_body()).await;
    let b = app
        .send(&json!({"from": "+15559876543", "to": "+15551234567", "body": "reply"}))
        .await;
    assert_eq!(a["conversation_id"], b["conversation_id"]);
    let other = app
        .send(&json!({"from": "+15551234567", "to": "+15550000000", "body": "x"}))
        .await;
    assert_ne!(a["conversation_id"], other["conversation_id"]);
}

#[tokio::test]
async fn sync_mode_answers_with_the_final_status_and_queues_nothing() {
    let app = crate::helpers::TestApp::builder()
        .env("SYNC_MESSAGE_PROCESSING", "true")
        .spawn()
        .await;
    let m = app.send(&sms_body()).await;
    assert_eq!(m["status"], "sent");
    assert!(m["sent_at"].is_string());
    let id = m["id"].as_str().unwrap();
    assert_eq!(app.xlen("message_queue:sms").await, 0);
    // A worker running anyway must not send it a second time.
    app.worker.process_once().await.unwrap();
    app.worker.sweep_once().await.unwrap();
    assert_eq!(app.provider.calls_for(id.parse().unwrap()), 1);
}

#[tokio::test]
async fn many_concurrent_sends_are_all_stored_once() {
    let app = spawn_app().await;
    let sends = (0..200).map(|i| {
        let body = json!({"from": "+15551234567", "to": format!("+1555000{:04}", i), "body": format!("n{i}")});
        let app = &app;
        async move { app.post_send(&body).await.status().as_u16() }
    });
    let statuses = futures_util::future::join_all(sends).await;
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    let (_, list) = app.get_json("/api/v1/messages?limit=1").await;
    assert_eq!(list["total"], 200);
    assert_eq!(app.xlen("message_queue:sms").await, 200);
}

#[tokio::test]
async fn the_running_worker_drains_all_three_streams_with_fewer_slots_than_entries_read() {
    // One read returns up to a batch per stream, i.e. more tasks than the worker has slots.
    let app = crate::helpers::TestApp::builder()
        .env("WORKER_CONCURRENCY", "4")
        .env("QUEUE_BATCH_SIZE", "4")
        .spawn()
        .await;
    for i in 0..10 {
        app.send(&json!({"from": "+15551234567", "to": format!("+1555100{i:04}"), "body": "s"}))
            .await;
        app.send(
            &json!({"from": "+15551234567", "to": format!("+1555200{i:04}"), "type": "mms",
                         "attachments": ["https://example.com/a.png"]}),
        )
        .await;
        app.send(
            &json!({"from": "a@example.com", "to": format!("user{i}@example.com"), "body": "e"}),
        )
        .await;
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(
        app.worker
            .clone()
            .run(stop.clone(), std::time::Duration::from_secs(5)),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, sent) = app.get_json("/api/v1/messages?status=sent&limit=1").await;
        if sent["total"] == 30 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker stalled: {sent}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    stop.cancel();
    running.await.unwrap().unwrap();
    assert_eq!(app.provider.total_calls(), 30);
}
