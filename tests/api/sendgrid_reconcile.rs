//! Reconciling SendGrid sends through their events: a worker dies after SendGrid accepted an
//! email, before the outcome was written. SendGrid cannot be asked, so a re-send waits
//! `SENDGRID_RECONCILE_WAIT` for the message's events (which carry our id as
//! `custom_args.message_id`); an event records the send, and without one the email is sent
//! after the wait, once.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use messaging_service::domain::MessageStatus;
use p256::pkcs8::EncodePublicKey;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::TestApp;
use crate::providers_sendgrid::sendgrid_app;
use crate::webhooks::sendgrid_signing_key;

const SG_ID: &str = "sgReconcile01";

/// A fake SendGrid that accepts every email with the same `X-Message-Id`.
async fn fake_sendgrid() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .respond_with(ResponseTemplate::new(202).insert_header("X-Message-Id", SG_ID))
        .mount(&server)
        .await;
    server
}

async fn sends(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == "/v3/mail/send")
        .count()
}

async fn app_on(server: &MockServer, wait: &str) -> TestApp {
    let public_key = p256::PublicKey::from(sendgrid_signing_key().verifying_key())
        .to_public_key_der()
        .expect("der");
    let key = BASE64.encode(public_key.as_bytes());
    sendgrid_app(
        &server.uri(),
        &[
            ("SENDGRID_WEBHOOK_PUBLIC_KEY", &key),
            ("PACING_ENABLED", "false"),
            ("QUEUE_VISIBILITY_TIMEOUT", "0.3"),
            ("SENDGRID_RECONCILE_WAIT", wait),
        ],
    )
    .await
}

/// A worker reads and claims the email, then dies; `sent_to`: the SendGrid it sent the
/// email to first (its request as the adapter makes it, our id in `custom_args`).
async fn a_worker_dies_holding(app: &TestApp, sent_to: Option<&str>) -> String {
    let created = app
        .send(&json!({"from": "news@example.com", "to": "ann@example.org", "subject": "Hi", "body": "Hello"}))
        .await;
    let id = created["id"].as_str().expect("an id").to_owned();
    let fetched = app
        .components
        .queue
        .fetch("doomed-worker", 10, Duration::ZERO)
        .await
        .expect("fetch");
    assert_eq!(fetched.len(), 1);
    let claim = app
        .components
        .store
        .claim(&[id.parse().expect("uuid")], Duration::from_millis(300))
        .await
        .expect("claim");
    assert_eq!(claim.messages.len(), 1);
    if let Some(base) = sent_to {
        let resp = reqwest::Client::new()
            .post(format!("{base}/v3/mail/send"))
            .bearer_auth("SG.test-key")
            .json(&json!({
                "personalizations": [{"to": [{"email": "ann@example.org"}], "custom_args": {"message_id": id}}],
                "from": {"email": "news@example.com"}, "subject": "Hi",
                "content": [{"type": "text/plain", "value": "Hello"}],
                "custom_args": {"message_id": id},
            }))
            .send()
            .await
            .expect("the dead worker's send");
        assert_eq!(resp.status(), 202);
    }
    id
}

/// Reclaims until the expired claim is taken over and settled: the re-send is deferred.
async fn reclaim_until_deferred(app: &TestApp, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        app.worker.reclaim_once().await.expect("reclaim");
        let m = app.message(id).await;
        if m["status"] == MessageStatus::Retry.as_str() {
            return m;
        }
        assert!(Instant::now() < deadline, "never deferred: {m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn event(id: &str, event: &str, key: &str) -> Value {
    json!({
        "event": event, "sg_event_id": key, "sg_message_id": format!("{SG_ID}.filter0001.1.2.0"),
        "email": "ann@example.org", "timestamp": 1_764_700_000, "message_id": id,
    })
}

fn reconciled_line(events: &[Value]) -> Option<&Value> {
    events
        .iter()
        .find(|e| e["to_status"] == "sent" && e["detail"]["reconciled"] == true)
}

#[tokio::test]
async fn an_event_records_the_send_of_a_dead_worker_while_the_re_send_waits() {
    let server = fake_sendgrid().await;
    let app = app_on(&server, "60").await;
    let id = a_worker_dies_holding(&app, Some(&server.uri())).await;

    // The claim expires: the re-send waits for SendGrid's events, without spending an attempt.
    let deferred = reclaim_until_deferred(&app, &id).await;
    assert_eq!(deferred["error"]["code"], "reconcile", "{deferred}");
    assert_eq!(deferred["retry_count"], 0, "{deferred}");
    assert_eq!(sends(&server).await, 1);

    // SendGrid's events arrive, carrying our id: the send is recorded, then delivered.
    let resp = app
        .sendgrid_events(&json!([
            event(&id, "processed", "ev-p"),
            event(&id, "delivered", "ev-d")
        ]))
        .await;
    assert_eq!(resp.status(), 200);
    let m = app.message(&id).await;
    assert_eq!(m["status"], "delivered", "{m}");
    assert_eq!(m["provider"], "sendgrid");
    assert_eq!(m["provider_message_id"], SG_ID);
    let history = app.events(&id).await;
    let line =
        reconciled_line(&history).unwrap_or_else(|| panic!("no reconcile line: {history:?}"));
    assert_eq!(line["from_status"], "retry");

    // The deferred task finds it sent: nothing is sent again, even once the wait is over.
    for _ in 0..3 {
        app.worker.reclaim_once().await.expect("reclaim");
        app.worker.process_once().await.expect("worker step");
    }
    assert_eq!(app.message(&id).await["status"], "delivered");
    assert_eq!(sends(&server).await, 1, "one send at SendGrid");
    let metrics = app.get("/metrics").await.text().await.unwrap_or_default();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("message_reconciled_total") && l.contains("sendgrid")),
        "message_reconciled_total counts it"
    );
    // A replay changes nothing.
    let replay = app
        .sendgrid_events(&json!([event(&id, "delivered", "ev-d")]))
        .await;
    assert_eq!(replay.status(), 200);
    assert_eq!(app.message(&id).await["status"], "delivered");
}

