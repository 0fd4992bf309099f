//! SMS sizing over HTTP: the segments table as the API reports it, the segment limit
//! (`SMS_MAX_SEGMENTS`) and smart encoding (`SMS_SMART_ENCODING`).

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

fn sms(body: &str) -> Value {
    json!({"from": "+15551234567", "to": "+15559876543", "type": "sms", "body": body})
}

async fn post(app: &TestApp, body: &Value) -> (u16, Value) {
    let resp = app.post_send(body).await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn extension_characters_and_mixed_scripts_are_counted_as_published() {
    let app = spawn_app().await;
    let cases = [
        // The extension table counts two septets and an escape is never split.
        ("{".repeat(80), 1, "GSM-7"),
        ("{".repeat(81), 2, "GSM-7"),
        (
            format!("{}[{}", "a".repeat(152), "a".repeat(152)),
            3,
            "GSM-7",
        ),
        (
            format!("{}[{}", "a".repeat(151), "a".repeat(153)),
            2,
            "GSM-7",
        ),
        // Greek capitals of the default alphabet stay GSM-7; other scripts are UCS-2.
        ("ΔΦΓΛΩΠΨΣΘΞ".to_owned(), 1, "GSM-7"),
        ("Привет, мир".to_owned(), 1, "UCS-2"),
        (format!("Hello 世界 {}", "a".repeat(61)), 1, "UCS-2"),
        (format!("Hello 世界 {}", "a".repeat(62)), 2, "UCS-2"),
        // An emoji is a surrogate pair and never straddles two segments.
        (
            format!("{}😀{}", "a".repeat(66), "a".repeat(66)),
            3,
            "UCS-2",
        ),
    ];
    for (body, segments, encoding) in cases {
        let m = app.send(&sms(&body)).await;
        let chars = body.chars().count();
        assert_eq!(m["segments"], segments, "{chars} chars: {m}");
        assert_eq!(m["encoding"], encoding, "{chars} chars");
    }
}

#[tokio::test]
async fn the_segment_limit_refuses_long_sms_naming_the_body() {
    let app = TestApp::builder()
        .env("SMS_MAX_SEGMENTS", "2")
        .spawn()
        .await;
    let mut body = sms("");
    body["body"] = json!("a".repeat(306));
    assert_eq!(app.send(&body).await["segments"], 2);
    body["body"] = json!("a".repeat(307));
    let (status, err) = post(&app, &body).await;
    assert_eq!(status, 422);
    assert_eq!(err["error"], "validation_error");
    assert_eq!(err["details"]["field"], "body");
    // The default allows ten segments.
    let app = spawn_app().await;
    body["body"] = json!("a".repeat(153 * 10));
    assert_eq!(app.send(&body).await["segments"], 10);
    body["body"] = json!("a".repeat(153 * 10 + 1));
    assert_eq!(post(&app, &body).await.0, 422);
}

#[tokio::test]
async fn smart_encoding_replaces_look_alikes_and_reports_the_new_count() {
    let text = format!("{}\u{2019}", "a".repeat(100));
    let mut body = sms("");
    body["body"] = json!(text);
    let app = spawn_app().await;
    let plain = app.send(&body).await;
    assert_eq!(
        (plain["encoding"].as_str(), plain["segments"].as_u64()),
        (Some("UCS-2"), Some(2))
    );

    let app = TestApp::builder()
        .env("SMS_SMART_ENCODING", "true")
        .spawn()
        .await;
    let smart = app.send(&body).await;
    assert_eq!(
        (smart["encoding"].as_str(), smart["segments"].as_u64()),
        (Some("GSM-7"), Some(1))
    );
    assert_eq!(smart["body"], format!("{}'", "a".repeat(100)));
}
