//! The original `/api` routes with the exact payloads their clients send.

use serde_json::{Value, json};

use crate::conversations::post;
use crate::helpers::{TestApp, spawn_app};

fn sms() -> Value {
    json!({"from": "+12016661234", "to": "+18045551234", "type": "sms",
           "body": "Hello! This is a test SMS message.", "attachments": null,
           "timestamp": "2024-11-01T14:00:00Z"})
}

fn mms() -> Value {
    json!({"from": "+12016661234", "to": "+18045551234", "type": "mms",
           "body": "Hello! This is a test MMS message with attachment.",
           "attachments": ["https://example.com/image.jpg"], "timestamp": "2024-11-01T14:00:00Z"})
}

fn email() -> Value {
    json!({"from": "user@usehatchapp.com", "to": "contact@gmail.com",
           "body": "Hello! This is a test email message with <b>HTML</b> formatting.",
           "attachments": ["https://example.com/document.pdf"], "timestamp": "2024-11-01T14:00:00Z"})
}

fn sms_webhook() -> Value {
    json!({"from": "+18045551234", "to": "+12016661234", "type": "sms",
           "messaging_provider_id": "message-1", "body": "This is an incoming SMS message",
           "attachments": null, "timestamp": "2024-11-01T14:00:00Z"})
}

fn mms_webhook() -> Value {
    json!({"from": "+18045551234", "to": "+12016661234", "type": "mms",
           "messaging_provider_id": "message-2", "body": "This is an incoming MMS message",
           "attachments": ["https://example.com/received-image.jpg"],
           "timestamp": "2024-11-01T14:00:00Z"})
}

fn email_webhook() -> Value {
    json!({"from": "contact@gmail.com", "to": "user@usehatchapp.com", "xillio_id": "message-3",
           "body": "<html><body>This is an incoming email with <b>HTML</b> content</body></html>",
           "attachments": ["https://example.com/received-document.pdf"],
           "timestamp": "2024-11-01T14:00:00Z"})
}

