//! Queue entries as operators and the original service's tools read them: each entry of
//! `message_queue:<type>` carries a `data` field holding JSON with `message_id`, the type,
//! masked addresses and timestamps — never the body.

use serde_json::{Value, json};

use crate::helpers::{TestApp, requires_postgres_and_redis, spawn_app};

/// The newest entry of a stream, read as the original's tools do (`XREVRANGE … COUNT 1`).
async fn newest_entry(app: &TestApp, kind: &str) -> Vec<(String, String)> {
    let mut conn = app.redis().await;
    let reply: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(format!("{}message_queue:{kind}", app.prefix))
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut conn)
        .await
        .expect("XREVRANGE");
    let entry = reply.ids.first().expect("an entry in the stream");
    entry
        .map
        .keys()
        .map(|k| (k.clone(), entry.get::<String>(k).expect("a string field")))
        .collect()
}

fn field<'a>(entry: &'a [(String, String)], name: &str) -> &'a str {
    entry
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} field in {entry:?}"))
}

#[tokio::test]
async fn a_sent_message_is_queued_with_data_naming_it_and_masking_its_addresses() {
    if !requires_postgres_and_redis(
        "a_sent_message_is_queued_with_data_naming_it_and_masking_its_addresses",
    ) {
        return;
    }
    let app = spawn_app().await;
    let cases = [
        json!({"from": "+15551234567", "to": "+15559876543", "type": "sms",
               "body": "a secret code 123456"}),
        json!({"from": "sender@example.com", "to": "jane.doe@example.org", "type": "email",
               "subject": "private subject", "body": "<p>a secret code 123456</p>"}),
    ];
    for request in cases {
        let sent = app.send(&request).await;
        let kind = request["type"].as_str().unwrap();
        let entry = newest_entry(&app, kind).await;
        let data: Value = serde_json::from_str(field(&entry, "data")).expect("data is JSON");
        assert_eq!(data["message_id"], sent["id"], "{data}");
        assert_eq!(field(&entry, "id"), sent["id"].as_str().unwrap());
        assert_eq!(data["type"], kind);
        assert_eq!(data["conversation_id"], sent["conversation_id"]);
        assert_eq!(data["direction"], "outbound");
        assert_eq!(data["created_at"], sent["created_at"]);
        assert!(data["queued_at"].is_string(), "{data}");
        let (from, to) = if kind == "sms" {
            ("+1555***4567", "+1555***6543")
        } else {
            ("s***@example.com", "j***@example.org")
        };
        assert_eq!(
            (data["from"].as_str(), data["to"].as_str()),
            (Some(from), Some(to))
        );
        let raw = field(&entry, "data");
        for secret in [
            "secret code",
            "private subject",
            "1234567",
            "jane.doe",
            "sender@",
        ] {
            assert!(!raw.contains(secret), "{secret:?} leaked into {raw}");
        }
    }
}
