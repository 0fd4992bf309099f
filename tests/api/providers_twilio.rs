//! The Twilio adapter on the wire, against a local fake server: the exact request, and
//! each documented answer mapped to sent, retry or failed.

use std::time::Duration;

use base64::Engine;
use messaging_service::domain::MessageStatus;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use wiremock::matchers::{basic_auth, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{TestApp, sms_body};

pub const SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const TOKEN: &str = "twilio-test-token";
const MESSAGES_PATH: &str = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json";

pub async fn twilio_app(base: &str, extra: &[(&str, &str)]) -> TestApp {
    let mut b = TestApp::builder()
        .real_providers()
        .env("SMS_PROVIDERS", "twilio")
        .env("TWILIO_ACCOUNT_SID", SID)
        .env("TWILIO_AUTH_TOKEN", TOKEN)
        .env("TWILIO_API_BASE", base)
        .env("PUBLIC_BASE_URL", "https://messages.example.com")
        .env("PACING_ENABLED", "false");
    for (k, v) in extra {
        b = b.env(k, v);
    }
    b.spawn().await
}

fn created(sid: &str, segments: &str) -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({
        "sid": sid, "status": "queued", "num_segments": segments, "num_media": "0",
        "error_code": null, "error_message": null,
        "date_created": "Thu, 28 Nov 2026 10:00:00 +0000"
    }))
}

fn twilio_error(status: u16, code: u32, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "code": code, "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status
    }))
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

async fn send_sms(app: &TestApp) -> String {
    app.send(&sms_body()).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn seconds_from_now(at: &Value) -> f64 {
    let at = OffsetDateTime::parse(at.as_str().expect("a timestamp"), &Rfc3339).unwrap();
    (at - OffsetDateTime::now_utc()).as_seconds_f64()
}

#[tokio::test]
async fn an_mms_goes_to_twilio_as_the_exact_form_and_its_sid_and_segments_are_stored() {
    let server = MockServer::start().await;
    let sid = "MM0123456789abcdef0123456789abcdef";
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .and(basic_auth(SID, TOKEN))
        .respond_with(created(sid, "2"))
        .expect(1)
        .mount(&server)
        .await;
    let app = twilio_app(&server.uri(), &[]).await;
    let id = app
        .send(&json!({
            "from": "+15551234567", "to": "+15559876543", "type": "mms", "body": "Look at these",
            "attachments": ["https://cdn.example.com/a.png", "https://cdn.example.com/b.jpg"]
        }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sent = app.drain_until(&id, MessageStatus::Sent).await;
    assert_eq!(sent["provider"], "twilio");
    assert_eq!(sent["provider_message_id"], sid);
    assert_eq!(sent["num_segments"], 2);

    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let req = &requests[0];
    assert_eq!(req.method.as_str(), "POST");
    assert_eq!(req.url.path(), MESSAGES_PATH);
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}"));
    assert_eq!(
        req.headers["authorization"],
        format!("Basic {auth}").as_str()
    );
    assert_eq!(
        req.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    let expected: Vec<(String, String)> = [
        ("To", "+15559876543"),
        ("From", "+15551234567"),
        ("Body", "Look at these"),
        ("MediaUrl", "https://cdn.example.com/a.png"),
        ("MediaUrl", "https://cdn.example.com/b.jpg"),
        (
            "StatusCallback",
            "https://messages.example.com/api/v1/webhooks/twilio",
        ),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(form(&req.body), expected);
}

#[tokio::test]
async fn a_messaging_service_sid_replaces_from() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(created("SM0123456789abcdef0123456789abcdef", "1"))
        .mount(&server)
        .await;
    let app = twilio_app(
        &server.uri(),
        &[(
            "TWILIO_MESSAGING_SERVICE_SID",
            "MG0123456789abcdef0123456789abcdef",
        )],
    )
    .await;
    let id = send_sms(&app).await;
    app.drain_until(&id, MessageStatus::Sent).await;
    let fields = form(&server.received_requests().await.unwrap()[0].body);
    assert!(fields.contains(&(
        "MessagingServiceSid".into(),
        "MG0123456789abcdef0123456789abcdef".into()
    )));
    assert!(!fields.iter().any(|(k, _)| k == "From"), "{fields:?}");
}

#[tokio::test]
async fn a_twilio_400_fails_the_message_with_twilios_code_and_message() {
    for (code, text) in [
        (
            21211,
            "The 'To' number +15559876543 is not a valid phone number.",
        ),
        (21610, "Attempt to send to unsubscribed recipient"),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(twilio_error(400, code, text))
            .expect(1)
            .mount(&server)
            .await;
        let app = twilio_app(&server.uri(), &[]).await;
        let id = send_sms(&app).await;
        let failed = app.drain_until(&id, MessageStatus::Failed).await;
        assert_eq!(failed["error"]["code"], code.to_string());
        assert!(
            failed["error"]["message"].as_str().unwrap().contains(text),
            "{failed}"
        );
        assert_eq!(failed["retry_count"], 0);
        assert_eq!(app.dead_letters().await, vec![id]);
    }
}

#[tokio::test]
async fn a_twilio_429_is_retried_no_sooner_than_its_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            twilio_error(429, 20429, "Too Many Requests").insert_header("Retry-After", "30"),
        )
        .mount(&server)
        .await;
    let app = twilio_app(&server.uri(), &[]).await;
    let id = send_sms(&app).await;
    let retry = app.drain_until(&id, MessageStatus::Retry).await;
    assert_eq!(retry["error"]["code"], "20429");
    assert_eq!(retry["retry_count"], 1);
    let wait = seconds_from_now(&retry["next_attempt_at"]);
    assert!(wait > 25.0 && wait <= 30.5, "next attempt in {wait}s");
}

#[tokio::test]
async fn a_twilio_429_without_retry_after_backs_off_on_its_own_schedule() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(twilio_error(429, 20429, "Too Many Requests"))
        .mount(&server)
        .await;
    let app = twilio_app(&server.uri(), &[]).await;
    let id = send_sms(&app).await;
    let retry = app.drain_until(&id, MessageStatus::Retry).await;
    assert_eq!(retry["error"]["code"], "20429");
    let wait = seconds_from_now(&retry["next_attempt_at"]);
    assert!(wait < 1.0, "the test backoff is at most 50 ms, not {wait}s");
}

