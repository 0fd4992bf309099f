//! `PATCH /api/v1/messages/{id}/status`: an operator's correction, judged by the lifecycle
//! table and recorded in the message's events with the reason.

use messaging_service::domain::MessageStatus;
use serde_json::{Value, json};

use crate::helpers::{TestApp, sms_body, spawn_app};

async fn patch_status(app: &TestApp, id: &str, body: &Value) -> (u16, Value) {
    let resp = app
        .client
        .patch(app.url(&format!("/api/v1/messages/{id}/status")))
        .json(body)
        .send()
        .await
        .expect("request");
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or_default(),
    )
}

#[tokio::test]
async fn an_operator_marks_a_sent_message_delivered_and_the_reason_is_in_its_events() {
    let app = spawn_app().await;
    let id = app.send(&sms_body()).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    app.drain_until(&id, MessageStatus::Sent).await;

    let (status, body) = patch_status(
        &app,
        &id,
        &json!({"status": "delivered", "reason": "carrier confirmed by phone"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "delivered");
    assert!(body["delivered_at"].is_string(), "{body}");
    assert_eq!(app.message(&id).await["status"], "delivered");

    let corrected = app
        .events(&id)
        .await
        .into_iter()
        .find(|e| e["event"] == "corrected")
        .expect("a corrected event");
    assert_eq!(corrected["from_status"], "sent");
    assert_eq!(corrected["to_status"], "delivered");
    assert_eq!(corrected["detail"]["reason"], "carrier confirmed by phone");
}

#[tokio::test]
async fn a_move_the_lifecycle_refuses_is_a_409_and_changes_nothing() {
    let app = spawn_app().await;
    let id = app.send(&sms_body()).await["id"]
        .as_str()
        .expect("id")
        .to_owned();

    let (status, body) = patch_status(&app, &id, &json!({"status": "delivered"})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "invalid_transition");
    let message = body["message"].as_str().expect("message");
    assert!(
        message.contains("pending") && message.contains("delivered"),
        "{message}"
    );
    assert_eq!(app.message(&id).await["status"], "pending");
    assert!(
        app.events(&id)
            .await
            .iter()
            .all(|e| e["event"] != "corrected")
    );

    // A message given up on by hand, then put back in line: it is sent.
    let (status, body) = patch_status(&app, &id, &json!({"status": "failed"})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["failed_at"].is_string());
    let (status, body) = patch_status(
        &app,
        &id,
        &json!({"status": "pending", "reason": "number fixed"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["failed_at"].is_null());
    app.drain_until(&id, MessageStatus::Sent).await;
    let corrections: Vec<Value> = app
        .events(&id)
        .await
        .into_iter()
        .filter(|e| e["event"] == "corrected")
        .collect();
    assert_eq!(corrections.len(), 2, "{corrections:?}");
    assert_eq!(corrections[0]["detail"], json!({}));
    assert_eq!(corrections[1]["detail"]["reason"], "number fixed");
}

#[tokio::test]
async fn client_mistakes_name_the_field_and_an_unknown_message_is_a_404() {
    let app = spawn_app().await;
    let id = app.send(&sms_body()).await["id"]
        .as_str()
        .expect("id")
        .to_owned();

    let (status, body) = patch_status(&app, &id, &json!({"status": "lost"})).await;
    assert_eq!((status, &body["error"]), (422, &json!("validation_error")));
    assert_eq!(body["details"]["field"], "status");

    let (status, body) = patch_status(&app, &id, &json!({"reason": "no status"})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["details"]["field"], "status");

    let long = "x".repeat(501);
    let (status, body) =
        patch_status(&app, &id, &json!({"status": "failed", "reason": long})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["details"]["field"], "reason");

    let (status, body) = patch_status(
        &app,
        "0190a0a0-0000-7000-8000-000000000000",
        &json!({"status": "failed"}),
    )
    .await;
    assert_eq!((status, &body["error"]), (404, &json!("not_found")));
    let (status, body) = patch_status(&app, "not-a-uuid", &json!({"status": "failed"})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["details"]["field"], "id");
    assert_eq!(app.message(&id).await["status"], "pending");
}
