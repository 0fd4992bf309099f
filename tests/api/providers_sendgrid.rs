//! The SendGrid adapter on the wire, against a local fake server: the exact JSON (content
//! types, custom args, fetched and base64-encoded attachments), and the error shapes.

use base64::Engine;
use messaging_service::domain::MessageStatus;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use wiremock::matchers::{bearer_token, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::TestApp;

const KEY: &str = "SG.test-key";

pub async fn sendgrid_app(base: &str, extra: &[(&str, &str)]) -> TestApp {
    let mut b = TestApp::builder()
        .real_providers()
        .env("EMAIL_PROVIDERS", "sendgrid")
        .env("SENDGRID_API_KEY", KEY)
        .env("SENDGRID_API_BASE", base);
    for (k, v) in extra {
        b = b.env(k, v);
    }
    b.spawn().await
}

fn accepted(id: &str) -> ResponseTemplate {
    ResponseTemplate::new(202).insert_header("X-Message-Id", id)
}

fn email() -> Value {
    json!({"from": "news@example.com", "to": "ann@example.org", "subject": "Hi", "body": "Hello"})
}

async fn send(app: &TestApp, body: &Value) -> String {
    app.send(body).await["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_html_email_with_an_attachment_goes_to_sendgrid_as_the_exact_json() {
    let server = MockServer::start().await;
    let pdf = b"%PDF-1.4 not really a pdf \x00\x01\x02".to_vec();
    Mock::given(method("GET"))
        .and(path("/files/report.pdf"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(pdf.clone(), "application/pdf"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .and(bearer_token(KEY))
        .respond_with(accepted("4HrmGlvWQGmDBcUZ6mJp1A"))
        .expect(1)
        .mount(&server)
        .await;
    let app = sendgrid_app(&server.uri(), &[]).await;
    let attachment = format!("{}/files/report.pdf", server.uri());
    let id = send(
        &app,
        &json!({
            "from": "news@example.com", "to": "ann@example.org", "subject": "Your report",
            "body": "<p>Hello <strong>Ann</strong></p>", "attachments": [attachment]
        }),
    )
    .await;
    let sent = app.drain_until(&id, MessageStatus::Sent).await;
    assert_eq!(sent["provider"], "sendgrid");
    assert_eq!(sent["provider_message_id"], "4HrmGlvWQGmDBcUZ6mJp1A");

    let requests = server.received_requests().await.unwrap();
    let mail: Vec<_> = requests
        .iter()
        .filter(|r| r.url.path() == "/v3/mail/send")
        .collect();
    assert_eq!(mail.len(), 1);
    assert_eq!(
        mail[0].headers["authorization"],
        format!("Bearer {KEY}").as_str()
    );
    assert_eq!(mail[0].headers["content-type"], "application/json");
    let body: Value = serde_json::from_slice(&mail[0].body).unwrap();
    assert_eq!(
        body,
        json!({
            "personalizations": [{
                "to": [{"email": "ann@example.org"}],
                "custom_args": {"message_id": id},
            }],
            "from": {"email": "news@example.com"},
            "subject": "Your report",
            "content": [
                {"type": "text/plain", "value": "Hello Ann"},
                {"type": "text/html", "value": "<p>Hello <strong>Ann</strong></p>"},
            ],
            "custom_args": {"message_id": id},
            "attachments": [{
                "content": base64::engine::general_purpose::STANDARD.encode(&pdf),
                "filename": "report.pdf",
                "type": "application/pdf",
                "disposition": "attachment",
            }],
        })
    );
}

#[tokio::test]
async fn a_plain_email_has_only_a_text_part() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(accepted("abc"))
        .mount(&server)
        .await;
    let app = sendgrid_app(&server.uri(), &[]).await;
    let id = send(&app, &email()).await;
    app.drain_until(&id, MessageStatus::Sent).await;
    let body: Value =
        serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(
        body["content"],
        json!([{"type": "text/plain", "value": "Hello"}])
    );
    assert!(body.get("attachments").is_none());
}

#[tokio::test]
async fn a_sendgrid_400_fails_the_message_with_the_errors_it_named() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"errors": [
            {"message": "The from address does not match a verified Sender Identity.", "field": "from", "help": null}
        ]})))
        .mount(&server)
        .await;
    let app = sendgrid_app(&server.uri(), &[]).await;
    let id = send(&app, &email()).await;
    let failed = app.drain_until(&id, MessageStatus::Failed).await;
    assert_eq!(failed["error"]["code"], "400");
    assert_eq!(
        failed["error"]["message"],
        "sendgrid: from: The from address does not match a verified Sender Identity."
    );
}

#[tokio::test]
async fn a_sendgrid_401_is_permanent() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"errors": [{"message": "The provided authorization grant is invalid, expired, or revoked", "field": null, "help": null}]}),
        ))
        .mount(&server)
        .await;
    let app = sendgrid_app(&server.uri(), &[]).await;
    let id = send(&app, &email()).await;
    let failed = app.drain_until(&id, MessageStatus::Failed).await;
    assert_eq!(failed["error"]["code"], "401");
}

#[tokio::test]
async fn a_sendgrid_429_waits_until_its_rate_limit_resets() {
    let server = MockServer::start().await;
    let reset = OffsetDateTime::now_utc().unix_timestamp() + 40;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("X-RateLimit-Limit", "600")
                .insert_header("X-RateLimit-Remaining", "0")
                .insert_header("X-RateLimit-Reset", reset.to_string().as_str())
                .set_body_json(
                    json!({"errors": [{"message": "too many requests", "field": null}]}),
                ),
        )
        .mount(&server)
        .await;
    let app = sendgrid_app(&server.uri(), &[]).await;
    let id = send(&app, &email()).await;
    let retry = app.drain_until(&id, MessageStatus::Retry).await;
    assert_eq!(retry["error"]["code"], "429");
    let at = OffsetDateTime::parse(retry["next_attempt_at"].as_str().unwrap(), &Rfc3339).unwrap();
    let wait = (at - OffsetDateTime::now_utc()).as_seconds_f64();
    assert!(wait > 35.0 && wait <= 41.0, "next attempt in {wait}s");
}

#[tokio::test]
async fn a_sendgrid_500_is_retried_then_sent() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(accepted("later"))
        .mount(&server)
        .await;
    let app = sendgrid_app(&server.uri(), &[]).await;
    let id = send(&app, &email()).await;
    let sent = app.drain_until(&id, MessageStatus::Sent).await;
    assert_eq!(sent["retry_count"], 2);
    assert_eq!(sent["provider_message_id"], "later");
}

#[tokio::test]
async fn a_missing_attachment_fails_the_email_without_calling_sendgrid() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(accepted("never"))
        .expect(0)
        .mount(&server)
        .await;
    let app = sendgrid_app(&server.uri(), &[]).await;
    let mut body = email();
    body["attachments"] = json!([format!("{}/files/gone.pdf", server.uri())]);
    let id = send(&app, &body).await;
    let failed = app.drain_until(&id, MessageStatus::Failed).await;
    assert_eq!(failed["error"]["code"], "attachment_not_found");
}
