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

/// Follows `next_cursor` from `first` (a path with a query string) to the end; `between`
/// runs after each page (e.g. to insert meanwhile). Returns the ids of `key`'s items.
async fn walk<F, Fut>(app: &TestApp, first: &str, key: &str, mut between: F) -> Vec<String>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut seen = Vec::new();
    let mut path = first.to_owned();
    for page in 0.. {
        let (status, body) = app.get_json(&path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(body["offset"], 0, "{path}");
        seen.extend(
            body[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_owned()),
        );
        between(page).await;
        match body["next_cursor"].as_str() {
            Some(cursor) => path = format!("{first}&cursor={cursor}"),
            None => break,
        }
        assert!(page < 100, "the walk ends");
    }
    seen
}

#[tokio::test]
async fn a_cursor_walk_returns_every_message_once_newest_first_while_others_arrive() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let m = app
            .send(&json!({"from": "+15551234567", "to": "+15559876543", "body": format!("c{i}")}))
            .await;
        ids.push(m["id"].as_str().unwrap().to_owned());
    }
    let mail = app
        .send(&json!({"from": "a@example.com", "to": "b@example.com", "body": "e"}))
        .await;
    let mut newest_first = ids.clone();
    newest_first.reverse();

    let app_ref = &app;
    let walked = walk(
        &app,
        "/api/v1/messages?type=sms&limit=3",
        "messages",
        |page| async move {
            if page < 2 {
                app_ref
                    .send(&json!({"from": "+15551234567", "to": "+15559876543", "body": "later"}))
                    .await;
            }
        },
    )
    .await;
    assert_eq!(
        walked, newest_first,
        "each stored sms once, in order; later ones are newer than the first page"
    );

    // Unfiltered, with a page size that ends exactly on the last row: no empty page after.
    let (_, all) = app.get_json("/api/v1/messages?limit=100").await;
    let total = all["total"].as_i64().unwrap();
    assert_eq!(total, 10);
    assert_eq!(all["next_cursor"], Value::Null);
    let everything = walk(&app, "/api/v1/messages?limit=5", "messages", |_| async {}).await;
    assert_eq!(everything, ids_of(&all));
    assert!(everything.contains(&mail["id"].as_str().unwrap().to_owned()));

    // Cursor pages can start from an offset page.
    let (_, second) = app.get_json("/api/v1/messages?limit=4&offset=4").await;
    let cursor = second["next_cursor"].as_str().unwrap();
    let (_, third) = app
        .get_json(&format!("/api/v1/messages?limit=4&cursor={cursor}"))
        .await;
    assert_eq!(ids_of(&third), ids_of(&all)[8..]);
    assert_eq!(third["total"], 10);
    assert_eq!(third["total_is_estimate"], false);
}

#[tokio::test]
async fn a_cursor_walk_returns_every_conversation_once_undated_ones_last() {
    let app = spawn_app().await;
    for to in ["+15550000001", "+15550000002", "+15550000003"] {
        app.send(&json!({"from": "+15551234567", "to": to, "body": "hi"}))
            .await;
    }
    for to in ["+15550000004", "+15550000005", "+15550000006"] {
        let resp = app
            .post_raw(
                "/api/v1/conversations",
                Some("application/json"),
                &json!({"participants": ["+15551234567", to]}).to_string(),
            )
            .await;
        assert_eq!(resp.status(), 201);
    }
    let (_, all) = app.get_json("/api/v1/conversations?limit=100").await;
    let expected: Vec<String> = all["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(expected.len(), 6);
    assert!(all["conversations"][5]["last_message_at"].is_null());
    for limit in [1, 2, 4] {
        let walked = walk(
            &app,
            &format!("/api/v1/conversations?limit={limit}"),
            "conversations",
            |_| async {},
        )
        .await;
        assert_eq!(walked, expected, "limit {limit}");
    }
    let walked = walk(
        &app,
        "/api/v1/conversations?limit=2&channel=phone&status=active",
        "conversations",
        |_| async {},
    )
    .await;
    assert_eq!(walked, expected);
}

#[tokio::test]
async fn a_bad_cursor_is_422_naming_cursor() {
    let app = spawn_app().await;
    for i in 0..3 {
        app.send(&json!({"from": "+15551234567", "to": "+15559876543", "body": format!("b{i}")}))
            .await;
    }
    let (_, page) = app.get_json("/api/v1/messages?limit=1").await;
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (_, conversations) = app.get_json("/api/v1/conversations?limit=1").await;
    assert_eq!(
        conversations["next_cursor"],
        Value::Null,
        "one conversation"
    );
    for path in [
        "/api/v1/messages?cursor=garbled!".to_owned(),
        "/api/v1/messages?cursor=".to_owned(),
        "/api/v1/messages?cursor=MS5hYmMuLS54".to_owned(),
        format!("/api/v1/messages?status=failed&cursor={cursor}"),
        format!("/api/v1/messages?offset=1&cursor={cursor}"),
        format!("/api/v1/conversations?cursor={cursor}"),
    ] {
        let (status, body) = app.get_json(&path).await;
        assert_eq!(status, 422, "{path}: {body}");
        assert_eq!(body["details"]["field"], "cursor", "{path}");
    }
    let (status, _) = app
        .get_json(&format!(
            "/api/v1/messages?offset=0&limit=2&cursor={cursor}"
        ))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn total_is_exact_up_to_the_count_limit_and_a_flagged_estimate_above() {
    let app = TestApp::builder()
        .env("LIST_COUNT_LIMIT", "3")
        .spawn()
        .await;
    for i in 0..5 {
        let to = format!("+1555000000{}", i % 3);
        app.send(&json!({"from": "+15551234567", "to": to, "body": "t"}))
            .await;
    }
    app.send(&json!({"from": "a@example.com", "to": "b@example.com", "body": "e"}))
        .await;
    let (_, many) = app.get_json("/api/v1/messages?limit=2").await;
    assert_eq!(many["total_is_estimate"], true, "{many}");
    assert!(many["total"].as_i64().unwrap() > 3, "{many}");
    let (_, one) = app.get_json("/api/v1/messages?type=email").await;
    assert_eq!(
        (&one["total"], &one["total_is_estimate"]),
        (&json!(1), &json!(false))
    );
    let (_, conversations) = app.get_json("/api/v1/conversations?channel=email").await;
    assert_eq!(conversations["total"], 1);
    assert_eq!(conversations["total_is_estimate"], false);
    // Three phone conversations: at the limit, the count is still exact.
    let (_, phone) = app.get_json("/api/v1/conversations?channel=phone").await;
    assert_eq!(phone["total"], 3, "{phone}");
    assert_eq!(phone["total_is_estimate"], false);
    let (_, all) = app.get_json("/api/v1/conversations").await;
    assert_eq!(all["total_is_estimate"], true, "{all}");
    assert!(all["total"].as_i64().unwrap() > 3);
}
