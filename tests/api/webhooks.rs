//! Provider callbacks over HTTP: signatures, receipts, replays, the delivery log.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use messaging_service::domain::MessageStatus;
use messaging_service::webhook::signature::twilio_signature;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey;
use serde_json::{Value, json};

use crate::helpers::{TestApp, sms_body};

pub const TOKEN: &str = "test-auth-token";
pub const PUBLIC: &str = "https://hooks.example.com";

pub fn sendgrid_signing_key() -> SigningKey {
    SigningKey::from_slice(&[42u8; 32]).expect("a valid P-256 scalar")
}

pub async fn webhook_app() -> TestApp {
    let public_key = p256::PublicKey::from(sendgrid_signing_key().verifying_key())
        .to_public_key_der()
        .expect("der");
    TestApp::builder()
        .env("TWILIO_AUTH_TOKEN", TOKEN)
        .env("PUBLIC_BASE_URL", PUBLIC)
        .env(
            "SENDGRID_WEBHOOK_PUBLIC_KEY",
            &BASE64.encode(public_key.as_bytes()),
        )
        .env("WEBHOOK_SECRET", "parse-secret")
        .spawn()
        .await
}

pub fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl TestApp {
    /// Posts a Twilio callback signed as Twilio would sign it for our public URL.
    pub async fn twilio(&self, params: &[(String, String)]) -> reqwest::Response {
        let signature =
            twilio_signature(TOKEN, &format!("{PUBLIC}/api/v1/webhooks/twilio"), params);
        self.twilio_signed(params, Some(&signature)).await
    }

    pub async fn twilio_signed(
        &self,
        params: &[(String, String)],
        signature: Option<&str>,
    ) -> reqwest::Response {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let mut req = self
            .client
            .post(self.url("/api/v1/webhooks/twilio"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(s) = signature {
            req = req.header("X-Twilio-Signature", s);
        }
        req.send().await.expect("request")
    }

    pub async fn sendgrid_events(&self, events: &Value) -> reqwest::Response {
        let ts = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
        self.sendgrid_events_at(events, &ts).await
    }

    pub async fn sendgrid_events_at(&self, events: &Value, ts: &str) -> reqwest::Response {
        let body = events.to_string();
        let payload = format!("{ts}{body}");
        let signature: Signature = sendgrid_signing_key().sign(payload.as_bytes());
        self.client
            .post(self.url("/api/v1/webhooks/sendgrid"))
            .header("Content-Type", "application/json")
            .header(
                "X-Twilio-Email-Event-Webhook-Signature",
                BASE64.encode(signature.to_der().as_bytes()),
            )
            .header("X-Twilio-Email-Event-Webhook-Timestamp", ts)
            .body(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn webhook_log(&self) -> Vec<Value> {
        let (status, body) = self.get_json("/api/v1/webhook-deliveries?limit=100").await;
        assert_eq!(status, 200);
        body["deliveries"].as_array().cloned().unwrap_or_default()
    }
}

/// Sends an sms and lets the worker deliver it; returns (id, provider sid).
async fn sent_sms(app: &TestApp) -> (String, String) {
    let id = app.send(&sms_body()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sent = app.drain_until(&id, MessageStatus::Sent).await;
    (id, sent["provider_message_id"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_twilio_delivered_callback_moves_a_sent_message_to_delivered() {
    let app = webhook_app().await;
    let (id, sid) = sent_sms(&app).await;
    let resp = app
        .twilio(&form(&[
            ("MessageSid", &sid),
            ("MessageStatus", "delivered"),
            ("AccountSid", "AC1"),
        ]))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/xml");
    assert!(resp.text().await.unwrap().contains("<Response/>"));
    let m = app.message(&id).await;
    assert_eq!(m["status"], "delivered");
    assert!(m["delivered_at"].is_string());
    let last = app.events(&id).await.last().cloned().unwrap();
    assert_eq!(last["event"], "provider_event");
    assert_eq!(last["from_status"], "sent");
    assert_eq!(last["to_status"], "delivered");
}

#[tokio::test]
async fn an_undelivered_callback_fails_the_message_with_twilios_error_code() {
    let app = webhook_app().await;
    let (id, sid) = sent_sms(&app).await;
    let resp = app
        .twilio(&form(&[
            ("MessageSid", &sid),
            ("MessageStatus", "undelivered"),
            ("ErrorCode", "30003"),
        ]))
        .await;
    assert_eq!(resp.status(), 200);
    let m = app.message(&id).await;
    assert_eq!(m["status"], "failed");
    assert_eq!(m["error"]["code"], "30003");
    assert!(m["failed_at"].is_string());
}

#[tokio::test]
async fn late_and_repeated_callbacks_never_move_a_message_backwards() {
    let app = webhook_app().await;
    let (id, sid) = sent_sms(&app).await;
    let delivered = form(&[("MessageSid", &sid), ("MessageStatus", "delivered")]);
    assert_eq!(app.twilio(&delivered).await.status(), 200);
    // A late `sent` and a replayed `delivered` change nothing.
    assert_eq!(
        app.twilio(&form(&[("MessageSid", &sid), ("MessageStatus", "sent")]))
            .await
            .status(),
        200
    );
    assert_eq!(app.twilio(&delivered).await.status(), 200);
    assert_eq!(app.message(&id).await["status"], "delivered");
    let provider_events: Vec<Value> = app
        .events(&id)
        .await
        .into_iter()
        .filter(|e| e["event"] == "provider_event")
        .collect();
    assert_eq!(
        provider_events.len(),
        2,
        "the replay adds nothing; the late sent is only history"
    );
    let outcomes: Vec<String> = app
        .webhook_log()
        .await
        .iter()
        .map(|d| d["outcome"].as_str().unwrap().to_owned())
        .collect();
    let mut sorted = outcomes.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["applied", "duplicate", "recorded"],
        "every call is logged, the replay as a duplicate"
    );
}

#[tokio::test]
async fn a_callback_for_an_unknown_sid_is_answered_200_and_only_logged() {
    let app = webhook_app().await;
    let resp = app
        .twilio(&form(&[
            ("MessageSid", "SMdoesnotexist"),
            ("MessageStatus", "delivered"),
        ]))
        .await;
    assert_eq!(resp.status(), 200);
    let (_, list) = app.get_json("/api/v1/messages").await;
    assert_eq!(list["total"], 0);
    let log = app.webhook_log().await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["outcome"], "unknown_message");
    assert_eq!(log[0]["verified"], true);
}

#[tokio::test]
async fn forged_or_missing_twilio_signatures_are_403_and_store_nothing() {
    let app = webhook_app().await;
    let (id, sid) = sent_sms(&app).await;
    let params = form(&[("MessageSid", &sid), ("MessageStatus", "delivered")]);
    let forged = twilio_signature(
        "another-token",
        &format!("{PUBLIC}/api/v1/webhooks/twilio"),
        &params,
    );
    let resp = app.twilio_signed(&params, Some(&forged)).await;
    assert_eq!(resp.status(), 403);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"], "invalid_signature");
    assert_eq!(app.twilio_signed(&params, None).await.status(), 403);
    // Signed for another URL (e.g. the proxy's internal address) is not good enough either.
    let wrong_url = twilio_signature(TOKEN, &app.url("/api/v1/webhooks/twilio"), &params);
    assert_eq!(
        app.twilio_signed(&params, Some(&wrong_url)).await.status(),
        403
    );
    assert_eq!(app.message(&id).await["status"], "sent");
    let log = app.webhook_log().await;
    assert_eq!(log.len(), 3);
    assert!(
        log.iter()
            .all(|d| d["outcome"] == "rejected" && d["verified"] == false)
    );
}

#[tokio::test]
async fn sendgrid_events_deliver_and_fail_emails_and_record_engagement() {
    let app = webhook_app().await;
    let email = |to: &str| json!({"from": "a@example.com", "to": to, "subject": "s", "body": "x"});
    let a = app.send(&email("one@example.com")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = app.send(&email("two@example.com")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let pa = app.drain_until(&a, MessageStatus::Sent).await["provider_message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let pb = app.drain_until(&b, MessageStatus::Sent).await["provider_message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let events = json!([
        {"event": "processed", "sg_event_id": "ev-1", "sg_message_id": format!("{pa}.filter001"), "email": "one@example.com"},
        {"event": "delivered", "sg_event_id": "ev-2", "sg_message_id": format!("{pa}.filter001"), "response": "250 OK"},
        {"event": "open", "sg_event_id": "ev-3", "sg_message_id": format!("{pa}.filter001")},
        {"event": "bounce", "type": "bounce", "reason": "550 5.1.1 no such user", "sg_event_id": "ev-4", "sg_message_id": format!("{pb}.filter002")},
    ]);
    let resp = app.sendgrid_events(&events).await;
    assert_eq!(resp.status(), 200);
    let summary: Value = resp.json().await.unwrap();
    assert_eq!(summary["applied"], 2);
    assert_eq!(summary["recorded"], 2);
    assert_eq!(app.message(&a).await["status"], "delivered");
    let failed = app.message(&b).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["message"], "550 5.1.1 no such user");
    // SendGrid retries non-2xx for a day: the same batch again changes nothing.
    let again: Value = app.sendgrid_events(&events).await.json().await.unwrap();
    assert_eq!(again["duplicate"], 4);
    assert_eq!(
        app.events(&a)
            .await
            .iter()
            .filter(|e| e["event"] == "provider_event")
            .count(),
        3
    );
}

#[tokio::test]
async fn a_batch_of_500_sendgrid_events_is_applied_in_one_request() {
    let app = webhook_app().await;
    let id = app
        .send(&json!({"from": "a@example.com", "to": "b@example.com", "body": "x"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let pmid = app.drain_until(&id, MessageStatus::Sent).await["provider_message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut events = vec![
        json!({"event": "delivered", "sg_event_id": "d-0", "sg_message_id": format!("{pmid}.f")}),
    ];
    for i in 1..500 {
        let kind = if i % 2 == 0 { "open" } else { "click" };
        events.push(json!({"event": kind, "sg_event_id": format!("e-{i}"), "sg_message_id": format!("{pmid}.f"), "url": "https://example.com"}));
    }
    let resp = app.sendgrid_events(&Value::Array(events)).await;
    assert_eq!(resp.status(), 200);
    let summary: Value = resp.json().await.unwrap();
    assert_eq!(summary["received"], 500);
    assert_eq!(summary["applied"], 1);
    assert_eq!(summary["recorded"], 499);
    assert_eq!(app.message(&id).await["status"], "delivered");
    assert_eq!(
        app.events(&id)
            .await
            .iter()
            .filter(|e| e["event"] == "provider_event")
            .count(),
        500
    );
}

#[tokio::test]
async fn sendgrid_events_with_a_bad_signature_or_stale_timestamp_are_403() {
    let app = webhook_app().await;
    let id = app
        .send(&json!({"from": "a@example.com", "to": "b@example.com", "body": "x"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let pmid = app.drain_until(&id, MessageStatus::Sent).await["provider_message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let events = json!([{"event": "delivered", "sg_event_id": "x1", "sg_message_id": pmid}]);
    let stale = (time::OffsetDateTime::now_utc().unix_timestamp() - 600).to_string();
    assert_eq!(app.sendgrid_events_at(&events, &stale).await.status(), 403);
    let forged = app
        .client
        .post(app.url("/api/v1/webhooks/sendgrid"))
        .header("Content-Type", "application/json")
        .header("X-Twilio-Email-Event-Webhook-Signature", "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0=")
        .header("X-Twilio-Email-Event-Webhook-Timestamp", time::OffsetDateTime::now_utc().unix_timestamp().to_string())
        .body(events.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(app.message(&id).await["status"], "sent");
}

#[tokio::test]
async fn an_inbound_twilio_sms_is_stored_threaded_and_reopens_an_archived_conversation() {
    let app = webhook_app().await;
    let (id, _) = sent_sms(&app).await;
    let conversation = app.message(&id).await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = app
        .client
        .patch(app.url(&format!("/api/v1/conversations/{conversation}")))
        .json(&json!({"status": "archived"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // The recipient answers: Twilio posts the reply to us.
    let reply = form(&[
        ("MessageSid", "SMinbound0001"),
        ("SmsStatus", "received"),
        ("From", "+15559876543"),
        ("To", "+15551234567"),
        ("Body", "Thanks!"),
        ("NumMedia", "0"),
        ("FromCity", "SPRINGFIELD"),
    ]);
    let resp = app.twilio(&reply).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/xml");
    // Twilio retries: a replay stores nothing new.
    assert_eq!(app.twilio(&reply).await.status(), 200);

    let (_, inbound) = app.get_json("/api/v1/messages?direction=inbound").await;
    assert_eq!(inbound["total"], 1);
    let m = &inbound["messages"][0];
    assert_eq!(m["status"], "received");
    assert_eq!(m["conversation_id"], conversation.as_str());
    assert_eq!(m["provider_message_id"], "SMinbound0001");
    let (_, c) = app
        .get_json(&format!("/api/v1/conversations/{conversation}"))
        .await;
    assert_eq!(
        c["status"], "active",
        "an inbound message re-opens the archived conversation"
    );
    assert_eq!(c["unread_count"], 1);
    let outcomes: Vec<Value> = app
        .webhook_log()
        .await
        .iter()
        .map(|d| d["outcome"].clone())
        .collect();
    assert!(
        outcomes.contains(&json!("stored")) && outcomes.contains(&json!("duplicate")),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn an_inbound_twilio_mms_keeps_its_media() {
    let app = webhook_app().await;
    let resp = app
        .twilio(&form(&[
            ("MessageSid", "MMinbound0001"),
            ("From", "+15559876543"),
            ("To", "+15551234567"),
            ("Body", ""),
            ("NumMedia", "1"),
            (
                "MediaUrl0",
                "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
            ),
            ("MediaContentType0", "image/jpeg"),
        ]))
        .await;
    assert_eq!(resp.status(), 200);
    let (_, inbound) = app.get_json("/api/v1/messages?direction=inbound").await;
    let m = &inbound["messages"][0];
    assert_eq!(m["type"], "mms");
    assert_eq!(
        m["attachments"][0],
        "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1"
    );
    assert_eq!(m["metadata"]["media_content_types"][0], "image/jpeg");
}

fn inbound_parse_form(message_id: &str) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new()
        .text(
            "headers",
            format!("Message-ID: <{message_id}>\nSubject: Question\n"),
        )
        .text("from", "Jane Doe <jane@customer.example>")
        .text("to", "support@ours.example")
        .text("subject", "Question")
        .text("text", "Where is my order?")
        .text("html", "<p>Where is my order?</p>")
        .text(
            "envelope",
            r#"{"to":["support@ours.example"],"from":"jane@customer.example"}"#,
        )
        .text("spam_score", "0.1")
        .text("attachments", "1")
        .text(
            "attachment-info",
            r#"{"attachment1":{"filename":"order.pdf","type":"application/pdf"}}"#,
        )
        .part(
            "attachment1",
            reqwest::multipart::Part::bytes(vec![7u8; 2048])
                .file_name("order.pdf")
                .mime_str("application/pdf")
                .unwrap(),
        )
}

#[tokio::test]
async fn sendgrid_inbound_parse_stores_a_threaded_email_with_its_attachments_recorded() {
    let app = webhook_app().await;
    let url = app.url("/api/v1/webhooks/sendgrid?token=parse-secret");
    let resp = app
        .client
        .post(&url)
        .multipart(inbound_parse_form("abc@mail.example"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = app
        .client
        .post(&url)
        .multipart(inbound_parse_form("abc@mail.example"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "a replay is answered 200");

    let (_, inbound) = app
        .get_json("/api/v1/messages?direction=inbound&type=email")
        .await;
    assert_eq!(inbound["total"], 1, "and stores nothing new");
    let m = &inbound["messages"][0];
    assert_eq!(m["from"], "jane@customer.example");
    assert_eq!(m["to"], "support@ours.example");
    assert_eq!(m["subject"], "Question");
    assert_eq!(m["body"], "Where is my order?");
    assert_eq!(m["provider_message_id"], "abc@mail.example");
    let attachment = &m["metadata"]["attachments"][0];
    assert_eq!(attachment["filename"], "order.pdf");
    assert_eq!(attachment["content_type"], "application/pdf");
    assert_eq!(attachment["size"], 2048);

    // Our reply threads into the same conversation.
    let reply = app
        .send(&json!({"from": "support@ours.example", "to": "jane@customer.example", "subject": "Re: Question", "body": "Shipped"}))
        .await;
    assert_eq!(reply["conversation_id"], m["conversation_id"]);
}

#[tokio::test]
async fn sendgrid_inbound_parse_without_the_secret_is_403_and_stores_nothing() {
    let app = webhook_app().await;
    for url in [
        "/api/v1/webhooks/sendgrid",
        "/api/v1/webhooks/sendgrid?token=wrong",
    ] {
        let resp = app
            .client
            .post(app.url(url))
            .multipart(inbound_parse_form("x@y"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{url}");
    }
    // Basic auth with the secret as password is the other accepted form.
    let resp = app
        .client
        .post(app.url("/api/v1/webhooks/sendgrid"))
        .basic_auth("sendgrid", Some("parse-secret"))
        .multipart(inbound_parse_form("basic@y"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (_, inbound) = app.get_json("/api/v1/messages?direction=inbound").await;
    assert_eq!(inbound["total"], 1);
}
