//! `/api/v1/conversations`: every endpoint over HTTP, and counters under concurrent sends.

use messaging_service::domain::MessageStatus;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, permanent, spawn_app};

pub const ALICE: &str = "+15551234567";
pub const BOB: &str = "+15559876543";

/// One request with an optional JSON body; the status and the JSON answer (`Null` if none).
pub async fn call(app: &TestApp, method: Method, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut req = app.client.request(method, app.url(path));
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

pub async fn post(app: &TestApp, path: &str, body: &Value) -> (u16, Value) {
    call(app, Method::POST, path, Some(body)).await
}

async fn create(app: &TestApp, participants: [&str; 2]) -> Value {
    let (status, body) = post(
        app,
        "/api/v1/conversations",
        &json!({"participants": participants, "title": "Support"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body
}

async fn conversation(app: &TestApp, id: &str) -> Value {
    let (status, body) = app.get_json(&format!("/api/v1/conversations/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// An inbound SMS through the original webhook, as a provider would post it.
pub async fn receive(app: &TestApp, from: &str, to: &str, provider_id: &str, body: &str) {
    let (status, answer) = post(
        app,
        "/api/webhooks/sms",
        &json!({"from": from, "to": to, "type": "sms", "messaging_provider_id": provider_id,
                "body": body, "attachments": null, "timestamp": "2024-11-01T14:00:00Z"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
}

async fn send(app: &TestApp, from: &str, to: &str, body: &str) -> Value {
    app.send(&json!({"from": from, "to": to, "body": body}))
        .await
}

fn ids(list: &Value, key: &str) -> Vec<String> {
    list[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} in {list}"))
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn create_returns_201_and_the_same_pair_returns_the_existing_conversation_with_200() {
    let app = spawn_app().await;
    let created = create(&app, [BOB, ALICE]).await;
    assert_eq!(created["channel"], "phone");
    assert_eq!(created["participants"], json!([ALICE, BOB]));
    assert_eq!(created["status"], "active");
    assert_eq!(created["title"], "Support");
    assert_eq!(created["message_count"], 0);

    // Either order, any formatting, sms or phone: the same pair on the same channel.
    let (status, again) = post(
        &app,
        "/api/v1/conversations",
        &json!({"participants": ["+1 (555) 123-4567", BOB], "channel": "sms", "title": "Other"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(again["id"], created["id"]);
    assert_eq!(
        again["title"], "Support",
        "an existing conversation is not changed"
    );

    let (status, email) = post(
        &app,
        "/api/v1/conversations",
        &json!({"participants": ["a@example.com", "b@example.com"], "channel": "email",
                "metadata": {"crm": 7}}),
    )
    .await;
    assert_eq!(status, 201);
    assert_ne!(email["id"], created["id"]);
    assert_eq!(email["metadata"], json!({"crm": 7}));

    // Messages between the pair thread into the conversation that was created.
    let m = send(&app, ALICE, BOB, "hello").await;
    assert_eq!(m["conversation_id"], created["id"]);
    assert_eq!(
        conversation(&app, created["id"].as_str().unwrap()).await["message_count"],
        1
    );
}

#[tokio::test]
async fn create_rejects_invalid_participants_channel_title_and_metadata_with_422() {
    let app = spawn_app().await;
    for (body, field) in [
        (json!({}), "participants"),
        (json!({"participants": [ALICE]}), "participants"),
        (json!({"participants": [ALICE, ALICE]}), "participants"),
        (json!({"participants": [ALICE, "555"]}), "participants"),
        (
            json!({"participants": [ALICE, BOB], "channel": "email"}),
            "participants",
        ),
        (
            json!({"participants": [ALICE, BOB], "channel": "fax"}),
            "channel",
        ),
        (
            json!({"participants": [ALICE, BOB], "title": "x".repeat(201)}),
            "title",
        ),
        (
            json!({"participants": [ALICE, BOB], "metadata": [1]}),
            "metadata",
        ),
        (
            json!({"participants": [ALICE, BOB], "metadata": {"n": -1.7976931348623157e308}}),
            "metadata",
        ),
        (json!({"participants": "nope"}), "participants"),
    ] {
        let (status, answer) = post(&app, "/api/v1/conversations", &body).await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert_eq!(answer["error"], "validation_error");
        assert_eq!(answer["details"]["field"], field, "{body}");
    }
}

#[tokio::test]
async fn list_filters_by_status_channel_and_participant_newest_activity_first() {
    let app = spawn_app().await;
    let first = send(&app, ALICE, BOB, "one").await;
    let carol = "+15550001111";
    let second = send(&app, ALICE, carol, "two").await;
    let email = send(&app, "a@example.com", "b@example.com", "three").await;
    let (first, second, email) = (
        first["conversation_id"].as_str().unwrap().to_owned(),
        second["conversation_id"].as_str().unwrap().to_owned(),
        email["conversation_id"].as_str().unwrap().to_owned(),
    );

    let (status, all) = app.get_json("/api/v1/conversations").await;
    assert_eq!(status, 200);
    assert_eq!(all["total"], 3);
    assert_eq!(all["limit"], 50);
    assert_eq!(all["offset"], 0);
    assert_eq!(
        ids(&all, "conversations"),
        vec![email.clone(), second.clone(), first.clone()]
    );

    // New activity moves a conversation to the top.
    send(&app, BOB, ALICE, "back to you").await;
    let (_, all) = app.get_json("/api/v1/conversations/").await;
    assert_eq!(ids(&all, "conversations")[0], first);

    let (_, phone) = app.get_json("/api/v1/conversations?channel=phone").await;
    assert_eq!(phone["total"], 2);
    let (_, emails) = app.get_json("/api/v1/conversations?channel=email").await;
    assert_eq!(ids(&emails, "conversations"), vec![email.clone()]);
    // Either side of the pair, in any formatting.
    let (_, with_carol) = app
        .get_json("/api/v1/conversations?participant=%2B1%20555%20000%201111")
        .await;
    assert_eq!(ids(&with_carol, "conversations"), vec![second.clone()]);
    let (_, with_alice) = app
        .get_json(&format!(
            "/api/v1/conversations?participant=%2B{}",
            &ALICE[1..]
        ))
        .await;
    assert_eq!(with_alice["total"], 2);

    let (status, _) = call(
        &app,
        Method::PATCH,
        &format!("/api/v1/conversations/{second}"),
        Some(&json!({"status": "archived"})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, archived) = app.get_json("/api/v1/conversations?status=archived").await;
    assert_eq!(ids(&archived, "conversations"), vec![second]);
    let (_, active) = app
        .get_json("/api/v1/conversations?status=active&channel=phone")
        .await;
    assert_eq!(ids(&active, "conversations"), vec![first]);
}

#[tokio::test]
async fn list_pagination_edges_are_honoured_and_bad_parameters_are_422() {
    let app = spawn_app().await;
    for i in 0..3 {
        send(&app, ALICE, &format!("+1555000000{i}"), "hi").await;
    }
    let (_, page) = app.get_json("/api/v1/conversations?limit=2").await;
    assert_eq!(page["conversations"].as_array().unwrap().len(), 2);
    assert_eq!(page["total"], 3);
    let (_, rest) = app.get_json("/api/v1/conversations?limit=2&offset=2").await;
    assert_eq!(rest["conversations"].as_array().unwrap().len(), 1);
    let (status, past_end) = app.get_json("/api/v1/conversations?offset=10").await;
    assert_eq!(status, 200);
    assert_eq!(past_end["conversations"], json!([]));
    assert_eq!(past_end["total"], 3);
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("offset=-1", "offset"),
        ("status=deleted", "status"),
        ("channel=fax", "channel"),
        ("participant=nobody", "participant"),
    ] {
        let (status, body) = app
            .get_json(&format!("/api/v1/conversations?{query}"))
            .await;
        assert_eq!(status, 422, "{query}");
        assert_eq!(body["details"]["field"], field, "{query}");
    }
    let (status, _) = app.get_json("/api/v1/conversations?limit=100").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn get_shows_counters_and_include_messages_adds_the_newest_messages() {
    let app = spawn_app().await;
    let mut sent = Vec::new();
    for i in 0..3 {
        sent.push(send(&app, ALICE, BOB, &format!("m{i}")).await);
    }
    receive(&app, BOB, ALICE, "in-1", "reply").await;
    let id = sent[0]["conversation_id"].as_str().unwrap();

    let c = conversation(&app, id).await;
    assert_eq!(c["message_count"], 4);
    assert_eq!(c["unread_count"], 1);
    assert!(c["last_message_at"].is_string());
    assert!(c.get("messages").is_none());

    let (_, with) = app
        .get_json(&format!(
            "/api/v1/conversations/{id}?include_messages=true&limit=2"
        ))
        .await;
    let newest: Vec<&str> = with["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(newest, vec!["reply", "m2"]);
    let (status, body) = app
        .get_json(&format!(
            "/api/v1/conversations/{id}?include_messages=maybe"
        ))
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["details"]["field"], "include_messages");
}

#[tokio::test]
async fn messages_are_oldest_first_paginated_and_newest_first_with_order_desc() {
    let app = spawn_app().await;
    let mut bodies = Vec::new();
    let mut id = String::new();
    for i in 0..5 {
        let m = send(&app, ALICE, BOB, &format!("m{i}")).await;
        id = m["conversation_id"].as_str().unwrap().to_owned();
        bodies.push(format!("m{i}"));
    }
    send(&app, ALICE, "+15550002222", "elsewhere").await;
    let texts = |v: &Value| -> Vec<String> {
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["body"].as_str().unwrap().to_owned())
            .collect()
    };
    let path = format!("/api/v1/conversations/{id}/messages");
    let (status, page) = app.get_json(&format!("{path}?limit=3")).await;
    assert_eq!(status, 200);
    assert_eq!(texts(&page), bodies[..3]);
    assert_eq!(page["total"], 5);
    assert_eq!(page["conversation_id"], id.as_str());
    let (_, rest) = app.get_json(&format!("{path}?limit=3&offset=3")).await;
    assert_eq!(texts(&rest), bodies[3..]);
    let (_, desc) = app.get_json(&format!("{path}?order=desc&limit=2")).await;
    assert_eq!(texts(&desc), vec!["m4", "m3"]);
    let (_, past_end) = app.get_json(&format!("{path}?offset=50")).await;
    assert_eq!(texts(&past_end), Vec::<String>::new());
    for (query, field) in [
        ("order=up", "order"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
    ] {
        let (status, body) = app.get_json(&format!("{path}?{query}")).await;
        assert_eq!(status, 422, "{query}");
        assert_eq!(body["details"]["field"], field);
    }
}

#[tokio::test]
async fn patch_changes_title_and_status_and_merges_metadata() {
    let app = spawn_app().await;
    let c = create(&app, [ALICE, BOB]).await;
    let path = format!("/api/v1/conversations/{}", c["id"].as_str().unwrap());
    let (status, updated) = call(
        &app,
        Method::PATCH,
        &path,
        Some(&json!({"title": "Billing", "status": "closed", "metadata": {"a": 1, "b": 2}})),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["title"], "Billing");
    assert_eq!(updated["status"], "closed");
    assert_eq!(updated["metadata"], json!({"a": 1, "b": 2}));

    // Merge: keys not named stay, `null` removes one, a missing title stays as it was.
    let (_, merged) = call(
        &app,
        Method::PATCH,
        &path,
        Some(&json!({"metadata": {"b": null, "c": 3}})),
    )
    .await;
    assert_eq!(merged["metadata"], json!({"a": 1, "c": 3}));
    assert_eq!(merged["title"], "Billing");
    assert_eq!(merged["status"], "closed");
    let (_, cleared) = call(&app, Method::PATCH, &path, Some(&json!({"title": null}))).await;
    assert_eq!(cleared["title"], Value::Null);
    assert_eq!(conversation(&app, c["id"].as_str().unwrap()).await, cleared);

    for (body, field) in [
        (json!({"status": "deleted"}), "status"),
        (json!({"title": 5}), "title"),
        (json!({"metadata": "x"}), "metadata"),
    ] {
        let (status, answer) = call(&app, Method::PATCH, &path, Some(&body)).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(answer["details"]["field"], field);
    }
}

#[tokio::test]
async fn an_archived_conversation_reopens_when_an_inbound_message_arrives() {
    let app = spawn_app().await;
    let m = send(&app, ALICE, BOB, "hello").await;
    let id = m["conversation_id"].as_str().unwrap();
    let path = format!("/api/v1/conversations/{id}");
    call(
        &app,
        Method::PATCH,
        &path,
        Some(&json!({"status": "archived"})),
    )
    .await;

    // Our own outbound message does not re-open it...
    send(&app, ALICE, BOB, "one more").await;
    assert_eq!(conversation(&app, id).await["status"], "archived");
    // ...a message from the other side does.
    receive(&app, BOB, ALICE, "in-reopen", "I'm back").await;
    let c = conversation(&app, id).await;
    assert_eq!(c["status"], "active");
    assert_eq!(c["message_count"], 3);
    assert_eq!(c["unread_count"], 1);
}

#[tokio::test]
async fn delete_answers_204_and_removes_the_messages_and_their_events() {
    let app = spawn_app().await;
    let m = send(&app, ALICE, BOB, "hello").await;
    receive(&app, BOB, ALICE, "in-del", "hi").await;
    let other = send(&app, ALICE, "+15550003333", "keep me").await;
    let id = m["conversation_id"].as_str().unwrap();
    let msg_id = m["id"].as_str().unwrap();
    app.drain_until(msg_id, MessageStatus::Sent).await;
    // Search finds the sent message once (its status changes do not index its text again)
    // until the conversation is deleted.
    let matching = |found: &Value| -> Vec<(String, i64)> {
        found["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let id = c["id"].as_str().unwrap().to_owned();
                (id, c["matching_messages"].as_i64().unwrap())
            })
            .collect()
    };
    let hello = json!({"query": "hello"});
    let (status, found) = post(&app, "/api/v1/conversations/search", &hello).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(matching(&found), vec![(id.to_owned(), 1)], "{found}");

    let (status, body) = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/conversations/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(body, Value::Null);
    let (status, _) = app.get_json(&format!("/api/v1/conversations/{id}")).await;
    assert_eq!(status, 404);
    let (status, _) = app.get_json(&format!("/api/v1/messages/{msg_id}")).await;
    assert_eq!(status, 404);
    let (_, left) = app.get_json("/api/v1/messages").await;
    assert_eq!(ids(&left, "messages"), vec![other["id"].as_str().unwrap()]);

    let events = app
        .db_count(
            "select count(*) from message_events e left join messages m on m.id = e.message_id where m.id is null or cast(m.conversation_id as text) = $1",
            &[id],
        )
        .await;
    assert_eq!(events, 0, "events of deleted messages are gone");
    let (_, found) = post(&app, "/api/v1/conversations/search", &hello).await;
    assert_eq!(
        matching(&found),
        vec![],
        "the deleted text is not found: {found}"
    );
    // Search would not show it anyway (a hit needs its conversation), so look at the table:
    // the text itself must be gone. (SQLite's index is emptied by a trigger, checked in the
    // conformance suite's `sqlite_vacuum`.)
    if crate::helpers::backend() == crate::helpers::Backend::PostgresRedis {
        let texts = app
            .db_count(
                "select count(*) from message_texts where cast(conversation_id as text) = $1",
                &[id],
            )
            .await;
        assert_eq!(
            texts, 0,
            "the search documents of deleted messages are gone"
        );
    }
    let (_, kept) = post(
        &app,
        "/api/v1/conversations/search",
        &json!({"query": "keep"}),
    )
    .await;
    let other_conversation = other["conversation_id"].as_str().unwrap().to_owned();
    assert_eq!(matching(&kept), vec![(other_conversation, 1)], "{kept}");
    let (status, _) = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/conversations/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 404, "a second delete finds nothing");
}

#[tokio::test]
async fn read_marks_inbound_messages_read_and_zeroes_unread_count() {
    let app = spawn_app().await;
    let m = send(&app, ALICE, BOB, "question?").await;
    let id = m["conversation_id"].as_str().unwrap().to_owned();
    receive(&app, BOB, ALICE, "in-r1", "answer 1").await;
    receive(&app, BOB, ALICE, "in-r2", "answer 2").await;
    assert_eq!(conversation(&app, &id).await["unread_count"], 2);
    let (_, inbound) = app
        .get_json(&format!(
            "/api/v1/messages?conversation_id={id}&direction=inbound"
        ))
        .await;
    assert!(
        inbound["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["read_at"].is_null())
    );

    let (status, read) = post(
        &app,
        &format!("/api/v1/conversations/{id}/read"),
        &json!({}),
    )
    .await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["unread_count"], 0);
    assert_eq!(read["marked_read"], 2);
    assert_eq!(read["message_count"], 3);
    let (_, inbound) = app
        .get_json(&format!(
            "/api/v1/messages?conversation_id={id}&direction=inbound"
        ))
        .await;
    assert!(
        inbound["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["read_at"].is_string())
    );
    let (_, outbound) = app
        .get_json(&format!(
            "/api/v1/messages?conversation_id={id}&direction=outbound"
        ))
        .await;
    assert!(outbound["messages"][0]["read_at"].is_null());

    // The cycle starts again with the next inbound message; reading twice marks nothing.
    receive(&app, BOB, ALICE, "in-r3", "answer 3").await;
    assert_eq!(conversation(&app, &id).await["unread_count"], 1);
    let (_, read) = post(
        &app,
        &format!("/api/v1/conversations/{id}/read"),
        &json!({}),
    )
    .await;
    assert_eq!(read["marked_read"], 1);
    let (_, again) = post(
        &app,
        &format!("/api/v1/conversations/{id}/read"),
        &json!({}),
    )
    .await;
    assert_eq!(again["marked_read"], 0);
    assert_eq!(again["unread_count"], 0);
}

#[tokio::test]
async fn search_ranks_conversations_by_how_well_their_messages_match() {
    let app = spawn_app().await;
    let (carol, dave, erin) = ("+15550000001", "+15550000002", "+15550000003");
    for body in [
        "Your invoice is ready",
        "invoice #2 attached",
        "Reminder: unpaid invoice",
    ] {
        send(&app, ALICE, carol, body).await;
    }
    send(&app, ALICE, dave, "Lunch tomorrow? Also the invoice").await;
    send(&app, ALICE, erin, "Nothing to see here").await;
    let email = app
        .send(
            &json!({"from": "billing@example.com", "to": "c@example.com", "subject": "Invoice",
                      "body": "<p>Please find the <b>invoice</b></p>"}),
        )
        .await;

    let (status, found) = post(
        &app,
        "/api/v1/conversations/search",
        &json!({"query": "invoice"}),
    )
    .await;
    assert_eq!(status, 200, "{found}");
    let hits = found["conversations"].as_array().unwrap();
    assert_eq!(hits.len(), 3, "{found}");
    assert_eq!(hits[0]["participants"], json!([carol, ALICE]));
    assert_eq!(hits[0]["matching_messages"], 3);
    let ranks: Vec<f64> = hits.iter().map(|h| h["rank"].as_f64().unwrap()).collect();
    assert!(ranks.windows(2).all(|w| w[0] >= w[1]), "ranked: {ranks:?}");
    assert!(ranks[0] > ranks[2]);
    assert!(hits.iter().any(|h| h["id"] == email["conversation_id"]));
    assert!(!hits.iter().any(|h| h["participants"][0] == erin));

    // Words, not substrings, and several of them must all be present.
    let (_, both) = post(
        &app,
        "/api/v1/conversations/search",
        &json!({"query": "lunch invoice"}),
    )
    .await;
    assert_eq!(both["conversations"].as_array().unwrap().len(), 1);
    assert_eq!(both["conversations"][0]["participants"][0], dave);
    let (_, limited) = post(
        &app,
        "/api/v1/conversations/search",
        &json!({"query": "invoice", "limit": 1}),
    )
    .await;
    assert_eq!(limited["conversations"].as_array().unwrap().len(), 1);
    let (_, none) = post(
        &app,
        "/api/v1/conversations/search",
        &json!({"query": "zebra"}),
    )
    .await;
    assert_eq!(none["conversations"], json!([]));
}

#[tokio::test]
async fn search_finds_conversations_by_participant_address_first() {
    let app = spawn_app().await;
    let carol = "+15550000001";
    let with_carol = send(&app, ALICE, carol, "hi").await;
    // Another conversation merely mentions Carol's number in its text.
    send(&app, ALICE, BOB, "call Carol at +15550000001").await;
    send(&app, "jane@example.com", "support@example.com", "hello").await;

    let (_, found) = post(
        &app,
        "/api/v1/conversations/search",
        &json!({"query": "+1 (555) 000-0001"}),
    )
    .await;
    let hits = found["conversations"].as_array().unwrap();
    assert_eq!(hits.len(), 2, "{found}");
    assert_eq!(
        hits[0]["id"], with_carol["conversation_id"],
        "the participant ranks first"
    );

    let (_, by_email) = post(
        &app,
        "/api/v1/conversations/search",
        &json!({"query": "jane@Example.com"}),
    )
    .await;
    assert_eq!(by_email["conversations"].as_array().unwrap().len(), 1);
    // A prefix of an address finds its conversations too.
    let (_, by_prefix) = post(
        &app,
        "/api/v1/conversations/search",
        &json!({"query": "jane@"}),
    )
    .await;
    assert_eq!(by_prefix["conversations"].as_array().unwrap().len(), 1);

    for (body, field) in [
        (json!({}), "query"),
        (json!({"query": "  "}), "query"),
        (json!({"query": "x", "limit": 0}), "limit"),
        (json!({"query": "x", "limit": 101}), "limit"),
        (json!({"query": "x".repeat(201)}), "query"),
    ] {
        let (status, answer) = post(&app, "/api/v1/conversations/search", &body).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(answer["details"]["field"], field, "{body}");
    }
    // Query syntax never breaks the search.
    let (status, _) = post(
        &app,
        "/api/v1/conversations/search",
        &json!({"query": "\"unbalanced & | ! ( :*"}),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn statistics_count_directions_failures_and_time_from_accepted_to_sent() {
    let app = spawn_app().await;
    let ok = send(&app, ALICE, BOB, "will be sent").await;
    app.drain_until(ok["id"].as_str().unwrap(), MessageStatus::Sent)
        .await;
    app.provider.fail_next([permanent("21211")]);
    let bad = send(&app, ALICE, BOB, "will fail").await;
    app.drain_until(bad["id"].as_str().unwrap(), MessageStatus::Failed)
        .await;
    receive(&app, BOB, ALICE, "in-stats", "thanks").await;
    let id = ok["conversation_id"].as_str().unwrap();

    let (status, stats) = app
        .get_json(&format!("/api/v1/conversations/{id}/statistics"))
        .await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["conversation_id"], id);
    assert_eq!(stats["total_messages"], 3);
    assert_eq!(stats["outbound"], 2);
    assert_eq!(stats["inbound"], 1);
    assert_eq!(stats["failed"], 1);
    let avg = stats["average_seconds_to_sent"]
        .as_f64()
        .expect("one sent message");
    assert!((0.0..15.0).contains(&avg), "{avg}");

    let empty = create(&app, ["a@example.com", "b@example.com"]).await;
    let (_, stats) = app
        .get_json(&format!(
            "/api/v1/conversations/{}/statistics",
            empty["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(stats["total_messages"], 0);
    assert_eq!(stats["average_seconds_to_sent"], Value::Null);
}

#[tokio::test]
async fn unknown_ids_are_404_and_malformed_ids_422_on_every_endpoint() {
    let app = spawn_app().await;
    let unknown = uuid::Uuid::now_v7();
    for (method, suffix, body) in [
        (Method::GET, "", None),
        (Method::GET, "/messages", None),
        (Method::GET, "/statistics", None),
        (Method::PATCH, "", Some(json!({"title": "x"}))),
        (Method::DELETE, "", None),
        (Method::POST, "/read", Some(json!({}))),
    ] {
        let (status, answer) = call(
            &app,
            method.clone(),
            &format!("/api/v1/conversations/{unknown}{suffix}"),
            body.as_ref(),
        )
        .await;
        assert_eq!(status, 404, "{method} {suffix}");
        assert_eq!(answer["error"], "not_found");
        assert_eq!(answer["details"]["resource"], "conversation");
        let (status, answer) = call(
            &app,
            method.clone(),
            &format!("/api/v1/conversations/1{suffix}"),
            body.as_ref(),
        )
        .await;
        assert_eq!(status, 422, "{method} {suffix}");
        assert_eq!(answer["details"]["field"], "id");
    }
}

/// Many sends and inbound messages to one conversation at once: every one is counted once,
/// and no request waits on another request's transaction.
#[tokio::test]
async fn counters_stay_exact_under_many_parallel_sends_and_inbound_messages() {
    let app = TestApp::builder()
        .env("INGEST_WRITERS", "4")
        .env("INGEST_BATCH_SIZE", "8")
        .env("DB_MAX_CONNECTIONS", "10")
        .spawn()
        .await;
    const SENDS: usize = 200;
    const INBOUND: usize = 100;
    let app = std::sync::Arc::new(app);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..SENDS {
        let app = app.clone();
        tasks.spawn(async move {
            let resp = app
                .post_send(&json!({"from": ALICE, "to": BOB, "body": format!("out {i}")}))
                .await;
            assert_eq!(resp.status(), 201);
        });
    }
    for i in 0..INBOUND {
        let app = app.clone();
        tasks.spawn(async move {
            receive(&app, BOB, ALICE, &format!("hot-{i}"), &format!("in {i}")).await;
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("request task");
    }

    let (_, list) = app.get_json("/api/v1/conversations").await;
    assert_eq!(list["total"], 1, "one conversation for the pair");
    let c = &list["conversations"][0];
    assert_eq!(c["message_count"], (SENDS + INBOUND) as i64);
    assert_eq!(c["unread_count"], INBOUND as i64);
    let id = c["id"].as_str().unwrap();
    let (_, stats) = app
        .get_json(&format!("/api/v1/conversations/{id}/statistics"))
        .await;
    assert_eq!(stats["outbound"], SENDS as i64);
    assert_eq!(stats["inbound"], INBOUND as i64);

    // Reading while more inbound messages arrive: unread_count always equals the unread rows.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let app = app.clone();
        tasks.spawn(async move {
            receive(&app, BOB, ALICE, &format!("late-{i}"), "late").await;
        });
    }
    for _ in 0..5 {
        let app = app.clone();
        let id = id.to_owned();
        tasks.spawn(async move {
            let (status, _) = post(
                &app,
                &format!("/api/v1/conversations/{id}/read"),
                &json!({}),
            )
            .await;
            assert_eq!(status, 200);
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("request task");
    }
    let unread_rows = app
        .db_count(
            "select count(*) from messages where cast(conversation_id as text) = $1 and direction = 'inbound' and read_at is null",
            &[id],
        )
        .await;
    let c = conversation(&app, id).await;
    assert_eq!(c["unread_count"], unread_rows);
    assert_eq!(c["message_count"], (SENDS + INBOUND + 50) as i64);
}

/// Metadata numbers within the documented ±1e300 are kept and read back, in the list too.
#[tokio::test]
async fn large_metadata_numbers_within_the_limit_read_back() {
    let app = spawn_app().await;
    let metadata = json!({"big": 1e300, "int": -1729283873406938838466560.0, "u": u64::MAX});
    let (status, created) = post(
        &app,
        "/api/v1/conversations",
        &json!({"participants": [ALICE, BOB], "metadata": metadata}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let (status, list) = app.get_json("/api/v1/conversations").await;
    assert_eq!(status, 200, "{list}");
    let id = created["id"].as_str().unwrap();
    let (status, one) = app.get_json(&format!("/api/v1/conversations/{id}")).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["metadata"]["u"], json!(u64::MAX));
    assert!(one["metadata"]["big"].as_f64().is_some_and(|f| f > 9e299));
}
