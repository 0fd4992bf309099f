use messaging_service::domain::MessageStatus;
use serde_json::{Value, json};

use crate::helpers::{sms_body, spawn_app};

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_first_message_with_200_and_sends_once() {
    let app = spawn_app().await;
    let first = app.post_send_with_key(&sms_body(), "order-42").await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = app.post_send_with_key(&sms_body(), "order-42").await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(first["id"], again["id"]);

    let id = first["id"].as_str().unwrap();
    app.drain_until(id, MessageStatus::Sent).await;
    // A repeat after delivery still returns the original, now sent.
    let late: Value = app
        .post_send_with_key(&sms_body(), "order-42")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(late["id"], first["id"]);
    assert_eq!(late["status"], "sent");
    assert_eq!(app.provider.total_calls(), 1);
    let (_, list) = app.get_json("/api/v1/messages").await;
    assert_eq!(list["total"], 1);
}

#[tokio::test]
async fn the_key_may_come_in_the_body() {
    let app = spawn_app().await;
    let mut body = sms_body();
    body["idempotency_key"] = json!("body-key");
    assert_eq!(app.post_send(&body).await.status(), 201);
    assert_eq!(app.post_send(&body).await.status(), 200);
}

#[tokio::test]
async fn the_same_key_with_a_different_request_is_409() {
    let app = spawn_app().await;
    assert_eq!(
        app.post_send_with_key(&sms_body(), "k1").await.status(),
        201
    );
    let mut other = sms_body();
    other["body"] = json!("different");
    let resp = app.post_send_with_key(&other, "k1").await;
    assert_eq!(resp.status(), 409);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"], "idempotency_conflict");
}

#[tokio::test]
async fn concurrent_requests_with_one_key_create_one_message() {
    let app = spawn_app().await;
    let tries = (0..20).map(|_| {
        let app = &app;
        async move {
            let r = app.post_send_with_key(&sms_body(), "race").await;
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            (status, body["id"].as_str().unwrap().to_owned())
        }
    });
    let results = futures_util::future::join_all(tries).await;
    let created = results.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(created, 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|(s, id)| (*s == 201 || *s == 200) && *id == results[0].1)
    );
    assert_eq!(app.xlen("message_queue:sms").await, 1);
}

#[tokio::test]
async fn an_empty_or_overlong_key_is_422() {
    let app = spawn_app().await;
    let resp = app.post_send_with_key(&sms_body(), &"k".repeat(256)).await;
    assert_eq!(resp.status(), 422);
}
