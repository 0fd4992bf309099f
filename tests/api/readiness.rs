//! `/ready` says whether this instance can accept messages. With Redis gone (a `redis-server`
//! this test starts on its own port and kills) the API still accepts sends, so `/ready`
//! stays 200 and reports `"redis":"degraded"` in its body and in `dependency_up`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{KillOnDrop, TestApp, requires_postgres_and_redis, sms_body};

/// This branch's port range is 20500–20599.
const REDIS_PORT: u16 = 20510;

fn start_redis() -> KillOnDrop {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &REDIS_PORT.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", REDIS_PORT)).is_err() {
        assert!(Instant::now() < deadline, "redis-server never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    KillOnDrop(child)
}

async fn redis_gauge(app: &TestApp) -> Option<String> {
    let text = app.get("/metrics").await.text().await.ok()?;
    text.lines()
        .find(|l| l.starts_with("dependency_up{dependency=\"redis\"}"))
        .map(|l| l.rsplit(' ').next().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn ready_stays_200_and_reports_redis_degraded_when_redis_dies() {
    let test = "ready_stays_200_and_reports_redis_degraded_when_redis_dies";
    if !requires_postgres_and_redis(test) {
        return;
    }
    let mut redis = start_redis();
    let app = TestApp::builder()
        .env("REDIS_URL", &format!("redis://127.0.0.1:{REDIS_PORT}/0"))
        .spawn()
        .await;
    let (status, body) = app.get_json("/ready").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["redis"], "up", "{body}");

    redis.kill().expect("kill redis-server");
    redis.wait().expect("reap redis-server");

    let (status, body) = app.get_json("/ready").await;
    assert_eq!(
        status, 200,
        "the database answers, so sends are accepted: {body}"
    );
    assert_eq!(body["status"], "ready");
    assert_eq!(body["redis"], "degraded", "{body}");
    assert_eq!(body["checks"]["database"]["status"], "up");
    assert_eq!(body["checks"]["queue"]["status"], "down");

    // The metric says so too (other tests in this process set the same gauge, so ask again
    // right after our own /ready a few times).
    let mut seen = None;
    for _ in 0..20 {
        let _ = app.get_json("/ready").await;
        seen = redis_gauge(&app).await;
        if seen.as_deref() == Some("0") {
            break;
        }
    }
    assert_eq!(
        seen.as_deref(),
        Some("0"),
        "dependency_up{{redis}} after Redis died"
    );

    // And the instance does accept a message.
    let resp = app.post_send(&sms_body()).await;
    assert_eq!(resp.status(), 201, "a send is accepted while Redis is down");
}
