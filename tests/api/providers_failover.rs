//! Failover and circuit breakers, configured as an operator would: `EMAIL_PROVIDERS` lists
//! SendGrid first (played by a local fake server) and the mock second.

use std::time::{Duration, Instant};

use messaging_service::domain::MessageStatus;
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::TestApp;

async fn app(server: &MockServer, extra: &[(&str, &str)]) -> TestApp {
    let mut b = TestApp::builder()
        .real_providers()
        .env("EMAIL_PROVIDERS", "sendgrid,mock")
        .env("SENDGRID_API_KEY", "SG.key")
        .env("SENDGRID_API_BASE", &server.uri());
    for (k, v) in extra {
        b = b.env(k, v);
    }
    b.spawn().await
}

async fn send_email(app: &TestApp) -> serde_json::Value {
    let id = app
        .send(&json!({"from": "a@example.com", "to": "b@example.com", "subject": "s", "body": "x"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.drain_until(&id, MessageStatus::Sent).await
}

async fn calls(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

#[tokio::test]
async fn when_the_primary_answers_500_the_secondary_sends_and_is_named_on_the_message() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let app = app(&server, &[]).await;
    let sent = send_email(&app).await;
    assert_eq!(sent["provider"], "mock");
    assert_eq!(
        sent["retry_count"], 0,
        "failover happens within the attempt"
    );
    assert_eq!(calls(&server).await, 1);
}

#[tokio::test]
async fn a_permanent_refusal_does_not_fail_over() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"errors": [{"message": "bad", "field": "to"}]})),
        )
        .mount(&server)
        .await;
    let app = app(&server, &[]).await;
    let id = app
        .send(&json!({"from": "a@example.com", "to": "b@example.com", "body": "x"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = app.drain_until(&id, MessageStatus::Failed).await;
    assert_eq!(failed["error"]["code"], "400");
}

#[tokio::test]
async fn the_circuit_opens_after_consecutive_failures_and_closes_after_a_good_probe() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let app = app(
        &server,
        &[
            ("CIRCUIT_BREAKER_THRESHOLD", "2"),
            // Long enough for the next send to find the circuit open on a loaded machine,
            // short enough to wait out.
            ("CIRCUIT_BREAKER_COOLDOWN", "1"),
        ],
    )
    .await;
    // Two failures open SendGrid's circuit; each message still goes out through the mock.
    for _ in 0..2 {
        assert_eq!(send_email(&app).await["provider"], "mock");
    }
    assert_eq!(calls(&server).await, 2);
    // While open, SendGrid is not even called.
    assert_eq!(send_email(&app).await["provider"], "mock");
    assert_eq!(
        calls(&server).await,
        2,
        "an open circuit skips the provider"
    );

    // SendGrid recovers; after the cool-down one probe goes through and closes the circuit.
    server.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(202).insert_header("X-Message-Id", "back"))
        .mount(&server)
        .await;
    // Until the cool-down ends each message goes through the mock without calling SendGrid;
    // the first one after it is the probe.
    let deadline = Instant::now() + Duration::from_secs(15);
    let probe = loop {
        let sent = send_email(&app).await;
        if sent["provider"] != "mock" {
            break sent;
        }
        assert_eq!(
            calls(&server).await,
            0,
            "an open circuit skips the provider"
        );
        assert!(Instant::now() < deadline, "the circuit never half-opened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(probe["provider"], "sendgrid");
    assert_eq!(probe["provider_message_id"], "back");
    assert_eq!(
        send_email(&app).await["provider"],
        "sendgrid",
        "closed again"
    );
    assert_eq!(calls(&server).await, 2);
}

#[tokio::test]
async fn with_every_circuit_open_the_message_waits_for_the_cool_down() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let app = TestApp::builder()
        .real_providers()
        .env("EMAIL_PROVIDERS", "sendgrid")
        .env("SENDGRID_API_KEY", "SG.key")
        .env("SENDGRID_API_BASE", &server.uri())
        .env("CIRCUIT_BREAKER_THRESHOLD", "1")
        .env("CIRCUIT_BREAKER_COOLDOWN", "60")
        .spawn()
        .await;
    let body = json!({"from": "a@example.com", "to": "b@example.com", "body": "x"});
    let first = app.send(&body).await["id"].as_str().unwrap().to_owned();
    app.drain_until(&first, MessageStatus::Retry).await;
    let second = app.send(&body).await["id"].as_str().unwrap().to_owned();
    let waiting = app.drain_until(&second, MessageStatus::Retry).await;
    assert_eq!(waiting["error"]["code"], "circuit_open");
    assert_eq!(
        waiting["retry_count"], 0,
        "waiting for a circuit is not an attempt"
    );
    assert_eq!(
        calls(&server).await,
        1,
        "the open circuit kept SendGrid from being called"
    );
}

#[tokio::test]
async fn an_outage_longer_than_the_retry_budget_fails_nothing_once_the_provider_is_back() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let app = TestApp::builder()
        .real_providers()
        .env("EMAIL_PROVIDERS", "sendgrid")
        .env("SENDGRID_API_KEY", "SG.key")
        .env("SENDGRID_API_BASE", &server.uri())
        .env("CIRCUIT_BREAKER_THRESHOLD", "1")
        .env("CIRCUIT_BREAKER_COOLDOWN", "0.3")
        .env("QUEUE_MAX_RETRIES", "5")
        .env("QUEUE_RETRY_DELAY", "0.01")
        .spawn()
        .await;
    let body = json!({"from": "a@example.com", "to": "b@example.com", "body": "x"});
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(app.send(&body).await["id"].as_str().unwrap().to_owned());
    }
    // Many cool-downs pass while the provider is down; only the probes are attempts.
    let outage_until = Instant::now() + Duration::from_millis(1000);
    while Instant::now() < outage_until {
        app.worker.process_once().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let probes = calls(&server).await;
    server.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(202).insert_header("X-Message-Id", "back"))
        .mount(&server)
        .await;
    let mut attempts = 0;
    for id in &ids {
        let m = app.drain_until(id, MessageStatus::Sent).await;
        attempts += m["retry_count"].as_u64().unwrap() as usize;
    }
    assert_eq!(
        attempts, probes,
        "every failed call is one attempt, and nothing else is"
    );
    assert!(
        probes <= 5 + 5,
        "the first batch, then only a probe per cool-down reached the provider: {probes}"
    );
}
