use std::time::Duration;

use serde_json::Value;

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
async fn ready_is_503_naming_redis_when_redis_is_down() {
    if !crate::helpers::requires_postgres_and_redis("ready_is_503_naming_redis_when_redis_is_down")
    {
        return;
    }
    let app = TestApp::builder().redis_proxy().spawn().await;
    app.redis_proxy.as_ref().unwrap().cut();
    let (status, body) = app.get_json("/ready").await;
    assert_eq!(status, 503);
    assert_eq!(body["error"], "service_unavailable");
    assert_eq!(body["details"]["dependency"], "redis");
    assert!(body["message"].as_str().unwrap().contains("redis"));
    assert_eq!(body["details"]["checks"]["database"]["status"], "up");
    // Health is about the process, not its dependencies.
    assert_eq!(app.get_json("/health").await.0, 200);
    app.redis_proxy.as_ref().unwrap().restore();
    wait_ready(&app).await;
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
