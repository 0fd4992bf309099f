//! Compliance over HTTP: opt-out keywords through the provider webhook and the original API,
//! the refusal of a send to a suppressed address, a queued message held back at the
//! worker, SendGrid events and SMTP refusals that suppress, the suppressions API.

use messaging_service::domain::MessageStatus;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, spawn_app};
use crate::webhooks::{form, webhook_app};

const OURS: &str = "+15551234567";
const THEIRS: &str = "+15559876543";

fn sms_to(to: &str) -> Value {
    json!({"from": OURS, "to": to, "type": "sms", "body": "Your code is 1234"})
}

/// An inbound SMS from `THEIRS` through the signed Twilio webhook.
async fn twilio_inbound(app: &TestApp, sid: &str, body: &str) {
    let resp = app
        .twilio(&form(&[
            ("MessageSid", sid),
            ("AccountSid", "AC1"),
            ("From", THEIRS),
            ("To", OURS),
            ("Body", body),
            ("NumMedia", "0"),
        ]))
        .await;
    assert_eq!(
        resp.status(),
        200,
        "{}",
        resp.text().await.unwrap_or_default()
    );
}

impl TestApp {
    async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn delete(&self, path: &str) -> u16 {
        let resp = self
            .client
            .delete(self.url(path))
            .send()
            .await
            .expect("request");
        resp.status().as_u16()
    }
}

#[tokio::test]
async fn stop_through_a_signed_twilio_webhook_refuses_sends_until_start() {
    let app = webhook_app().await;
    twilio_inbound(&app, "SMstop0001", "  Stop ").await;

    let (status, err) = app
        .post_json("/api/v1/messages/send", &sms_to(THEIRS))
        .await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["error"], "recipient_suppressed");
    assert_eq!(err["details"]["field"], "to");
    assert_eq!(err["details"]["reason"], "opted_out");
    assert!(err["details"]["since"].is_string(), "{err}");
    // Nothing was stored for the refused send; the keyword itself is stored as received.
    let (_, outbound) = app.get_json("/api/v1/messages?direction=outbound").await;
    assert_eq!(outbound["total"], 0);
    let (_, inbound) = app.get_json("/api/v1/messages?direction=inbound").await;
    assert_eq!(inbound["total"], 1);
    assert_eq!(inbound["messages"][0]["body"], "  Stop ");

    // Formatting of the number does not matter: addresses compare normalised.
    let (status, _) = app
        .post_json("/api/v1/messages/send", &sms_to("+1 (555) 987-6543"))
        .await;
    assert_eq!(status, 422);

    let (_, listed) = app.get_json("/api/v1/suppressions?channel=phone").await;
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["suppressions"][0]["address"], THEIRS);
    assert_eq!(listed["suppressions"][0]["reason"], "opted_out");

    // A replayed STOP changes nothing; START lifts the suppression.
    twilio_inbound(&app, "SMstop0001", "  Stop ").await;
    twilio_inbound(&app, "SMstart001", "START").await;
    let (status, body) = app
        .post_json("/api/v1/messages/send", &sms_to(THEIRS))
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, listed) = app.get_json("/api/v1/suppressions").await;
    assert_eq!(listed["total"], 0);
}

/// Sends arriving together share the send path's batches: a suppressed recipient among them
/// is refused, and the others in the same batch are stored and queued all the same.
#[tokio::test]
async fn sends_at_once_refuse_only_the_suppressed_recipient() {
    let app = spawn_app().await;
    let (status, _) = app
        .post_json("/api/v1/suppressions", &json!({"address": THEIRS}))
        .await;
    assert_eq!(status, 201);

    let sends = (0..40).map(|i| {
        let app = &app;
        async move {
            let to = if i % 2 == 0 {
                THEIRS.to_owned()
            } else {
                format!("+1555000{i:04}")
            };
            let (status, body) = app.post_json("/api/v1/messages/send", &sms_to(&to)).await;
            (to, status, body)
        }
    });
    let answers = futures_util::future::join_all(sends).await;
    for (to, status, body) in &answers {
        if to == THEIRS {
            assert_eq!(*status, 422, "{to}: {body}");
            assert_eq!(body["error"], "recipient_suppressed", "{body}");
        } else {
            assert_eq!(*status, 201, "{to}: {body}");
        }
    }
    let (_, outbound) = app
        .get_json("/api/v1/messages?direction=outbound&limit=100")
        .await;
    assert_eq!(outbound["total"], 20, "only the others are stored");
    let stored = outbound["messages"].as_array().expect("messages");
    assert!(stored.iter().all(|m| m["to"] != THEIRS), "{outbound}");
    assert_eq!(app.xlen("message_queue:sms").await, 20, "and queued");
}

