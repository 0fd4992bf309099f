//! The operator console at `/console`: served from the binary, with a strict
//! Content-Security-Policy, and its scripts and styles as their own files.

use messaging_service::app::Application;
use messaging_service::config::Environment;
use messaging_service::domain::NewApiKey;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestApp, TestAppBuilder, sms_body, spawn_app};

#[tokio::test]
async fn the_console_is_served_with_a_strict_content_security_policy() {
    let app = spawn_app().await;
    let page = app.get("/console").await;
    assert_eq!(page.status(), 200);
    let header = |name: &str| {
        page.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(header("content-type").starts_with("text/html"));
    let csp = header("content-security-policy");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert_eq!(header("x-content-type-options"), "nosniff");
    let html = page.text().await.unwrap_or_default();
    assert!(html.contains("app.js"), "the page loads its own script");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing from elsewhere"
    );

    let script = app.get("/console/app.js").await;
    assert_eq!(script.status(), 200);
    let kind = script
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(kind.contains("javascript"), "{kind}");
    assert_eq!(app.get("/console/nope.js").await.status(), 404);
}

/// A production-mode service (API keys required, as production always has them).
fn production() -> TestAppBuilder {
    TestApp::builder()
        .env("ENVIRONMENT", "production")
        .env("SECRET_KEY", "a-test-secret-that-is-not-the-default")
        .env("ALLOWED_HOSTS", "127.0.0.1")
        .env("API_KEY_CACHE_TTL", "0")
}

/// Every API call the console makes (assets/console/*.js), with a real id where one is
/// needed: method, path, JSON body.
fn console_calls(message: &str, conversation: &str) -> Vec<(&'static str, String, Value)> {
    let none = Value::Null;
    vec![
        (
            "GET",
            "/api/v1/conversations?limit=100".into(),
            none.clone(),
        ),
        (
            "POST",
            "/api/v1/conversations/search".into(),
            json!({"query": "hello", "limit": 50}),
        ),
        (
            "GET",
            format!("/api/v1/conversations/{conversation}"),
            none.clone(),
        ),
        (
            "GET",
            format!("/api/v1/conversations/{conversation}/messages?order=desc&limit=100"),
            none.clone(),
        ),
        (
            "POST",
            format!("/api/v1/conversations/{conversation}/read"),
            json!({}),
        ),
        (
            "PATCH",
            format!("/api/v1/conversations/{conversation}"),
            json!({"status": "active"}),
        ),
        ("POST", "/api/v1/messages/send".into(), sms_body()),
        (
            "GET",
            "/api/v1/messages?status=failed&limit=50".into(),
            none.clone(),
        ),
        ("GET", format!("/api/v1/messages/{message}"), none.clone()),
        (
            "GET",
            format!("/api/v1/messages/{message}/events"),
            none.clone(),
        ),
        (
            "POST",
            format!("/api/v1/messages/{message}/retry"),
            json!({}),
        ),
        ("GET", "/api/v1/webhook-deliveries?limit=50".into(), none),
    ]
}

async fn call(app: &TestApp, method: &str, path: &str, body: &Value, key: Option<&str>) -> u16 {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = app.client.request(method, app.url(path));
    if !body.is_null() {
        req = req.json(body);
    }
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    req.send().await.expect("request").status().as_u16()
}

#[tokio::test]
async fn in_production_the_console_is_served_and_every_api_call_it_makes_needs_the_key() {
    let app = production().spawn().await;
    let (key, new_key) = NewApiKey::generate("console").expect("a key");
    app.components
        .store
        .create_api_key(&new_key)
        .await
        .expect("store the key");

    let page = app.get("/console").await;
    assert_eq!(
        page.status(),
        200,
        "served in production when keys are required"
    );
    assert!(page.headers().contains_key("content-security-policy"));
    assert_eq!(app.get("/console/segments.js").await.status(), 200);

    let sent = app
        .client
        .post(app.url("/api/v1/messages/send"))
        .bearer_auth(&key)
        .json(&sms_body())
        .send()
        .await
        .expect("request");
    assert_eq!(sent.status(), 201);
    let sent: Value = sent.json().await.expect("json");
    let (message, conversation) = (
        sent["id"].as_str().unwrap_or_default().to_owned(),
        sent["conversation_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    );
    for (method, path, body) in console_calls(&message, &conversation) {
        assert_eq!(
            call(&app, method, &path, &body, None).await,
            401,
            "{method} {path} without a key"
        );
        assert_eq!(
            call(&app, method, &path, &body, Some("msk_not-a-real-key")).await,
            401,
            "{method} {path} with an unknown key"
        );
        let with_key = call(&app, method, &path, &body, Some(&key)).await;
        // A retry of a message that has not failed is a 409: the key was accepted.
        assert!(
            (200..300).contains(&with_key) || (path.ends_with("/retry") && with_key == 409),
            "{method} {path} with the key answered {with_key}"
        );
    }
}

#[tokio::test]
async fn in_production_without_required_api_keys_the_console_is_refused() {
    // The settings refuse ENVIRONMENT=production with REQUIRE_API_KEYS=false; the console
    // holds its own line in case that ever changes.
    let app = production().spawn().await;
    let mut settings = app.settings.clone();
    assert_eq!(settings.environment, Environment::Production);
    settings.security.require_api_keys = false;
    let unguarded = Application::build(settings, app.components.clone())
        .await
        .expect("build");
    let address = format!("http://127.0.0.1:{}", unguarded.port());
    let shutdown = CancellationToken::new();
    tokio::spawn(unguarded.run_until_stopped(shutdown.clone()));

    for path in [
        "/console",
        "/console/",
        "/console/app.js",
        "/console/api.js",
    ] {
        let resp = app
            .client
            .get(format!("{address}{path}"))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 403, "{path}");
        let body: Value = resp.json().await.expect("a JSON error");
        assert_eq!(body["error"], "console_disabled", "{path}");
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("REQUIRE_API_KEYS"),
            "{body}"
        );
    }
    // The same deployment with keys required serves it.
    assert_eq!(app.get("/console").await.status(), 200);
    shutdown.cancel();
}