async fn all_messages(app: &TestApp) -> Vec<Value> {
    let (_, list) = app.get_json("/api/v1/messages?limit=100").await;
    list["messages"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn the_original_send_routes_answer_200_in_the_original_shape_and_queue_the_message() {
    let app = spawn_app().await;
    for (path, payload, kind) in [
        ("/api/messages/sms", sms(), "sms"),
        ("/api/messages/sms", mms(), "mms"),
        ("/api/messages/email", email(), "email"),
    ] {
        let (status, answer) = post(&app, path, &payload).await;
        assert_eq!(status, 200, "{path}: {answer}");
        assert_eq!(answer["status"], "success");
        assert_eq!(answer["type"], kind);
        assert_eq!(answer["provider"], "fake");
        let id = answer["message_id"].as_str().expect("message_id");
        let stored = app.message(id).await;
        assert_eq!(stored["conversation_id"], answer["conversation_id"]);
        assert_eq!(stored["direction"], "outbound");
        assert_eq!(stored["status"], "pending");
        assert_eq!(stored["body"], payload["body"]);
        assert_eq!(stored["provider_timestamp"], "2024-11-01T14:00:00Z");
    }
    assert_eq!(app.xlen("message_queue:sms").await, 1);
    assert_eq!(app.xlen("message_queue:mms").await, 1);
    assert_eq!(app.xlen("message_queue:email").await, 1);
}

#[tokio::test]
async fn the_original_webhooks_store_received_messages_in_the_conversation_of_the_outbound_ones() {
    let app = spawn_app().await;
    let (_, sent_sms) = post(&app, "/api/messages/sms", &sms()).await;
    let (_, sent_email) = post(&app, "/api/messages/email", &email()).await;
    for (path, payload) in [
        ("/api/webhooks/sms", sms_webhook()),
        ("/api/webhooks/sms", mms_webhook()),
        ("/api/webhooks/email", email_webhook()),
    ] {
        let (status, answer) = post(&app, path, &payload).await;
        assert_eq!(status, 200, "{path}: {answer}");
        assert_eq!(
            answer,
            json!({"status": "success", "message": "Webhook processed"})
        );
    }
    let inbound: Vec<Value> = all_messages(&app)
        .await
        .into_iter()
        .filter(|m| m["direction"] == "inbound")
        .collect();
    assert_eq!(inbound.len(), 3);
    for m in &inbound {
        assert_eq!(m["status"], "received");
        assert_eq!(m["provider_timestamp"], "2024-11-01T14:00:00Z");
        let expected_conversation = if m["type"] == "email" {
            &sent_email["conversation_id"]
        } else {
            &sent_sms["conversation_id"]
        };
        assert_eq!(&m["conversation_id"], expected_conversation, "{m}");
    }
    let by_id = |id: &str| {
        inbound
            .iter()
            .find(|m| m["provider_message_id"] == id)
            .cloned()
    };
    let sms_in = by_id("message-1").expect("sms stored with its provider id");
    assert_eq!(sms_in["provider"], "messaging_provider");
    assert_eq!(sms_in["type"], "sms");
    assert_eq!(sms_in["from"], "+18045551234");
    let mms_in = by_id("message-2").expect("mms stored");
    assert_eq!(
        mms_in["attachments"],
        json!(["https://example.com/received-image.jpg"])
    );
    let email_in = by_id("message-3").expect("email stored");
    assert_eq!(email_in["provider"], "xillio");
    assert_eq!(email_in["body"], email_webhook()["body"]);

    // Received messages are stored, never queued for delivery.
    assert_eq!(app.xlen("message_queue:sms").await, 1);
    assert_eq!(app.xlen("message_queue:mms").await, 0);
    assert_eq!(app.xlen("message_queue:email").await, 1);
    let (_, conv) = app
        .get_json(&format!(
            "/api/v1/conversations/{}",
            sent_sms["conversation_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(conv["message_count"], 3);
    assert_eq!(conv["unread_count"], 2);
}

#[tokio::test]
async fn a_replayed_webhook_answers_200_and_stores_nothing_new() {
    let app = spawn_app().await;
    for _ in 0..3 {
        for (path, payload) in [
            ("/api/webhooks/sms", sms_webhook()),
            ("/api/webhooks/email", email_webhook()),
        ] {
            let (status, answer) = post(&app, path, &payload).await;
            assert_eq!(status, 200, "{answer}");
            assert_eq!(answer["message"], "Webhook processed");
        }
    }
    assert_eq!(all_messages(&app).await.len(), 2);

    // Replays racing each other (and landing in different batches) still store one message.
    let app = std::sync::Arc::new(app);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let app = app.clone();
        tasks.spawn(async move {
            let mut replay = sms_webhook();
            replay["messaging_provider_id"] = json!("message-raced");
            post(&app, "/api/webhooks/sms", &replay).await.0
        });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    let messages = all_messages(&app).await;
    assert_eq!(messages.len(), 3);
    let (_, conversations) = app.get_json("/api/conversations").await;
    let phone = conversations["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel_type"] == "sms")
        .cloned()
        .unwrap();
    assert_eq!(phone["message_count"], 2, "each provider id counted once");
    assert_eq!(phone["unread_count"], 2);

    // The same id from the other webhook's provider is a different message.
    let mut other = email_webhook();
    other["xillio_id"] = json!("message-1");
    let (status, _) = post(&app, "/api/webhooks/email", &other).await;
    assert_eq!(status, 200);
    assert_eq!(all_messages(&app).await.len(), 4);
}

#[tokio::test]
async fn the_original_conversation_routes_answer_in_their_original_shapes() {
    let app = spawn_app().await;
    let (_, sent) = post(&app, "/api/messages/sms", &sms()).await;
    post(&app, "/api/webhooks/sms", &sms_webhook()).await;
    post(&app, "/api/messages/email", &email()).await;

    let (status, list) = app.get_json("/api/conversations").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], 2);
    let conversations = list["conversations"].as_array().unwrap();
    let sms_conv = conversations
        .iter()
        .find(|c| c["id"] == sent["conversation_id"])
        .expect("the sms conversation");
    let keys: Vec<&str> = sms_conv
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for key in [
        "id",
        "participant_from",
        "participant_to",
        "channel_type",
        "status",
        "message_count",
        "unread_count",
        "last_message_at",
        "created_at",
    ] {
        assert!(keys.contains(&key), "{key} missing from {sms_conv}");
    }
    assert_eq!(sms_conv["participant_from"], "+12016661234");
    assert_eq!(sms_conv["participant_to"], "+18045551234");
    assert_eq!(sms_conv["channel_type"], "sms");
    assert_eq!(sms_conv["status"], "active");
    assert_eq!(sms_conv["message_count"], 2);
    assert_eq!(sms_conv["unread_count"], 1);

    let id = sent["conversation_id"].as_str().unwrap();
    let (status, messages) = app
        .get_json(&format!("/api/conversations/{id}/messages"))
        .await;
    assert_eq!(status, 200, "{messages}");
    assert_eq!(messages["conversation_id"], id);
    assert_eq!(messages["total"], 2);
    let list = messages["messages"].as_array().unwrap();
    assert_eq!(list[0]["direction"], "outbound", "oldest first");
    assert_eq!(list[1]["direction"], "inbound");
    assert_eq!(list[1]["body"], "This is an incoming SMS message");
}

#[tokio::test]
async fn an_unknown_or_non_uuid_conversation_id_is_404_with_the_standard_error_body() {
    let app = spawn_app().await;
    for id in ["1", "abc", &uuid::Uuid::now_v7().to_string()] {
        let (status, body) = app
            .get_json(&format!("/api/conversations/{id}/messages"))
            .await;
        assert_eq!(status, 404, "{id}");
        assert_eq!(body["error"], "not_found");
        assert!(body["message"].is_string());
        assert_eq!(body["details"]["resource"], "conversation");
    }
}

#[tokio::test]
async fn the_original_routes_refuse_invalid_input_with_422_naming_the_field() {
    let app = spawn_app().await;
    let with = |mut v: Value, key: &str, value: Value| {
        v[key] = value;
        v
    };
    let without = |mut v: Value, key: &str| {
        v.as_object_mut().unwrap().remove(key);
        v
    };
    for (path, payload, field) in [
        ("/api/messages/sms", with(sms(), "to", json!("555")), "to"),
        (
            "/api/messages/sms",
            with(sms(), "type", json!("email")),
            "type",
        ),
        (
            "/api/messages/sms",
            with(sms(), "timestamp", json!("yesterday")),
            "timestamp",
        ),
        (
            "/api/messages/sms",
            with(sms(), "attachments", json!("x")),
            "attachments",
        ),
        (
            "/api/messages/email",
            with(email(), "from", json!("nobody")),
            "from",
        ),
        (
            "/api/messages/email",
            with(with(email(), "body", json!("")), "attachments", json!([])),
            "body",
        ),
        (
            "/api/webhooks/sms",
            without(sms_webhook(), "messaging_provider_id"),
            "messaging_provider_id",
        ),
        (
            "/api/webhooks/sms",
            with(sms_webhook(), "from", json!("+1")),
            "from",
        ),
        (
            "/api/webhooks/email",
            without(email_webhook(), "xillio_id"),
            "xillio_id",
        ),
        (
            "/api/webhooks/email",
            with(email_webhook(), "to", json!("+18045551234")),
            "to",
        ),
    ] {
        let (status, body) = post(&app, path, &payload).await;
        assert_eq!(status, 422, "{path} {payload}: {body}");
        assert_eq!(body["error"], "validation_error");
        assert_eq!(body["details"]["field"], field, "{path} {payload}");
    }
    let malformed = app
        .post_raw("/api/messages/sms", Some("application/json"), "{not json")
        .await;
    assert_eq!(malformed.status(), 400);
    assert!(all_messages(&app).await.is_empty());
}