#[tokio::test]
async fn a_keyword_through_the_original_webhook_api_suppresses_the_sender() {
    let app = spawn_app().await;
    let inbound = json!({"from": THEIRS, "to": OURS, "type": "sms",
        "messaging_provider_id": "legacy-stop", "body": "unsubscribe",
        "attachments": null, "timestamp": "2024-11-01T14:00:00Z"});
    let (status, answer) = app.post_json("/api/webhooks/sms", &inbound).await;
    assert_eq!(status, 200, "{answer}");
    let (status, err) = app.post_json("/api/messages/sms", &sms_to(THEIRS)).await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["error"], "recipient_suppressed");
    // A keyword inside a sentence is not one.
    let other = json!({"from": "+15550001111", "to": OURS, "type": "sms",
        "messaging_provider_id": "legacy-chat", "body": "please don't stop",
        "attachments": null, "timestamp": "2024-11-01T14:00:00Z"});
    assert_eq!(app.post_json("/api/webhooks/sms", &other).await.0, 200);
    app.send(&sms_to("+15550001111")).await;
}

#[tokio::test]
async fn a_queued_message_whose_recipient_opts_out_fails_without_reaching_the_provider() {
    let app = webhook_app().await;
    let queued = app.send(&sms_to(THEIRS)).await;
    let id = queued["id"].as_str().expect("id").to_owned();
    twilio_inbound(&app, "SMstop0002", "STOP").await;

    let failed = app.drain_until(&id, MessageStatus::Failed).await;
    assert_eq!(failed["error"]["code"], "recipient_suppressed", "{failed}");
    let uuid = Uuid::parse_str(&id).expect("uuid");
    assert_eq!(
        app.provider.calls_for(uuid),
        0,
        "the provider saw no request"
    );
}