#[tokio::test]
async fn an_event_that_beats_the_reclaim_records_the_send_and_nothing_is_claimed_again() {
    let server = fake_sendgrid().await;
    let app = app_on(&server, "60").await;
    let id = a_worker_dies_holding(&app, Some(&server.uri())).await;
    // The event arrives while the dead worker's claim still says `sending`.
    let resp = app
        .sendgrid_events(&json!([event(&id, "delivered", "ev-1")]))
        .await;
    assert_eq!(resp.status(), 200);
    let m = app.message(&id).await;
    assert_eq!(m["status"], "delivered", "{m}");
    assert_eq!(m["provider_message_id"], SG_ID);
    assert_eq!(
        reconciled_line(&app.events(&id).await).map(|l| l["from_status"].clone()),
        Some(json!("sending"))
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    for _ in 0..3 {
        app.worker.reclaim_once().await.expect("reclaim");
        app.worker.process_once().await.expect("worker step");
    }
    assert_eq!(app.message(&id).await["status"], "delivered");
    assert_eq!(sends(&server).await, 1);
}

#[tokio::test]
async fn without_events_the_email_is_sent_once_after_the_wait() {
    let server = fake_sendgrid().await;
    let app = app_on(&server, "1").await;
    let id = a_worker_dies_holding(&app, None).await;
    let started = Instant::now();
    let deferred = reclaim_until_deferred(&app, &id).await;
    assert_eq!(deferred["error"]["code"], "reconcile", "{deferred}");
    assert_eq!(sends(&server).await, 0, "not sent during the wait");
    let sent = app.drain_until(&id, MessageStatus::Sent).await;
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "the wait was kept"
    );
    assert_eq!(sent["provider_message_id"], SG_ID);
    assert_eq!(sent["retry_count"], 0, "the wait was not an attempt");
    assert_eq!(sends(&server).await, 1);
}

#[tokio::test]
async fn an_event_naming_a_message_that_already_has_a_provider_id_is_applied_as_usual() {
    let server = fake_sendgrid().await;
    let app = app_on(&server, "60").await;
    let created = app
        .send(&json!({"from": "news@example.com", "to": "bob@example.org", "subject": "Hi", "body": "Hello"}))
        .await;
    let id = created["id"].as_str().expect("an id").to_owned();
    app.drain_until(&id, MessageStatus::Sent).await;
    // Another provider id naming the same message does not replace the recorded one.
    let mut other = event(&id, "delivered", "ev-x");
    other["sg_message_id"] = json!("sgSomethingElse.filter1");
    let resp = app.sendgrid_events(&json!([other])).await;
    assert_eq!(resp.status(), 200);
    let m = app.message(&id).await;
    assert_eq!(m["status"], "sent");
    assert_eq!(m["provider_message_id"], SG_ID);
    assert!(reconciled_line(&app.events(&id).await).is_none());
}

/// End to end with the fake SendGrid (`tools/fake-providers`): it accepts the dead worker's
/// request and posts SendGrid's events back to the service (unsigned, so signature checks are
/// off here), custom args as top-level keys, as SendGrid does.
#[tokio::test]
async fn the_fake_sendgrid_s_own_events_record_the_dead_worker_s_send() {
    let fake_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let fake_base = format!("http://127.0.0.1:{fake_port}");
    let app = sendgrid_app(
        &fake_base,
        &[
            ("WEBHOOK_VERIFY_SIGNATURES", "false"),
            ("PACING_ENABLED", "false"),
            ("QUEUE_VISIBILITY_TIMEOUT", "0.3"),
            ("SENDGRID_RECONCILE_WAIT", "60"),
        ],
    )
    .await;
    let stop = tokio_util::sync::CancellationToken::new();
    fake_providers::start(
        fake_providers::FakeProvidersArgs {
            port: fake_port,
            callback_delay_ms: 300,
            no_callbacks: false,
            public_base_url: Some(app.url("")),
            ..fake_providers::FakeProvidersArgs::in_process()
        },
        stop.clone(),
    )
    .await
    .expect("start the fake providers");
    let _stop = stop.drop_guard();

    let id = a_worker_dies_holding(&app, Some(&fake_base)).await;

    // Meanwhile the claim expires and the re-send waits; the fake's events arrive.
    let deadline = Instant::now() + Duration::from_secs(15);
    let m = loop {
        app.worker.reclaim_once().await.expect("reclaim");
        app.worker.process_once().await.expect("worker step");
        let m = app.message(&id).await;
        if m["status"] == "delivered" {
            break m;
        }
        assert!(Instant::now() < deadline, "never delivered: {m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(m["provider"], "sendgrid");
    assert!(reconciled_line(&app.events(&id).await).is_some());
    let log: Value = reqwest::get(format!("{fake_base}/_fake/requests"))
        .await
        .expect("the fake's log")
        .json()
        .await
        .expect("json");
    let sends: Vec<&Value> = log["requests"]
        .as_array()
        .map(|r| r.iter().filter(|r| r["path"] == "/v3/mail/send").collect())
        .unwrap_or_default();
    assert_eq!(sends.len(), 1, "one send at the fake: {log}");
    assert_eq!(m["provider_message_id"], sends[0]["id"]);
}
