//! Events to the application over HTTP: webhook endpoint CRUD and validation, signed
//! deliveries to a local receiver checked with the official `standardwebhooks` Python
//! library, filters, retries with a stable `webhook-id`, 410, secret rotation, inbound
//! messages, and the SSRF guard in production.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use messaging_service::domain::MessageStatus;
use messaging_service::events::Dispatcher;
use serde_json::{Value, json};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::helpers::{TestApp, TestAppBuilder, permanent, sms_body};
use crate::wait::until;
use crate::webhooks::{PUBLIC, TOKEN, form};

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    id: String,
    timestamp: String,
    signature: String,
    body: String,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("event bodies are JSON")
    }
}

#[derive(Default)]
struct ReceiverState {
    got: Mutex<Vec<Received>>,
    /// Status codes to answer next, per path (then 200).
    script: Mutex<HashMap<String, VecDeque<u16>>>,
    /// How long each answer takes, in milliseconds.
    delay_ms: std::sync::atomic::AtomicU64,
    /// Requests being answered (a request is recorded at the end of its delay).
    in_flight: std::sync::atomic::AtomicUsize,
}

/// Counts a request in `in_flight` until its handler ends (or is dropped).
struct InFlight(Arc<ReceiverState>);

impl InFlight {
    fn new(state: &Arc<ReceiverState>) -> Self {
        state
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A local HTTP receiver that records every request.
struct Receiver {
    base: String,
    state: Arc<ReceiverState>,
}

impl Receiver {
    async fn start() -> Self {
        let state = Arc::new(ReceiverState::default());
        let app = axum::Router::new()
            .fallback(record)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, state }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn answer(&self, path: &str, codes: &[u16]) {
        self.state
            .script
            .lock()
            .unwrap()
            .entry(path.to_owned())
            .or_default()
            .extend(codes);
    }

    fn at(&self, path: &str) -> Vec<Received> {
        let got = self.state.got.lock().unwrap();
        got.iter().filter(|r| r.path == path).cloned().collect()
    }

    async fn wait_for(&self, path: &str, n: usize, what: &str) -> Vec<Received> {
        until(what, Duration::from_secs(20), async || {
            let got = self.at(path);
            (got.len() >= n).then_some(got)
        })
        .await
    }
}

async fn record(
    State(state): State<Arc<ReceiverState>>,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let _in_flight = InFlight::new(&state);
    let delay = state.delay_ms.load(std::sync::atomic::Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let path = uri.path().to_owned();
    state.got.lock().unwrap().push(Received {
        path: path.clone(),
        id: h("webhook-id"),
        timestamp: h("webhook-timestamp"),
        signature: h("webhook-signature"),
        body,
    });
    let code = state
        .script
        .lock()
        .unwrap()
        .get_mut(&path)
        .and_then(VecDeque::pop_front)
        .unwrap_or(200);
    StatusCode::from_u16(code).unwrap_or(StatusCode::OK)
}

/// A service with short event timings and the Twilio webhook configured, and its event
/// dispatcher running (as the worker process runs it).
struct EventsApp {
    app: TestApp,
    _dispatcher: DropGuard,
}

impl std::ops::Deref for EventsApp {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.app
    }
}

fn events_builder() -> TestAppBuilder {
    TestApp::builder()
        .env("TWILIO_AUTH_TOKEN", TOKEN)
        .env("PUBLIC_BASE_URL", PUBLIC)
        .env("EVENTS_RETRY_SCHEDULE", "0.2,0.2")
        .env("EVENTS_POLL_INTERVAL", "0.02")
        .env("EVENTS_TIMEOUT", "5")
}

async fn start(builder: TestAppBuilder) -> EventsApp {
    let app = builder.spawn().await;
    let shutdown = CancellationToken::new();
    Dispatcher::new(app.components.store.clone(), &app.settings.events)
        .expect("dispatcher")
        .spawn(shutdown.clone());
    EventsApp {
        app,
        _dispatcher: shutdown.drop_guard(),
    }
}

impl TestApp {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.client.request(method, self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn create_endpoint(&self, body: Value) -> Value {
        let (status, created) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/webhook-endpoints",
                Some(body),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        created
    }

    /// Sends an sms and lets the worker deliver it (status `sent`).
    async fn sent_sms(&self) -> (String, String) {
        let id = self.send(&sms_body()).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let sent = self.drain_until(&id, MessageStatus::Sent).await;
        (id, sent["provider_message_id"].as_str().unwrap().to_owned())
    }
}

/// A Python with the official `standardwebhooks` library, made once per target directory.
fn verifier_python() -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("standardwebhooks-venv");
    let python = venv.join("bin/python");
    let ready = |p: &Path| {
        Command::new(p)
            .args(["-c", "import standardwebhooks"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ready(&python) {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 is needed to verify signatures")
            .success();
        assert!(ok, "could not create a virtualenv at {venv:?}");
        let ok = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "standardwebhooks"])
            .status()
            .expect("pip")
            .success();
        assert!(ok, "could not install standardwebhooks from PyPI");
    }
    python
}

const VERIFY: &str = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
secret, requests = sys.argv[1], json.load(sys.stdin)
wh = Webhook(secret)
for r in requests:
    headers = {"webhook-id": r["id"], "webhook-timestamp": r["timestamp"], "webhook-signature": r["signature"]}
    payload = wh.verify(r["body"], headers)
    assert payload == json.loads(r["body"]), "verified payload differs"
print(len(requests))
"#;

/// Verifies every request with the official library and `secret`; panics otherwise.
fn verify_with_library(secret: &str, requests: &[Received]) {
    let input = Value::from(
        requests
            .iter()
            .map(|r| {
                json!({"id": r.id, "timestamp": r.timestamp, "signature": r.signature, "body": r.body})
            })
            .collect::<Vec<_>>(),
    )
    .to_string();
    let mut child = Command::new(verifier_python())
        .args(["-c", VERIFY, secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the verifier");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("verifier output");
    assert!(
        out.status.success(),
        "standardwebhooks refused a signature: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        requests.len().to_string()
    );
}

#[tokio::test]
async fn endpoints_can_be_created_read_edited_rotated_and_deleted() {
    let app = start(events_builder()).await;
    let created = app
        .create_endpoint(json!({"url": "https://app.example.com/hooks", "events": ["message.failed"], "description": "ops"}))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(created["events"], json!(["message.failed"]));
    assert_eq!(created["enabled"], true);
    assert_eq!(created["description"], "ops");

    let (status, list) = app
        .call(reqwest::Method::GET, "/api/v1/webhook-endpoints", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["endpoints"].as_array().unwrap().len(), 1);
    assert!(list["endpoints"][0].get("secret").is_none(), "{list}");

    let path = format!("/api/v1/webhook-endpoints/{id}");
    let (status, one) = app.call(reqwest::Method::GET, &path, None).await;
    assert_eq!(status, 200);
    assert!(one.get("secret").is_none());

    let (status, patched) = app
        .call(
            reqwest::Method::PATCH,
            &path,
            Some(json!({"events": null, "enabled": false, "description": "all"})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["events"], Value::Null);
    assert_eq!(patched["enabled"], false);
    assert_eq!(patched["description"], "all");

    let (status, rotated) = app
        .call(
            reqwest::Method::POST,
            &format!("{path}/rotate-secret"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert!(rotated["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_ne!(rotated["secret"], created["secret"]);

    let (status, attempts) = app
        .call(reqwest::Method::GET, &format!("{path}/attempts"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(attempts["attempts"], json!([]));

    let (status, _) = app.call(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 204);
    let (status, body) = app.call(reqwest::Method::GET, &path, None).await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = app
        .call(reqwest::Method::POST, &format!("{path}/test"), None)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn bad_endpoint_urls_and_unknown_event_types_are_422_naming_the_field() {
    let app = start(events_builder()).await;
    for (body, field) in [
        (json!({}), "url"),
        (json!({"url": "ftp://example.com/x"}), "url"),
        (json!({"url": "not a url"}), "url"),
        (
            json!({"url": "https://a.example.com", "events": ["message.exploded"]}),
            "events",
        ),
        (
            json!({"url": "https://a.example.com", "events": []}),
            "events",
        ),
    ] {
        let (status, err) = app
            .call(
                reqwest::Method::POST,
                "/api/v1/webhook-endpoints",
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, 422, "{body} → {err}");
        assert_eq!(err["error"], "validation_error");
        assert_eq!(err["details"]["field"], field, "{body} → {err}");
    }
}

#[tokio::test]
async fn twenty_sends_reach_the_receiver_signed_as_standard_webhooks_then_delivered() {
    let app = start(events_builder()).await;
    let receiver = Receiver::start().await;
    let endpoint = app
        .create_endpoint(json!({"url": receiver.url("/hooks")}))
        .await;
    let secret = endpoint["secret"].as_str().unwrap();

    let mut sent = Vec::new();
    for _ in 0..20 {
        sent.push(app.sent_sms().await);
    }
    let got = receiver
        .wait_for("/hooks", 20, "20 message.sent events")
        .await;
    assert_eq!(got.len(), 20);
    let mut ids: Vec<String> = got
        .iter()
        .map(|r| {
            let body = r.json();
            assert_eq!(body["type"], "message.sent");
            assert_eq!(body["data"]["status"], "sent");
            assert!(r.id.starts_with("evt_"));
            body["data"]["id"].as_str().unwrap().to_owned()
        })
        .collect();
    ids.sort();
    let mut expected: Vec<String> = sent.iter().map(|(id, _)| id.clone()).collect();
    expected.sort();
    assert_eq!(ids, expected);
    // The body's data is the message as the API returns it.
    let first = got[0].json();
    let id = first["data"]["id"].as_str().unwrap();
    let mut message = app.message(id).await;
    message["status"] = json!("sent");
    for key in [
        "to",
        "from",
        "body",
        "conversation_id",
        "provider_message_id",
        "created_at",
    ] {
        assert_eq!(first["data"][key], message[key], "{key}");
    }

    let (id, sid) = &sent[0];
    let resp = app
        .twilio(&form(&[
            ("MessageSid", sid),
            ("MessageStatus", "delivered"),
        ]))
        .await;
    assert_eq!(resp.status(), 200);
    let got = receiver.wait_for("/hooks", 21, "message.delivered").await;
    let delivered = got.last().unwrap().json();
    assert_eq!(delivered["type"], "message.delivered");
    assert_eq!(delivered["data"]["id"], id.as_str());

    verify_with_library(secret, &got);
}

#[tokio::test]
async fn an_endpoint_filtered_to_failures_receives_only_failures() {
    let app = start(events_builder()).await;
    let receiver = Receiver::start().await;
    app.create_endpoint(json!({"url": receiver.url("/failures"), "events": ["message.failed"]}))
        .await;
    app.create_endpoint(json!({"url": receiver.url("/all")}))
        .await;

    app.sent_sms().await;
    app.provider.fail_next([permanent("21211")]);
    let id = app.send(&sms_body()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.drain_until(&id, MessageStatus::Failed).await;

    let all = receiver.wait_for("/all", 2, "both events at /all").await;
    let failures = receiver.wait_for("/failures", 1, "the failure").await;
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].json()["type"], "message.failed");
    assert_eq!(failures[0].json()["data"]["id"], id.as_str());
    let mut types: Vec<String> = all
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_owned())
        .collect();
    types.sort();
    assert_eq!(types, ["message.failed", "message.sent"]);
}

#[tokio::test]
async fn a_failed_attempt_is_retried_with_the_same_webhook_id() {
    let app = start(events_builder()).await;
    let receiver = Receiver::start().await;
    receiver.answer("/flaky", &[500]);
    let endpoint = app
        .create_endpoint(json!({"url": receiver.url("/flaky")}))
        .await;
    app.sent_sms().await;
    let got = receiver.wait_for("/flaky", 2, "the retry").await;
    assert_eq!(got[0].id, got[1].id, "a retry carries the same webhook-id");
    assert_eq!(got[0].body, got[1].body);
    verify_with_library(endpoint["secret"].as_str().unwrap(), &got);

    let path = format!(
        "/api/v1/webhook-endpoints/{}/attempts",
        endpoint["id"].as_str().unwrap()
    );
    let attempts = until(
        "both attempts recorded",
        Duration::from_secs(10),
        async || {
            let (_, body) = app.call(reqwest::Method::GET, &path, None).await;
            (body["attempts"].as_array().map_or(0, Vec::len) >= 2).then_some(body)
        },
    )
    .await;
    let list = attempts["attempts"].as_array().unwrap();
    // Newest first.
    assert_eq!(list[0]["attempt"], 2);
    assert_eq!(list[0]["status_code"], 200);
    assert_eq!(list[1]["attempt"], 1);
    assert_eq!(list[1]["status_code"], 500);
    assert!(list[1]["next_attempt_at"].is_string());
    assert_eq!(list[1]["event_type"], "message.sent");
}

#[tokio::test]
async fn a_410_disables_the_endpoint() {
    let app = start(events_builder()).await;
    let receiver = Receiver::start().await;
    receiver.answer("/gone", &[410]);
    let endpoint = app
        .create_endpoint(json!({"url": receiver.url("/gone")}))
        .await;
    let path = format!(
        "/api/v1/webhook-endpoints/{}",
        endpoint["id"].as_str().unwrap()
    );
    let (status, _) = app
        .call(reqwest::Method::POST, &format!("{path}/test"), None)
        .await;
    assert_eq!(status, 202);
    let disabled = until(
        "the endpoint disabled",
        Duration::from_secs(10),
        async || {
            let (_, e) = app.call(reqwest::Method::GET, &path, None).await;
            (e["enabled"] == false).then_some(e)
        },
    )
    .await;
    assert!(
        disabled["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("410")
    );
    assert_eq!(receiver.at("/gone").len(), 1);
    assert_eq!(receiver.at("/gone")[0].json()["type"], "test.ping");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("events_delivered_total{outcome=\"failed\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("event_delivery_duration_seconds"));
}

#[tokio::test]
async fn after_a_rotation_both_secrets_verify_during_the_overlap() {
    let app = start(events_builder()).await;
    let receiver = Receiver::start().await;
    let endpoint = app
        .create_endpoint(json!({"url": receiver.url("/rotating")}))
        .await;
    let old = endpoint["secret"].as_str().unwrap().to_owned();
    let path = format!(
        "/api/v1/webhook-endpoints/{}",
        endpoint["id"].as_str().unwrap()
    );
    let (_, rotated) = app
        .call(
            reqwest::Method::POST,
            &format!("{path}/rotate-secret"),
            None,
        )
        .await;
    let new = rotated["secret"].as_str().unwrap().to_owned();
    app.call(reqwest::Method::POST, &format!("{path}/test"), None)
        .await;
    let got = receiver.wait_for("/rotating", 1, "the ping").await;
    assert_eq!(
        got[0].signature.split(' ').count(),
        2,
        "{}",
        got[0].signature
    );
    verify_with_library(&old, &got);
    verify_with_library(&new, &got);
}

#[tokio::test]
async fn an_inbound_twilio_sms_is_a_message_received_event() {
    let app = start(events_builder()).await;
    let receiver = Receiver::start().await;
    let endpoint = app
        .create_endpoint(json!({"url": receiver.url("/inbound"), "events": ["message.received"]}))
        .await;
    let resp = app
        .twilio(&form(&[
            ("MessageSid", "SMinbound00000000000000000000001"),
            ("From", "+15559876543"),
            ("To", "+15551234567"),
            ("Body", "hello there"),
        ]))
        .await;
    assert_eq!(resp.status(), 200);
    let got = receiver.wait_for("/inbound", 1, "message.received").await;
    let body = got[0].json();
    assert_eq!(body["type"], "message.received");
    assert_eq!(body["data"]["direction"], "inbound");
    assert_eq!(body["data"]["body"], "hello there");
    verify_with_library(endpoint["secret"].as_str().unwrap(), &got);

    // The original webhook API's inbound messages too; a replay is not a second event.
    for _ in 0..2 {
        let resp = app
            .client
            .post(app.url("/api/webhooks/email"))
            .json(
                &json!({"from": "contact@gmail.com", "to": "user@usehatchapp.com",
                          "xillio_id": "message-3", "body": "<p>hi</p>",
                          "timestamp": "2024-11-01T14:00:00Z"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let got = receiver
        .wait_for("/inbound", 2, "the email's message.received")
        .await;
    assert_eq!(got[1].json()["data"]["type"], "email");
    let outbox = app.db_count("select count(*) from events", &[]).await;
    assert_eq!(outbox, 2);
}

#[tokio::test]
async fn production_refuses_an_endpoint_on_a_loopback_address() {
    let app = start(
        events_builder()
            .env("ENVIRONMENT", "production")
            .env("SECRET_KEY", "a-test-secret-that-is-not-the-default")
            .env("ALLOWED_HOSTS", "127.0.0.1")
            .env("REQUIRE_API_KEYS", "true"),
    )
    .await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_messaging-service"))
        .args(["keys", "create", "--name", "events"])
        .env("DATABASE_URL", app.database_url().expose())
        .env("ENVIRONMENT", "development")
        .env("LOG_LEVEL", "error")
        .output()
        .expect("run messaging-service");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let key = stdout
        .split_whitespace()
        .find(|w| w.starts_with(messaging_service::domain::KEY_PREFIX))
        .unwrap_or_else(|| panic!("no key in {stdout}"))
        .to_owned();
    let resp = app
        .client
        .post(app.url("/api/v1/webhook-endpoints"))
        .bearer_auth(&key)
        .json(&json!({"url": "http://127.0.0.1:9/hooks"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["details"]["field"], "url");
}

#[tokio::test]
async fn a_status_callback_receives_only_its_own_messages_events() {
    let app = start(events_builder()).await;
    let receiver = Receiver::start().await;
    let mut body = sms_body();
    body["status_callback"] = json!(receiver.url("/cb"));
    let mine = app.send(&body).await;
    assert_eq!(mine["status_callback"], receiver.url("/cb"));
    let id = mine["id"].as_str().unwrap().to_owned();
    app.drain_until(&id, MessageStatus::Sent).await;
    // Another message, without a callback (and no endpoint anywhere).
    app.sent_sms().await;
    // The original API takes it too.
    let resp = app
        .client
        .post(app.url("/api/messages/sms"))
        .json(
            &json!({"from": "+15551234567", "to": "+15559876543", "type": "sms",
                      "body": "legacy", "status_callback": receiver.url("/legacy-cb")}),
        )
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());

    let got = receiver.wait_for("/cb", 1, "the callback").await;
    let event = got[0].json();
    assert_eq!(event["type"], "message.sent");
    assert_eq!(event["data"]["id"], id.as_str());
    verify_with_library(crate::helpers::EVENTS_TEST_SECRET, &got);
    let stored = app
        .db_count(
            "select count(*) from messages where status_callback is not null",
            &[],
        )
        .await;
    assert_eq!(stored, 2);

    let mut bad = sms_body();
    bad["status_callback"] = json!("mailto:ops@example.com");
    let resp = app.post_send(&bad).await;
    assert_eq!(resp.status(), 422);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["details"]["field"], "status_callback");
    // Only the one callback call: the other message's events went nowhere.
    assert_eq!(receiver.at("/cb").len(), 1);
}

#[tokio::test]
async fn a_worker_killed_with_200_undelivered_events_delivers_them_all_after_restart() {
    let test = "a_worker_killed_with_200_undelivered_events_delivers_them_all_after_restart";
    if !crate::helpers::requires_postgres_and_redis(test) {
        return;
    }
    // No dispatcher in the test: the worker process delivers.
    let app = events_builder().spawn().await;
    let receiver = Receiver::start().await;
    receiver
        .state
        .delay_ms
        .store(50, std::sync::atomic::Ordering::Relaxed);
    app.create_endpoint(json!({"url": receiver.url("/many")}))
        .await;
    for _ in 0..200 {
        app.send(&sms_body()).await;
    }
    until("200 messages sent", Duration::from_secs(60), async || {
        app.worker.process_once().await.expect("worker step");
        let (_, list) = app.get_json("/api/v1/messages?status=sent&limit=1").await;
        (list["total"] == 200).then_some(())
    })
    .await;
    let outbox = app.db_count("select count(*) from events", &[]).await;
    assert_eq!(outbox, 200);

    let env = [
        ("EVENTS_POLL_INTERVAL", "0.02"),
        // Long enough that a live worker's own claims never run out on a loaded machine
        // (a claim held past its lease goes again, by design); short enough for the test.
        ("EVENTS_LEASE", "8"),
        ("EVENTS_ENDPOINT_CONCURRENCY", "4"),
        ("WORKER_METRICS_PORT", "0"),
    ];
    let mut first = crate::process::binary(&app, "worker", &env)
        .spawn()
        .expect("start the worker");
    receiver.wait_for("/many", 10, "the first deliveries").await;
    first.kill().expect("kill -9 the worker");
    let _ = first.wait();
    let before_restart = receiver.at("/many").len();
    assert!(
        before_restart < 200,
        "the worker finished before it was killed"
    );

    let _second = crate::helpers::KillOnDrop(
        crate::process::binary(&app, "worker", &env)
            .spawn()
            .expect("restart the worker"),
    );
    let delivered = until(
        "all 200 events delivered",
        Duration::from_secs(90),
        async || {
            let n = app
                .db_count(
                    "select count(*) from event_deliveries where status = 'delivered'",
                    &[],
                )
                .await;
            (n == 200).then_some(n)
        },
    )
    .await;
    assert_eq!(delivered, 200);
    let got = receiver.at("/many");
    let mut ids: Vec<&str> = got.iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 200, "every event arrived");
    // One recorded successful attempt per event: nothing recorded as delivered went again.
    let successes = app
        .db_count(
            "select count(distinct event_id) from event_attempts where status_code = 200",
            &[],
        )
        .await;
    let attempts = app
        .db_count(
            "select count(*) from event_attempts where status_code = 200",
            &[],
        )
        .await;
    assert_eq!((successes, attempts), (200, 200));
    // Only an event whose answer the killed worker had not recorded yet arrives twice: its
    // first arrival was before the restart.
    for (i, r) in got.iter().enumerate() {
        if got[..i].iter().any(|o| o.id == r.id) {
            assert!(
                got[..before_restart].iter().any(|o| o.id == r.id),
                "{} arrived twice after the restart",
                r.id
            );
        }
    }
    let repeats = got.len() - 200;
    assert!(
        repeats < before_restart,
        "{repeats} repeats, but only {before_restart} requests before the kill"
    );
}

/// Runs `messaging-service events …` against the test's database.
fn events_cli(app: &TestApp, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_messaging-service"))
        .arg("events")
        .args(args)
        .env("DATABASE_URL", app.database_url().expose())
        .env("ENVIRONMENT", "development")
        .env("LOG_LEVEL", "error")
        .output()
        .expect("run messaging-service events");
    assert!(
        out.status.success(),
        "events {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn an_exhausted_chain_fails_is_listed_and_redriven_and_a_failing_endpoint_is_disabled() {
    let app = start(events_builder().env("EVENTS_DISABLE_AFTER", "3600")).await;
    let receiver = Receiver::start().await;
    // The schedule is two retries: three 500s fail the chain.
    receiver.answer("/down", &[500, 500, 500]);
    let endpoint = app
        .create_endpoint(json!({"url": receiver.url("/down")}))
        .await;
    let path = format!(
        "/api/v1/webhook-endpoints/{}",
        endpoint["id"].as_str().unwrap()
    );
    app.call(reqwest::Method::POST, &format!("{path}/test"), None)
        .await;
    receiver.wait_for("/down", 3, "three attempts").await;
    let listed = until(
        "the failed chain listed",
        Duration::from_secs(10),
        async || {
            let out = events_cli(&app, &["list"]);
            out.contains("1 failed delivery chain(s) shown")
                .then_some(out)
        },
    )
    .await;
    assert!(listed.contains("test.ping"), "{listed}");
    assert!(
        receiver
            .at("/down")
            .iter()
            .all(|r| r.id == receiver.at("/down")[0].id)
    );

    let out = events_cli(&app, &["redrive", "--all"]);
    assert!(out.contains("1 delivery chain(s) redriven"), "{out}");
    receiver.wait_for("/down", 4, "the redriven attempt").await;
    until("the chain delivered", Duration::from_secs(10), async || {
        events_cli(&app, &["list"])
            .contains("0 failed delivery chain(s) shown")
            .then_some(())
    })
    .await;
    let (_, e) = app.call(reqwest::Method::GET, &path, None).await;
    assert_eq!(e["enabled"], true, "a success ends the failing streak");

    // An endpoint that keeps failing for longer than EVENTS_DISABLE_AFTER is disabled.
    let short = start(events_builder().env("EVENTS_DISABLE_AFTER", "0.3")).await;
    receiver.answer("/dead", &[500; 10]);
    let dead = short
        .create_endpoint(json!({"url": receiver.url("/dead")}))
        .await;
    let path = format!("/api/v1/webhook-endpoints/{}", dead["id"].as_str().unwrap());
    for _ in 0..3 {
        short
            .call(reqwest::Method::POST, &format!("{path}/test"), None)
            .await;
    }
    let disabled = until(
        "the failing endpoint disabled",
        Duration::from_secs(15),
        async || {
            let (_, e) = short.call(reqwest::Method::GET, &path, None).await;
            (e["enabled"] == false).then_some(e)
        },
    )
    .await;
    assert!(
        disabled["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("failing without pause"),
        "{disabled}"
    );
}

#[tokio::test]
async fn the_single_process_killed_with_undelivered_events_delivers_them_all_after_restart() {
    let test = "the_single_process_killed_with_undelivered_events_delivers_them_all_after_restart";
    if crate::helpers::backend() == crate::helpers::Backend::Embedded {
        crate::helpers::skip(
            test,
            "runs in the default pass only: it starts its own embedded process",
        );
        return;
    }
    messaging_service::provider::install_crypto_provider();
    let scratch = crate::scratch::ScratchDir::new("messaging-events");
    let dir = scratch.path().to_path_buf();
    let port = crate::process::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let receiver = Receiver::start().await;
    receiver
        .state
        .delay_ms
        .store(50, std::sync::atomic::Ordering::Relaxed);
    let start = |log: &str| {
        let out = std::fs::File::create(dir.join(log)).unwrap();
        crate::helpers::KillOnDrop(
            Command::new(env!("CARGO_BIN_EXE_messaging-service"))
                .current_dir(&dir)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("HOST", "127.0.0.1")
                .env("PORT", &port)
                .env("LOG_LEVEL", "warn")
                .env("RATE_LIMIT_ENABLED", "false")
                .env("MOCK_PROVIDER_LATENCY_MS", "0")
                .env("EVENTS_POLL_INTERVAL", "0.02")
                .env("EVENTS_LEASE", "8")
                .env("EVENTS_ENDPOINT_CONCURRENCY", "4")
                .env("QUEUE_VISIBILITY_TIMEOUT", "2")
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .expect("start the single process"),
        )
    };
    let mut first = start("first.log");
    crate::process::wait_until_answers(&format!("{base}/health")).await;
    let client = reqwest::Client::new();
    let endpoint: Value = client
        .post(format!("{base}/api/v1/webhook-endpoints"))
        .json(&json!({"url": receiver.url("/single")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for _ in 0..200 {
        let resp = client
            .post(format!("{base}/api/v1/messages/send"))
            .json(&sms_body())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
    }
    receiver
        .wait_for("/single", 10, "the first deliveries")
        .await;
    first.0.kill().expect("kill -9");
    let _ = first.0.wait();
    // Requests the killed process made are recorded at the end of the receiver's delay
    // (one may still be in the receiver's socket): count them as delivered before the
    // restart, once none is being answered and no new one came between two looks.
    let mut seen = usize::MAX;
    until(
        "the killed process's requests to end",
        Duration::from_secs(5),
        async || {
            let idle = receiver
                .state
                .in_flight
                .load(std::sync::atomic::Ordering::SeqCst)
                == 0;
            let now = receiver.at("/single").len();
            let settled = idle && now == seen;
            seen = now;
            settled.then_some(())
        },
    )
    .await;
    let before_restart = receiver.at("/single").len();
    assert!(
        before_restart < 200,
        "everything was delivered before the kill"
    );

    let _second = start("second.log");
    crate::process::wait_until_answers(&format!("{base}/health")).await;
    let got = receiver
        .wait_for("/single", 200, "200 events after the restart")
        .await;
    let attempts = format!(
        "{base}/api/v1/webhook-endpoints/{}/attempts?limit=1",
        endpoint["id"].as_str().unwrap()
    );
    let recorded = until(
        "200 recorded attempts",
        Duration::from_secs(30),
        async || {
            let body: Value = client.get(&attempts).send().await.ok()?.json().await.ok()?;
            (body["total"].as_i64()? >= 200).then_some(body)
        },
    )
    .await;
    let got_now = receiver.at("/single");
    let mut ids: Vec<&str> = got_now.iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        200,
        "every event arrived ({} requests)",
        got.len()
    );
    // Every attempt answered 200: one recorded attempt per event.
    assert_eq!(recorded["total"], 200);
    for (i, r) in got_now.iter().enumerate() {
        if got_now[..i].iter().any(|o| o.id == r.id) {
            assert!(
                got_now[..before_restart].iter().any(|o| o.id == r.id),
                "{} arrived twice after the restart",
                r.id
            );
        }
    }
}

/// Deleting an endpoint while the worker is delivering to it and recording the attempts:
/// 204 every time (the delete locks what a worker locks, in the same order), and the
/// endpoint and its attempts are gone.
#[tokio::test]
async fn endpoints_deleted_while_their_events_are_retried_are_gone() {
    let app = start(events_builder()).await;
    let receiver = Receiver::start().await;
    for round in 0..3 {
        let path = format!("/failing{round}");
        receiver.answer(&path, &[500; 20]);
        let endpoint = app
            .create_endpoint(json!({"url": receiver.url(&path)}))
            .await;
        app.sent_sms().await;
        receiver.wait_for(&path, 2, "a retry").await;
        let id = endpoint["id"].as_str().unwrap();
        let endpoint_path = format!("/api/v1/webhook-endpoints/{id}");
        let (status, body) = app
            .call(reqwest::Method::DELETE, &endpoint_path, None)
            .await;
        assert_eq!(status, 204, "round {round}: {body}");
        let (status, _) = app
            .call(
                reqwest::Method::GET,
                &format!("{endpoint_path}/attempts"),
                None,
            )
            .await;
        assert_eq!(status, 404, "round {round}");
    }
}

/// The endpoint bodies refuse unknown fields (the document says `additionalProperties:
/// false`): a 422, not a silently ignored typo.
#[tokio::test]
async fn unknown_fields_on_endpoint_bodies_are_422() {
    let app = start(events_builder()).await;
    let (status, body) = app
        .call(
            reqwest::Method::POST,
            "/api/v1/webhook-endpoints",
            Some(json!({"url": "https://app.example.com/hooks", "event": ["message.sent"]})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "validation_error", "{body}");
    let created = app
        .create_endpoint(json!({"url": "https://app.example.com/hooks"}))
        .await;
    let path = format!(
        "/api/v1/webhook-endpoints/{}",
        created["id"].as_str().unwrap()
    );
    let (status, body) = app
        .call(
            reqwest::Method::PATCH,
            &path,
            Some(json!({"enable": false})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
}
