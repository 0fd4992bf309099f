//! API keys and production-mode refusals: the `keys` subcommands, Bearer authentication,
//! ALLOWED_HOSTS and start-up checks.

use std::process::Output;

use serde_json::Value;

use crate::helpers::{TestApp, TestAppBuilder, sms_body};

/// A production-mode service whose Host (127.0.0.1) is allowed and whose key lookups are
/// not cached, so a revocation shows at once.
fn production() -> TestAppBuilder {
    TestApp::builder()
        .env("ENVIRONMENT", "production")
        .env("SECRET_KEY", "a-test-secret-that-is-not-the-default")
        .env("ALLOWED_HOSTS", "127.0.0.1,.example.com")
        .env("API_KEY_CACHE_TTL", "0")
        .env("LOG_FORMAT", "text")
}

/// Runs the real binary against the test's database.
fn cli(app: &TestApp, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_messaging-service"))
        .args(args)
        .env("DATABASE_URL", app.database_url().expose())
        .env("ENVIRONMENT", "development")
        .env("LOG_LEVEL", "error")
        .output()
        .expect("run messaging-service")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

async fn send_with(app: &TestApp, key: Option<&str>) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/api/v1/messages/send"))
        .json(&sms_body());
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().await.expect("request")
}

async fn error_code(resp: reqwest::Response) -> String {
    let body: Value = resp.json().await.expect("json error body");
    body["error"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_key_from_keys_create_authenticates_until_keys_revoke() {
    let app = production().spawn().await;

    let created = cli(&app, &["keys", "create", "--name", "billing service"]);
    assert!(created.status.success(), "{created:?}");
    let out = stdout(&created);
    let key = out
        .split_whitespace()
        .find(|w| w.starts_with("msk_"))
        .expect("the key is printed once")
        .to_owned();

    let resp = send_with(&app, Some(&key)).await;
    assert_eq!(resp.status(), 201);

    let listed = stdout(&cli(&app, &["keys", "list"]));
    assert!(listed.contains("billing service"), "{listed}");
    assert!(listed.contains("active"), "{listed}");
    assert!(!listed.contains(&key), "the list never shows a key");
    let id = listed
        .lines()
        .find(|l| l.contains("billing service"))
        .and_then(|l| l.split_whitespace().next())
        .expect("id column")
        .to_owned();

    let revoked = cli(&app, &["keys", "revoke", &id]);
    assert!(revoked.status.success(), "{revoked:?}");
    let resp = send_with(&app, Some(&key)).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(error_code(resp).await, "api_key_revoked");
    assert!(stdout(&cli(&app, &["keys", "list"])).contains("revoked"));

    let unknown = cli(&app, &["keys", "revoke", &uuid::Uuid::new_v4().to_string()]);
    assert!(!unknown.status.success(), "revoking an unknown id fails");
}

#[tokio::test]
async fn only_the_hash_of_a_key_is_stored() {
    let app = production().spawn().await;
    let out = stdout(&cli(&app, &["keys", "create", "--name", "audit"]));
    let key = out
        .split_whitespace()
        .find(|w| w.starts_with("msk_"))
        .expect("key")
        .to_owned();
    let dump = app
        .db_strings(
            "select concat_ws(' ', id, name, prefix, key_hash) from api_keys",
            &[],
        )
        .await;
    assert_eq!(dump.len(), 1);
    assert!(!dump[0].contains(&key));
    assert!(dump[0].contains(&messaging_service::domain::hash_key(&key)));
}

#[tokio::test]
async fn production_answers_401_without_a_valid_key_on_api_routes() {
    let app = production().spawn().await;
    let missing = send_with(&app, None).await;
    assert_eq!(missing.status(), 401);
    assert_eq!(
        missing
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap()),
        Some("Bearer")
    );
    assert_eq!(error_code(missing).await, "missing_api_key");

    let invalid = send_with(&app, Some("msk_not-a-real-key")).await;
    assert_eq!(invalid.status(), 401);
    assert_eq!(error_code(invalid).await, "invalid_api_key");

    let list = app.get("/api/v1/messages").await;
    assert_eq!(list.status(), 401, "reads need a key too");
    let (_, body) = app.get_json("/api/v1/messages").await;
    assert_eq!(body["error"], "missing_api_key");
}

#[tokio::test]
async fn production_exempts_health_ready_and_provider_webhooks_from_keys() {
    let app = production().spawn().await;
    assert_eq!(app.get("/health").await.status(), 200);
    assert_eq!(app.get("/ready").await.status(), 200);
    // (The original's unsigned `/api/webhooks/sms` needs a key in production: see
    // `unauthenticated.rs`.)
    for path in ["/api/v1/webhooks/twilio"] {
        let resp = app.post_raw(path, Some("application/json"), "{}").await;
        assert_ne!(
            resp.status(),
            401,
            "{path} is authenticated by its signature"
        );
    }
}

#[tokio::test]
async fn production_answers_400_to_a_host_not_in_allowed_hosts() {
    let app = production().spawn().await;
    let evil = app
        .client
        .get(app.url("/api/v1/messages"))
        .header("Host", "evil.test")
        .send()
        .await
        .expect("request");
    assert_eq!(evil.status(), 400);
    assert_eq!(error_code(evil).await, "invalid_host");

    let subdomain = app
        .client
        .get(app.url("/api/v1/messages"))
        .header("Host", "api.example.com:443")
        .send()
        .await
        .expect("request");
    assert_eq!(subdomain.status(), 401, "allowed host, then the key check");

    let probe = app
        .client
        .get(app.url("/health"))
        .header("Host", "10.1.2.3:8080")
        .send()
        .await
        .expect("request");
    assert_eq!(probe.status(), 200, "probes may use any Host");
}

#[tokio::test]
async fn development_needs_no_key_but_refuses_a_wrong_one() {
    let app = TestApp::builder().spawn().await;
    assert_eq!(send_with(&app, None).await.status(), 201);
    let wrong = send_with(&app, Some("msk_wrong")).await;
    assert_eq!(wrong.status(), 401);
    let evil = app
        .client
        .get(app.url("/health"))
        .header("Host", "evil.test")
        .send()
        .await
        .expect("request");
    assert_eq!(evil.status(), 200, "hosts are checked in production only");
}

#[tokio::test]
async fn production_refuses_to_start_with_the_default_secret_key_or_without_allowed_hosts() {
    let run = |extra: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_messaging-service"));
        cmd.arg("serve")
            .env("ENVIRONMENT", "production")
            .env_remove("SECRET_KEY")
            .env_remove("ALLOWED_HOSTS")
            .env("PORT", "0");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.output().expect("run messaging-service")
    };
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SECRET_KEY"));
    let out = run(&[("SECRET_KEY", "strong-enough-secret")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ALLOWED_HOSTS"));
}
