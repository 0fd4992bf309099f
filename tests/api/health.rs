use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use messaging_service::app::Application;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::helpers::{TestApp, spawn_app};

#[tokio::test]
async fn health_reports_healthy_with_a_timestamp() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/health").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "healthy");
    assert!(
        time::OffsetDateTime::parse(
            body["timestamp"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339
        )
        .is_ok()
    );
}

#[tokio::test]
async fn ready_checks_every_dependency() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/ready").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["database"]["status"], "up");
    assert_eq!(body["checks"]["queue"]["status"], "up");
}

#[tokio::test]
async fn ready_is_503_naming_the_database_when_postgresql_is_down() {
    if !crate::helpers::requires_postgres_and_redis(
        "ready_is_503_naming_the_database_when_postgresql_is_down",
    ) {
        return;
    }
    let app = TestApp::builder().db_proxy().spawn().await;
    app.db_proxy.as_ref().unwrap().cut();
    let (status, body) = app.get_json("/ready").await;
    assert_eq!(status, 503);
    assert_eq!(body["details"]["dependency"], "database");
    // A send while the database is down is refused with 503, never a 500.
    let resp = app.post_send(&crate::helpers::sms_body()).await;
    assert_eq!(resp.status(), 503);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"], "service_unavailable");
    app.db_proxy.as_ref().unwrap().restore();
    wait_ready(&app).await;
}

async fn wait_ready(app: &TestApp) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while app.get_json("/ready").await.0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "never became ready again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn has_rate_limit_headers(resp: &reqwest::Response) -> bool {
    resp.headers().contains_key("x-ratelimit-limit")
}

#[tokio::test]
async fn live_answers_alive_without_a_rate_limit() {
    let app = TestApp::builder()
        .env("RATE_LIMIT_ENABLED", "true")
        .env("RATE_LIMIT_REQUESTS", "3")
        .env("RATE_LIMIT_PERIOD", "60")
        .spawn()
        .await;
    for _ in 0..10 {
        let resp = app.get("/live").await;
        assert_eq!(resp.status(), 200);
        assert!(!has_rate_limit_headers(&resp), "/live is not rate limited");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["status"], "alive");
        assert!(body["timestamp"].is_string());
    }
}

#[tokio::test]
async fn polling_the_probes_leaves_the_health_window_untouched() {
    // What bin/start.sh, make status and the flow check do right before the guide's
    // rate-limit loop: poll /live and /startup. /health's window must still be whole.
    let app = TestApp::builder()
        .env("RATE_LIMIT_ENABLED", "true")
        .env("RATE_LIMIT_REQUESTS", "5")
        .env("RATE_LIMIT_PERIOD", "60")
        .spawn()
        .await;
    for _ in 0..20 {
        assert_eq!(app.get("/live").await.status(), 200);
        assert_eq!(app.get("/startup").await.status(), 200);
    }
    for expected_remaining in (0..5).rev() {
        let resp = app.get("/health").await;
        assert_eq!(resp.status(), 200);
        let remaining = resp
            .headers()
            .get("x-ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok());
        assert_eq!(remaining, Some(expected_remaining));
    }
    assert_eq!(app.get("/health").await.status(), 429);
    // /dependencies asks the database and the queue: it is limited like /health and /ready.
    for _ in 0..5 {
        let resp = app.get("/dependencies").await;
        assert_eq!(resp.status(), 200);
        assert!(has_rate_limit_headers(&resp));
    }
    assert_eq!(app.get("/dependencies").await.status(), 429);
    assert_eq!(app.get("/live").await.status(), 200, "never limited");
}

#[tokio::test]
async fn startup_is_503_until_the_server_serves_then_200() {
    let app = spawn_app().await;
    let mut settings = app.settings.clone();
    settings.port = 0;
    let second = Application::build(settings, app.components.clone())
        .await
        .expect("second instance");
    let url = format!("http://127.0.0.1:{}/startup", second.port());
    // Built but not yet serving: start-up is not done.
    let request = Request::get("/startup")
        .body(Body::empty())
        .expect("request");
    let early = second.router().oneshot(request).await.expect("infallible");
    assert_eq!(early.status(), 503);
    let body = axum::body::to_bytes(early.into_body(), usize::MAX)
        .await
        .expect("body");
    let body: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(body["status"], "starting");

    let stop = CancellationToken::new();
    tokio::spawn(second.run_until_stopped(stop.clone()));
    let resp = app.client.get(&url).send().await.expect("request");
    assert_eq!(resp.status(), 200);
    assert!(
        !has_rate_limit_headers(&resp),
        "/startup is not rate limited"
    );
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["status"], "started");
    stop.cancel();

    // The test's own instance is serving.
    assert_eq!(app.get_json("/startup").await.0, 200);
}

#[tokio::test]
async fn dependencies_reports_each_dependency_with_its_latency() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/dependencies").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    for dependency in ["database", "queue"] {
        let check = &body["checks"][dependency];
        assert_eq!(check["status"], "up", "{body}");
        assert!(check["backend"].is_string(), "{body}");
        assert!(check["latency_ms"].is_u64(), "{body}");
    }
    // The same shape as /ready's checks.
    let (_, ready) = app.get_json("/ready").await;
    assert_eq!(
        ready["checks"]["database"]["backend"],
        body["checks"]["database"]["backend"]
    );
    assert_eq!(
        ready["checks"]["queue"]["backend"],
        body["checks"]["queue"]["backend"]
    );
}

#[tokio::test]
async fn dependencies_is_200_and_degraded_while_redis_is_down_and_live_stays_200() {
    if !crate::helpers::requires_postgres_and_redis(
        "dependencies_is_200_and_degraded_while_redis_is_down_and_live_stays_200",
    ) {
        return;
    }
    let app = TestApp::builder().redis_proxy().spawn().await;
    app.redis_proxy.as_ref().unwrap().cut();
    let (status, body) = app.get_json("/dependencies").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["checks"]["queue"]["status"], "down");
    assert_eq!(body["checks"]["queue"]["error"], "unreachable");
    assert_eq!(body["checks"]["database"]["status"], "up");
    // Redis down is reported, not refused: the database still takes sends.
    assert_eq!(app.get_json("/ready").await.0, 200);
    // Liveness and start-up ask no dependency.
    assert_eq!(app.get_json("/live").await.0, 200);
    assert_eq!(app.get_json("/startup").await.0, 200);
    app.redis_proxy.as_ref().unwrap().restore();
    wait_ready(&app).await;
}

#[tokio::test]
async fn probes_answer_any_host_in_production() {
    let app = TestApp::builder()
        .env("ENVIRONMENT", "production")
        .env("SECRET_KEY", "a-test-secret-that-is-not-the-default")
        .env("ALLOWED_HOSTS", "api.example.com")
        .env("LOG_FORMAT", "text")
        .spawn()
        .await;
    // Orchestrators probe pods by address.
    for path in ["/health", "/live", "/startup", "/ready", "/dependencies"] {
        let resp = app
            .client
            .get(app.url(path))
            .header("Host", "10.1.2.3:8080")
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200, "{path}");
    }
    let other = app
        .client
        .get(app.url("/api/v1/messages"))
        .header("Host", "10.1.2.3:8080")
        .send()
        .await
        .expect("request");
    assert_eq!(other.status(), 400, "only the probes answer any Host");
}
