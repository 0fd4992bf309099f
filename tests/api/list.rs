use messaging_service::domain::MessageStatus;
use serde_json::{Value, json};

use crate::helpers::{TestApp, sms_body, spawn_app};

async fn seed(app: &TestApp) -> (Vec<String>, String) {
    let mut ids = Vec::new();
    for i in 0..5 {
        let m = app
            .send(&json!({"from": "+15551234567", "to": "+15559876543", "body": format!("s{i}")}))
            .await;
        ids.push(m["id"].as_str().unwrap().to_owned());
    }
    let email = app
        .send(&json!({"from": "a@example.com", "to": "b@example.com", "body": "e"}))
        .await;
    ids.push(email["id"].as_str().unwrap().to_owned());
    (ids, email["conversation_id"].as_str().unwrap().to_owned())
}

fn ids_of(list: &Value) -> Vec<String> {
    list["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn list_pages_newest_first_with_total_limit_and_offset() {
    let app = spawn_app().await;
    let (ids, _) = seed(&app).await;
    let (status, page1) = app.get_json("/api/v1/messages?limit=4").await;
    assert_eq!(status, 200);
    assert_eq!(page1["total"], 6);
    assert_eq!(page1["limit"], 4);
    assert_eq!(page1["offset"], 0);
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(ids_of(&page1), newest_first[..4]);
    let (_, page2) = app.get_json("/api/v1/messages/?limit=4&offset=4").await;
    assert_eq!(ids_of(&page2), newest_first[4..]);
    let (_, past_end) = app.get_json("/api/v1/messages?offset=100").await;
    assert_eq!(ids_of(&past_end).len(), 0);
    assert_eq!(past_end["total"], 6);
    let (_, default) = app.get_json("/api/v1/messages").await;
    assert_eq!(default["limit"], 50);
}

#[tokio::test]
async fn list_filters_by_type_status_direction_and_conversation() {
    let app = spawn_app().await;
    let (ids, email_conversation) = seed(&app).await;
    app.drain_until(&ids[0], MessageStatus::Sent).await;
    let (_, email) = app.get_json("/api/v1/messages?type=email").await;
    assert_eq!(email["total"], 1);
    let (_, conv) = app
        .get_json(&format!(
            "/api/v1/messages?conversation_id={email_conversation}"
        ))
        .await;
    assert_eq!(ids_of(&conv), vec![ids[5].clone()]);
    let (_, sent) = app.get_json("/api/v1/messages?status=sent").await;
    let (_, pending) = app.get_json("/api/v1/messages?status=pending").await;
    assert_eq!(
        sent["total"].as_i64().unwrap() + pending["total"].as_i64().unwrap(),
        6
    );
    assert!(sent["total"].as_i64().unwrap() >= 1);
    let (_, outbound) = app
        .get_json("/api/v1/messages?direction=outbound&type=sms")
        .await;
    assert_eq!(outbound["total"], 5);
    let (_, inbound) = app.get_json("/api/v1/messages?direction=inbound").await;
    assert_eq!(inbound["total"], 0);
}

#[tokio::test]
async fn bad_list_parameters_are_422_naming_the_parameter() {
    let app = spawn_app().await;
    app.send(&sms_body()).await;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("offset=-1", "offset"),
        ("status=lost", "status"),
        ("type=fax", "type"),
        ("direction=sideways", "direction"),
        ("conversation_id=1", "conversation_id"),
    ] {
        let (status, body) = app.get_json(&format!("/api/v1/messages?{query}")).await;
        assert_eq!(status, 422, "{query}");
        assert_eq!(body["details"]["field"], field, "{query}");
    }
    let (status, _) = app.get_json("/api/v1/messages?limit=100").await;
    assert_eq!(status, 200);
}

/// One serializer per resource: a message (or conversation) reads the same, field for
/// field and in the same order, alone and inside any list.
#[tokio::test]
async fn a_message_and_a_conversation_read_the_same_alone_and_in_lists() {
    let app = spawn_app().await;
    let sent = app.send(&sms_body()).await;
    let id = sent["id"].as_str().unwrap();
    let conversation_id = sent["conversation_id"].as_str().unwrap();
    let text = |path: String| {
        let app = &app;
        async move {
            let resp = app.get(&path).await;
            assert_eq!(resp.status(), 200, "{path}");
            resp.text().await.unwrap()
        }
    };
    let single = text(format!("/api/v1/messages/{id}")).await;
    for list in [
        "/api/v1/messages".to_owned(),
        format!("/api/v1/messages?conversation_id={conversation_id}"),
        format!("/api/v1/conversations/{conversation_id}/messages"),
        format!("/api/v1/conversations/{conversation_id}?include_messages=true"),
        format!("/api/conversations/{conversation_id}/messages"),
    ] {
        let listed = text(list.clone()).await;
        assert!(listed.contains(&single), "{list}: {listed}\nvs {single}");
    }
    let conversation = text(format!("/api/v1/conversations/{conversation_id}")).await;
    let listed = text("/api/v1/conversations".to_owned()).await;
    assert!(
        listed.contains(&conversation),
        "{listed}\nvs {conversation}"
    );
    let with_messages = text(format!(
        "/api/v1/conversations/{conversation_id}?include_messages=true"
    ))
    .await;
    let fields = conversation.trim_end_matches('}');
    assert!(
        with_messages.starts_with(fields),
        "{with_messages}\nvs {conversation}"
    );
}

/// Polling clients (the console) revalidate with `If-None-Match`: an unchanged page costs a
/// 304 with no body, a change a 200 with a new tag.
#[tokio::test]
async fn a_list_answers_304_to_its_own_etag_until_it_changes() {
    let app = spawn_app().await;
    app.send(&sms_body()).await;
    let client = reqwest::Client::new();
    let url = app.url("/api/v1/conversations");
    let first = client.get(&url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["cache-control"], "private, no-cache");
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");

    let again = client
        .get(&url)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    assert!(again.bytes().await.unwrap().is_empty());

    app.send(&json!({"from": "+15551234567", "to": "+15550000001", "body": "new"}))
        .await;
    let changed = client
        .get(&url)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    assert_ne!(changed.headers()["etag"].to_str().unwrap(), etag);
    let body: Value = changed.json().await.unwrap();
    assert_eq!(body["total"], 2);
}
