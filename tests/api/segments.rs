//! SMS segments and encoding in every answer: counted when the message is accepted, shown on
//! the 201, on a read and in a list, absent for email.

use serde_json::{Value, json};

use crate::helpers::spawn_app;

fn sms(body: &str) -> Value {
    json!({"from": "+15551234567", "to": "+15559876543", "type": "sms", "body": body})
}

#[tokio::test]
async fn segments_and_encoding_follow_the_published_limits() {
    let app = spawn_app().await;
    let cases = [
        ("a".repeat(160), 1, "GSM-7"),
        ("a".repeat(161), 2, "GSM-7"),
        ("a".repeat(306), 2, "GSM-7"),
        ("a".repeat(307), 3, "GSM-7"),
        (format!("{}€", "a".repeat(159)), 2, "GSM-7"),
        ("😀".repeat(35), 1, "UCS-2"),
        ("😀".repeat(36), 2, "UCS-2"),
        (format!("{}😀", "a".repeat(69)), 2, "UCS-2"),
    ];
    for (body, segments, encoding) in cases {
        let m = app.send(&sms(&body)).await;
        assert_eq!(m["segments"], segments, "{} chars", body.chars().count());
        assert_eq!(m["encoding"], encoding);
        let read = app.message(m["id"].as_str().unwrap_or_default()).await;
        assert_eq!(read["segments"], segments, "read back");
        assert_eq!(read["encoding"], encoding);
    }
    let (status, list) = app.get_json("/api/v1/messages?type=sms&limit=100").await;
    assert_eq!(status, 200);
    let listed = list["messages"].as_array().cloned().unwrap_or_default();
    assert_eq!(listed.len(), 8);
    assert!(
        listed
            .iter()
            .all(|m| m["segments"].is_u64() && m["encoding"].is_string())
    );
}

#[tokio::test]
async fn email_has_no_segments() {
    let app = spawn_app().await;
    let m = app
        .send(
            &json!({"from": "a@example.com", "to": "b@example.com", "type": "email",
                      "subject": "s", "body": "x"}),
        )
        .await;
    assert!(m.get("segments").is_none(), "{m}");
    assert!(m.get("encoding").is_none());
}
