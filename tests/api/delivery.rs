use messaging_service::domain::MessageStatus;

use messaging_service::domain::MessageType;
use messaging_service::queue::Task;
use uuid::Uuid;

use crate::helpers::{
    TestApp, permanent, requires_postgres_and_redis, sms_body, spawn_app, transient,
};

#[tokio::test]
async fn transient_errors_are_retried_then_sent() {
    let app = spawn_app().await;
    app.provider.fail_next([transient("429"), transient("500")]);
    let id = app.send(&sms_body()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sent = app.drain_until(&id, MessageStatus::Sent).await;
    assert_eq!(sent["retry_count"], 2);
    assert!(sent["error"].is_null(), "a later success clears the error");
    assert_eq!(app.provider.calls_for(id.parse().unwrap()), 3);
    let statuses: Vec<String> = app
        .events(&id)
        .await
        .iter()
        .map(|e| e["to_status"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        statuses,
        [
            "pending", "sending", "retry", "sending", "retry", "sending", "sent"
        ]
    );
    assert!(app.dead_letters().await.is_empty());
}

#[tokio::test]
async fn exhausted_retries_fail_the_message_and_dead_letter_it() {
    let app = TestApp::builder()
        .env("QUEUE_MAX_RETRIES", "2")
        .spawn()
        .await;
    app.provider.fail_next([
        transient("503"),
        transient("503"),
        transient("503"),
        transient("503"),
    ]);
    let id = app.send(&sms_body()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = app.drain_until(&id, MessageStatus::Failed).await;
    assert_eq!(failed["retry_count"], 2);
    assert_eq!(failed["error"]["code"], "503");
    assert!(failed["failed_at"].is_string());
    assert_eq!(
        app.provider.calls_for(id.parse().unwrap()),
        3,
        "first attempt plus two retries"
    );
    assert_eq!(app.dead_letters().await, vec![id]);
    assert_eq!(app.xlen("message_queue:sms").await, 0);
}

#[tokio::test]
async fn permanent_errors_fail_at_once() {
    let app = spawn_app().await;
    app.provider.fail_next([permanent("21610")]);
    let id = app.send(&sms_body()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = app.drain_until(&id, MessageStatus::Failed).await;
    assert_eq!(failed["retry_count"], 0);
    assert_eq!(failed["error"]["code"], "21610");
    assert_eq!(app.provider.calls_for(id.parse().unwrap()), 1);
    assert_eq!(app.dead_letters().await, vec![id]);
}

#[tokio::test]
async fn the_mock_providers_injected_429s_are_retried_until_dead_lettered() {
    let app = TestApp::builder()
        .mock_provider()
        .env("PROVIDER_429_RATE", "1")
        .env("QUEUE_MAX_RETRIES", "1")
        .spawn()
        .await;
    let id = app.send(&sms_body()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = app.drain_until(&id, MessageStatus::Failed).await;
    assert_eq!(failed["error"]["code"], "20429");
    assert_eq!(failed["retry_count"], 1);
    assert_eq!(app.dead_letters().await, vec![id]);
}

#[tokio::test]
async fn the_mock_provider_returns_twilio_and_sendgrid_shaped_ids() {
    let app = TestApp::builder().mock_provider().spawn().await;
    let sms = app.send(&sms_body()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sent = app.drain_until(&sms, MessageStatus::Sent).await;
    let sid = sent["provider_message_id"].as_str().unwrap();
    assert!(sid.starts_with("SM") && sid.len() == 34, "{sid}");
    assert_eq!(sent["provider"], "mock");
    let email = app
        .send(&serde_json::json!({"from": "a@example.com", "to": "b@example.com", "body": "x"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sent = app.drain_until(&email, MessageStatus::Sent).await;
    assert_eq!(sent["provider_message_id"].as_str().unwrap().len(), 22);
}

/// A task that reaches a worker before its message's retry is due (as one let out by a
/// worker whose clock runs ahead of the database's) is put off until then, not dropped.
#[tokio::test]
async fn a_retry_whose_task_comes_early_is_sent_once_it_falls_due() {
    if !requires_postgres_and_redis("a_retry_whose_task_comes_early_is_sent_once_it_falls_due") {
        return;
    }
    let app = TestApp::builder()
        .env("QUEUE_RETRY_DELAY", "1")
        .env("QUEUE_MAX_RETRY_DELAY", "1")
        .spawn()
        .await;
    app.provider.fail_next([transient("503")]);
    let id = app.send(&sms_body()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let retry = app.drain_until(&id, MessageStatus::Retry).await;
    let message_id: Uuid = id.parse().unwrap();

    // Let the retry out early: off the delayed set, into the stream.
    let mut conn = app.redis().await;
    let removed: u64 = redis::cmd("DEL")
        .arg(format!("{}message_queue:delayed", app.prefix))
        .query_async(&mut conn)
        .await
        .expect("DEL");
    assert_eq!(removed, 1, "the retry waited in the delayed set");
    let task = Task {
        message_id,
        kind: MessageType::Sms,
    };
    app.components.queue.enqueue(&[task]).await.unwrap();
    assert_eq!(app.worker.process_once().await.unwrap(), 1);
    let now = app.message(&id).await;
    if now["status"] == "retry" {
        assert_eq!(app.provider.calls_for(message_id), 1, "not sent before due");
        let delayed: u64 = redis::cmd("ZCARD")
            .arg(format!("{}message_queue:delayed", app.prefix))
            .query_async(&mut conn)
            .await
            .expect("ZCARD");
        assert_eq!(
            delayed, 1,
            "the early task waits for the retry's time again: {now}"
        );
    } else {
        eprintln!(
            "the retry fell due before the early task was examined ({retry}); only checking it is sent"
        );
    }

    let sent = app.drain_until(&id, MessageStatus::Sent).await;
    assert_eq!(app.provider.calls_for(message_id), 2);
    assert_eq!(sent["retry_count"], 1);
}

/// Duplicate tasks (the sweeper's beside the original, a reclaim beside a slow worker) are
/// taken by several workers at once: their claims race for the same messages, and each
/// message is still sent once, counted at the provider.
#[tokio::test]
async fn duplicate_tasks_taken_by_workers_at_once_send_each_message_once() {
    let app = TestApp::builder()
        .env("QUEUE_BATCH_SIZE", "10")
        .spawn()
        .await;
    let mut ids: Vec<Uuid> = Vec::new();
    for _ in 0..20 {
        // Ten messages (their tasks are the next batch), three more copies of each task
        // (the three batches after it), then four workers take the four batches at once.
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let sent = app.send(&sms_body()).await;
            let id: Uuid = sent["id"].as_str().unwrap().parse().unwrap();
            ids.push(id);
            tasks.push(Task {
                message_id: id,
                kind: MessageType::Sms,
            });
        }
        for _ in 0..3 {
            app.components.queue.enqueue(&tasks).await.unwrap();
        }
        let round = futures_util::future::join_all((0..4).map(|_| app.worker.process_once())).await;
        let handled: usize = round.into_iter().map(|r| r.unwrap()).sum();
        assert_eq!(handled, 40, "four batches of ten tasks");
    }
    for id in &ids {
        assert_eq!(app.provider.calls_for(*id), 1, "message {id} sent once");
        let message = app.message(&id.to_string()).await;
        assert_eq!(message["status"], "sent", "{message}");
    }
}
