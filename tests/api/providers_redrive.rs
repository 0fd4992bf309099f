//! Dead-letter redrive: `POST /api/v1/messages/{id}/retry` and `messaging-service dlq`.

use std::process::Command;

use messaging_service::domain::MessageStatus;

use crate::helpers::{TestApp, permanent, sms_body, spawn_app};

async fn failed_message(app: &TestApp) -> String {
    app.provider.fail_next([permanent("21610")]);
    let id = app.send(&sms_body()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.drain_until(&id, MessageStatus::Failed).await;
    id
}

async fn post_retry(app: &TestApp, id: &str) -> (u16, serde_json::Value) {
    let resp = app
        .client
        .post(app.url(&format!("/api/v1/messages/{id}/retry")))
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or_default(),
    )
}

#[tokio::test]
async fn retrying_a_failed_message_puts_it_back_in_the_queue_and_it_is_sent() {
    let app = spawn_app().await;
    let id = failed_message(&app).await;
    assert_eq!(app.dead_letters().await, vec![id.clone()]);

    let (status, body) = post_retry(&app, &id).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "pending");
    assert_eq!(body["retry_count"], 0);
    assert!(body["error"].is_null());
    assert!(
        app.dead_letters().await.is_empty(),
        "its dead letter is removed"
    );
    assert_eq!(app.xlen("message_queue:sms").await, 1, "it is queued again");

    let sent = app.drain_until(&id, MessageStatus::Sent).await;
    assert_eq!(app.provider.calls_for(id.parse().unwrap()), 2);
    assert!(sent["failed_at"].is_null());
    let redriven = app
        .events(&id)
        .await
        .into_iter()
        .find(|e| e["event"] == "redriven")
        .expect("a redriven event");
    assert_eq!(redriven["from_status"], "failed");
    assert_eq!(redriven["to_status"], "pending");
    assert_eq!(redriven["detail"]["previous_error_code"], "21610");
}

#[tokio::test]
async fn retrying_a_message_that_is_not_failed_is_a_409() {
    let app = spawn_app().await;
    let id = app.send(&sms_body()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = post_retry(&app, &id).await;
    assert_eq!(status, 409);
    assert_eq!(body["error"], "not_failed");
    assert!(body["message"].as_str().unwrap().contains("pending"));

    app.drain_until(&id, MessageStatus::Sent).await;
    let (status, _) = post_retry(&app, &id).await;
    assert_eq!(status, 409);

    let (status, body) = post_retry(&app, "0190a0a0-0000-7000-8000-000000000000").await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let (status, _) = post_retry(&app, "not-a-uuid").await;
    assert_eq!(status, 422);
}

fn dlq(app: &TestApp, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_messaging-service"))
        .arg("dlq")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", app.database_url().expose())
        .env("REDIS_URL", "redis://127.0.0.1:6379/0")
        .env("QUEUE_KEY_PREFIX", &app.prefix)
        .env("LOG_LEVEL", "warn")
        .output()
        .expect("run dlq");
    assert!(
        out.status.success(),
        "dlq {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn the_dlq_command_lists_dead_letters_and_redrives_them_all() {
    if !crate::helpers::requires_postgres_and_redis(
        "the_dlq_command_lists_dead_letters_and_redrives_them_all",
    ) {
        return;
    }
    let app = spawn_app().await;
    let a = failed_message(&app).await;
    let b = failed_message(&app).await;

    let listed = dlq(&app, &["list"]);
    assert!(listed.contains(&a) && listed.contains(&b), "{listed}");
    assert!(listed.contains("21610"), "the reason is shown: {listed}");
    assert!(listed.contains("2 dead letter(s)"), "{listed}");

    let out = dlq(&app, &["redrive", "--all"]);
    assert!(out.contains("2 message(s) redriven"), "{out}");
    assert!(app.dead_letters().await.is_empty());
    for id in [&a, &b] {
        assert_eq!(app.message(id).await["status"], "pending");
    }
    for id in [&a, &b] {
        app.drain_until(id, MessageStatus::Sent).await;
    }
    let out = dlq(&app, &["redrive", "--all"]);
    assert!(out.contains("0 message(s) redriven"), "{out}");
}

#[tokio::test]
async fn the_dlq_command_redrives_named_messages_only() {
    if !crate::helpers::requires_postgres_and_redis("the_dlq_command_redrives_named_messages_only")
    {
        return;
    }
    let app = spawn_app().await;
    let a = failed_message(&app).await;
    let b = failed_message(&app).await;
    let out = dlq(&app, &["redrive", &a]);
    assert!(out.contains("1 message(s) redriven"), "{out}");
    assert_eq!(app.message(&a).await["status"], "pending");
    assert_eq!(app.message(&b).await["status"], "failed");
    assert_eq!(app.dead_letters().await, vec![b]);
}

#[tokio::test]
async fn a_retry_while_the_database_is_down_is_503_and_works_once_it_is_back() {
    if !crate::helpers::requires_postgres_and_redis(
        "a_retry_while_the_database_is_down_is_503_and_works_once_it_is_back",
    ) {
        return;
    }
    let app = TestApp::builder().db_proxy().spawn().await;
    let id = failed_message(&app).await;
    let proxy = app.db_proxy.as_ref().unwrap();
    proxy.cut();
    let (status, body) = post_retry(&app, &id).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "service_unavailable");
    assert_eq!(body["details"]["dependency"], "database");
    proxy.restore();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (status, body) = post_retry(&app, &id).await;
        if status == 200 {
            assert_eq!(body["status"], "pending");
            break;
        }
        assert_eq!(status, 503, "only an outage may refuse it: {body}");
        assert!(
            std::time::Instant::now() < deadline,
            "the retry never succeeded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