#[tokio::test]
async fn sendgrid_bounces_complaints_and_unsubscribes_suppress_the_recipient() {
    let app = webhook_app().await;
    let events = json!([
        {"event": "bounce", "type": "bounce", "email": "Gone@Example.com", "reason": "550 5.1.1 no such user",
         "sg_event_id": "evt-bounce", "sg_message_id": "unknown.filter1"},
        {"event": "bounce", "type": "blocked", "email": "blocked@example.com",
         "sg_event_id": "evt-blocked", "sg_message_id": "unknown.filter1"},
        {"event": "spamreport", "email": "angry@example.com",
         "sg_event_id": "evt-spam", "sg_message_id": "unknown.filter1"},
        {"event": "group_unsubscribe", "email": "bye@example.com",
         "sg_event_id": "evt-unsub", "sg_message_id": "unknown.filter1"},
        {"event": "delivered", "email": "fine@example.com",
         "sg_event_id": "evt-ok", "sg_message_id": "unknown.filter1"}
    ]);
    let resp = app.sendgrid_events(&events).await;
    assert_eq!(resp.status(), 200);

    let (_, listed) = app
        .get_json("/api/v1/suppressions?channel=email&limit=100")
        .await;
    let mut got: Vec<(String, String)> = listed["suppressions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| {
            (
                s["address"].as_str().unwrap_or_default().to_owned(),
                s["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("angry@example.com".to_owned(), "complained".to_owned()),
            ("bye@example.com".to_owned(), "unsubscribed".to_owned()),
            ("gone@example.com".to_owned(), "bounced".to_owned()),
        ]
    );
    let email = json!({"from": "us@example.com", "to": "gone@EXAMPLE.com", "type": "email",
        "subject": "s", "body": "b"});
    let (status, err) = app.post_json("/api/v1/messages/send", &email).await;
    assert_eq!(status, 422);
    assert_eq!(err["details"]["reason"], "bounced");
}

#[tokio::test]
async fn suppressions_can_be_added_listed_and_removed() {
    let app = spawn_app().await;
    let (status, added) = app
        .post_json(
            "/api/v1/suppressions",
            &json!({"address": "Jane@Example.com"}),
        )
        .await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["address"], "jane@example.com");
    assert_eq!(added["channel"], "email");
    assert_eq!(added["reason"], "manual");
    let (status, again) = app
        .post_json(
            "/api/v1/suppressions",
            &json!({"address": "jane@example.com", "reason": "bounced"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(again["reason"], "manual", "the first entry stands");
    let (status, _) = app
        .post_json(
            "/api/v1/suppressions",
            &json!({"address": THEIRS, "reason": "opted_out"}),
        )
        .await;
    assert_eq!(status, 201);

    let (status, page) = app.get_json("/api/v1/suppressions?limit=1").await;
    assert_eq!(status, 200);
    assert_eq!(
        (page["total"].as_i64(), page["limit"].as_i64()),
        (Some(2), Some(1))
    );
    assert_eq!(page["suppressions"].as_array().map(Vec::len), Some(1));
    let (_, filtered) = app
        .get_json("/api/v1/suppressions?reason=opted_out&address=%2B15559876543")
        .await;
    assert_eq!(filtered["total"], 1);

    for (body, field) in [
        (json!({"address": "not an address"}), "address"),
        (json!({}), "address"),
        (json!({"address": THEIRS, "reason": "bored"}), "reason"),
    ] {
        let (status, err) = app.post_json("/api/v1/suppressions", &body).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(err["details"]["field"], field);
    }
    let (status, err) = app.get_json("/api/v1/suppressions?channel=fax").await;
    assert_eq!(
        (status, err["details"]["field"].as_str()),
        (422, Some("channel"))
    );

    assert_eq!(
        app.delete("/api/v1/suppressions/jane%40example.com").await,
        204
    );
    assert_eq!(
        app.delete("/api/v1/suppressions/jane%40example.com").await,
        404
    );
    assert_eq!(app.delete("/api/v1/suppressions/%2B15559876543").await, 204);
    assert_eq!(app.delete("/api/v1/suppressions/nobody").await, 422);
    assert_eq!(app.delete("/api/v1/suppressions/%FF%FE").await, 422);
    let (_, page) = app.get_json("/api/v1/suppressions").await;
    assert_eq!(page["total"], 0);
    app.send(&sms_to(THEIRS)).await;
}

#[tokio::test]
async fn an_opt_out_is_confirmed_when_a_reply_is_configured() {
    let app = TestApp::builder()
        .env("TWILIO_AUTH_TOKEN", crate::webhooks::TOKEN)
        .env("PUBLIC_BASE_URL", crate::webhooks::PUBLIC)
        .env(
            "OPT_OUT_REPLY",
            "You are unsubscribed. Reply START to resume.",
        )
        .env(
            "HELP_REPLY",
            "Msg&data rates may apply. Reply STOP to stop.",
        )
        .spawn()
        .await;
    twilio_inbound(&app, "SMstop0003", "stop").await;
    let (_, outbound) = app.get_json("/api/v1/messages?direction=outbound").await;
    assert_eq!(outbound["total"], 1, "{outbound}");
    let reply = &outbound["messages"][0];
    assert_eq!(reply["to"], THEIRS);
    assert_eq!(reply["from"], OURS);
    let id = reply["id"].as_str().expect("id").to_owned();
    // Sent even though its recipient has just been suppressed.
    app.drain_until(&id, MessageStatus::Sent).await;

    // A replayed keyword is not confirmed twice; HELP is answered when HELP_REPLY is set.
    twilio_inbound(&app, "SMstop0003", "stop").await;
    twilio_inbound(&app, "SMhelp0001", "help").await;
    let (_, outbound) = app.get_json("/api/v1/messages?direction=outbound").await;
    let bodies: Vec<&str> = outbound["messages"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m["body"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        bodies,
        [
            "Msg&data rates may apply. Reply STOP to stop.",
            "You are unsubscribed. Reply START to resume."
        ],
        "newest first"
    );
}

/// An SMTP server that refuses every recipient as unknown (`550 5.1.1`), on a port of
/// 20200–20299.
async fn refusing_smtp_server() -> u16 {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let mut listener = None;
    for port in 20210..20300 {
        if let Ok(l) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            listener = Some(l);
            break;
        }
    }
    let listener = listener.expect("a free port in 20210-20299");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                let _ = write.write_all(b"220 refusing ESMTP\r\n").await;
                while let Ok(Some(line)) = lines.next_line().await {
                    let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
                    let answer: &[u8] = match verb.as_str() {
                        "RCPT" => b"550 5.1.1 Recipient address rejected: User unknown\r\n",
                        "QUIT" => b"221 bye\r\n",
                        _ => b"250 ok\r\n",
                    };
                    if write.write_all(answer).await.is_err() || verb == "QUIT" {
                        break;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn an_smtp_refusal_of_an_unknown_mailbox_suppresses_the_address() {
    let port = refusing_smtp_server().await;
    let app = TestApp::builder()
        .real_providers()
        .env("EMAIL_PROVIDERS", "smtp")
        .env("SMTP_URL", &format!("smtp://127.0.0.1:{port}"))
        .spawn()
        .await;
    let email = json!({"from": "us@example.com", "to": "Nobody@Example.org", "type": "email",
        "subject": "s", "body": "b"});
    let id = app.send(&email).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let failed = app.drain_until(&id, MessageStatus::Failed).await;
    assert_eq!(failed["error"]["code"], "550", "{failed}");

    let (_, listed) = app.get_json("/api/v1/suppressions?channel=email").await;
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["suppressions"][0]["address"], "nobody@example.org");
    assert_eq!(listed["suppressions"][0]["reason"], "bounced");
    let (status, err) = app.post_json("/api/v1/messages/send", &email).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (422, Some("recipient_suppressed"))
    );
}
