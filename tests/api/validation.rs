use serde_json::{Value, json};

use crate::helpers::spawn_app;

/// One case per rule: the request, the status, and the field the error must name.
fn cases() -> Vec<(&'static str, Value, u16, &'static str)> {
    let ok = json!({"from": "+15551234567", "to": "+15559876543", "type": "sms", "body": "hi"});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    let without = |k: &str| {
        let mut b = ok.clone();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    vec![
        ("missing to", without("to"), 422, "to"),
        ("missing from", without("from"), 422, "from"),
        (
            "to is not E.164",
            with("to", json!("5559876543")),
            422,
            "to",
        ),
        (
            "from has letters",
            with("from", json!("+1555abc4567")),
            422,
            "from",
        ),
        ("unknown type", with("type", json!("fax")), 422, "type"),
        ("email to a phone", with("type", json!("email")), 422, "to"),
        ("no body and no attachments", without("body"), 422, "body"),
        (
            "body too long",
            with("body", json!("a".repeat(1601))),
            422,
            "body",
        ),
        (
            "sms with attachment",
            with("attachments", json!(["https://example.com/a.png"])),
            422,
            "attachments",
        ),
        (
            "too many attachments",
            json!({"from": "+15551234567", "to": "+15559876543", "type": "mms",
                   "attachments": vec!["https://example.com/a.png"; 11]}),
            422,
            "attachments",
        ),
        (
            "attachment not http",
            json!({"from": "+15551234567", "to": "+15559876543", "type": "mms", "attachments": ["ftp://example.com/a"]}),
            422,
            "attachments",
        ),
        (
            "invalid email",
            json!({"from": "a@example.com", "to": "not-an-email@", "type": "email", "body": "x"}),
            422,
            "to",
        ),
        ("body is a number", with("body", json!(5)), 422, "body"),
        (
            "attachments not a list",
            with("attachments", json!("https://x.com/a")),
            422,
            "attachments",
        ),
        (
            "metadata not an object",
            with("metadata", json!([1])),
            422,
            "metadata",
        ),
        (
            "metadata number beyond storage",
            with("metadata", json!({"n": [f64::MAX]})),
            422,
            "metadata",
        ),
        (
            "subject on sms",
            with("subject", json!("s")),
            422,
            "subject",
        ),
    ]
}

#[tokio::test]
async fn every_validation_rule_answers_422_naming_its_field() {
    let app = spawn_app().await;
    for (name, body, status, field) in cases() {
        let resp = app.post_send(&body).await;
        assert_eq!(resp.status().as_u16(), status, "{name}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"], "validation_error", "{name}: {err}");
        assert_eq!(err["details"]["field"], field, "{name}: {err}");
        assert!(err["message"].is_string());
    }
    let (_, list) = app.get_json("/api/v1/messages").await;
    assert_eq!(list["total"], 0, "rejected requests store nothing");
}

#[tokio::test]
async fn a_body_of_exactly_1600_characters_is_accepted() {
    // 1600 GSM characters take 11 segments: the default limit of 10 is a separate rule.
    let app = crate::helpers::TestApp::builder()
        .env("SMS_MAX_SEGMENTS", "11")
        .spawn()
        .await;
    let resp = app
        .post_send(&json!({"from": "+15551234567", "to": "+15559876543", "body": "ü".repeat(1600)}))
        .await;
    assert_eq!(resp.status(), 201);
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    let resp = app
        .post_raw(
            "/api/v1/messages/send",
            Some("application/json"),
            "{\"from\": ",
        )
        .await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"], "malformed_json");
}

#[tokio::test]
async fn wrong_or_missing_content_type_is_415() {
    let app = spawn_app().await;
    for ct in [
        Some("text/plain"),
        None,
        Some("application/x-www-form-urlencoded"),
    ] {
        let resp = app.post_raw("/api/v1/messages/send", ct, "{}").await;
        assert_eq!(resp.status(), 415, "{ct:?}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"], "unsupported_media_type");
    }
}

#[tokio::test]
async fn an_oversized_body_is_413() {
    let app = spawn_app().await;
    let huge = format!("{{\"body\": \"{}\"}}", "a".repeat(3 * 1024 * 1024));
    let resp = app
        .post_raw("/api/v1/messages/send", Some("application/json"), &huge)
        .await;
    assert_eq!(resp.status(), 413);
}

#[tokio::test]
async fn unknown_message_is_404_and_malformed_id_is_422() {
    let app = spawn_app().await;
    let (status, body) = app
        .get_json(&format!("/api/v1/messages/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "not_found");
    let (status, body) = app.get_json("/api/v1/messages/not-a-uuid").await;
    assert_eq!(status, 422);
    assert_eq!(body["details"]["field"], "id");
    let (status, _) = app
        .get_json(&format!("/api/v1/messages/{}/events", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn unknown_routes_answer_json_404() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/api/v1/nothing-here").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "not_found");
}

/// A body that is JSON but not an object is a 422 naming `body`, and no error text ever
/// names one of the service's Rust types (serde's wording would).
#[tokio::test]
async fn a_body_that_is_not_an_object_is_422_and_no_error_names_an_internal_type() {
    let app = spawn_app().await;
    let routes = [
        "/api/v1/messages/send",
        "/api/messages/sms",
        "/api/messages/email",
        "/api/webhooks/sms",
        "/api/v1/conversations",
        "/api/v1/conversations/search",
    ];
    for route in routes {
        for body in ["[]", "[1, 2]", "\"text\"", "42", "null", "true"] {
            let resp = app.post_raw(route, Some("application/json"), body).await;
            assert_eq!(resp.status(), 422, "{route} {body}");
            let err: Value = resp.json().await.unwrap();
            assert_eq!(err["error"], "validation_error", "{route} {body}");
            assert_eq!(err["details"]["field"], "body", "{route} {body}");
            assert_eq!(err["details"]["reason"], "must be a JSON object");
            assert!(
                err["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("must be a JSON object")),
                "{err}"
            );
        }
    }
    // Wrong shapes inside an object, and in query strings.
    let wrong = [
        ("/api/v1/messages/send", r#"{"to": ["x"]}"#),
        ("/api/v1/messages/send", r#"{"attachments": {"a": 1}}"#),
        (
            "/api/v1/conversations/search",
            r#"{"query": "x", "limit": "ten"}"#,
        ),
        (
            "/api/v1/conversations/search",
            r#"{"query": "x", "limit": 1.5}"#,
        ),
        ("/api/v1/conversations", r#"{"participants": "a"}"#),
    ];
    for (route, body) in wrong {
        let resp = app.post_raw(route, Some("application/json"), body).await;
        assert_eq!(resp.status(), 422, "{route} {body}");
        let text = resp.text().await.unwrap();
        for internal in [
            "struct", "Request", "i64", "u32", "usize", "Vec<", "Option<",
        ] {
            assert!(!text.contains(internal), "{route} {body}: {text}");
        }
    }
    let (status, err) = app.get_json("/api/v1/messages?limit=1&limit=2").await;
    assert_eq!(status, 422);
    assert!(!err.to_string().contains("struct"), "{err}");
}