#[tokio::test]
async fn a_twilio_500_is_retried_then_sent() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(twilio_error(500, 20500, "Internal Server Error"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(created("SMffffffffffffffffffffffffffffffff", "1"))
        .mount(&server)
        .await;
    let app = twilio_app(&server.uri(), &[]).await;
    let id = send_sms(&app).await;
    let sent = app.drain_until(&id, MessageStatus::Sent).await;
    assert_eq!(sent["retry_count"], 1);
    assert_eq!(
        sent["provider_message_id"],
        "SMffffffffffffffffffffffffffffffff"
    );
    let retry_event = app
        .events(&id)
        .await
        .into_iter()
        .find(|e| e["to_status"] == "retry")
        .expect("a retry event");
    assert_eq!(retry_event["detail"]["error_code"], "20500");
}

#[tokio::test]
async fn a_twilio_that_does_not_answer_in_time_is_a_transient_timeout() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(created("SM0", "1").set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    let app = twilio_app(&server.uri(), &[("PROVIDER_TIMEOUT", "0.3")]).await;
    let id = send_sms(&app).await;
    let retry = app.drain_until(&id, MessageStatus::Retry).await;
    assert_eq!(retry["error"]["code"], "timeout");
}

#[tokio::test]
async fn a_refused_connection_to_twilio_is_transient() {
    // Bind and drop: nothing listens on that port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = twilio_app(&format!("http://127.0.0.1:{port}"), &[]).await;
    let id = send_sms(&app).await;
    let retry = app.drain_until(&id, MessageStatus::Retry).await;
    assert_eq!(retry["error"]["code"], "connection_error");
    assert!(
        !retry["error"]["message"].as_str().unwrap().contains(SID),
        "no account id in errors"
    );
}
