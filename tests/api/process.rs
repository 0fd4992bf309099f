//! The real binary as operators run it: signals, crashes and separate processes.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use messaging_service::domain::MessageStatus;

use crate::helpers::{KillOnDrop, TestApp, sms_body};

fn spawn_binary(app: &TestApp, subcommand: &str, extra: &[(&str, &str)]) -> KillOnDrop {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_messaging-service"));
    cmd.arg(subcommand)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", app.database_url().expose())
        .env("REDIS_URL", "redis://127.0.0.1:6379/0")
        .env("QUEUE_KEY_PREFIX", &app.prefix)
        .env("HOST", "127.0.0.1")
        .env("LOG_LEVEL", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    KillOnDrop(cmd.spawn().expect("start the binary"))
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill")
        .success();
    assert!(ok, "could not deliver SIG{sig}");
}

async fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_count(app: &TestApp, status: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, list) = app
            .get_json(&format!("/api/v1/messages?status={status}&limit=1"))
            .await;
        if list["total"].as_i64() == Some(n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never saw {n} messages {status}; last {list}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sigterm_lets_the_worker_finish_its_in_flight_messages_and_exit_0() {
    if !crate::helpers::requires_postgres_and_redis(
        "sigterm_lets_the_worker_finish_its_in_flight_messages_and_exit_0",
    ) {
        return;
    }
    let app = TestApp::builder().spawn().await;
    let mut worker = spawn_binary(
        &app,
        "worker",
        &[
            ("MOCK_PROVIDER_LATENCY_MS", "1500"),
            ("SHUTDOWN_GRACE", "20"),
        ],
    );
    for _ in 0..5 {
        app.send(&sms_body()).await;
    }
    wait_count(&app, "sending", 5).await;
    signal(&worker, "TERM");
    let status = wait_exit(&mut worker, Duration::from_secs(25)).await;
    assert!(status.success(), "worker exit status {status:?}");
    wait_count(&app, "sent", 5).await;
    assert_eq!(app.xlen("message_queue:sms").await, 0);
}

#[tokio::test]
async fn a_worker_process_killed_with_sigkill_loses_nothing() {
    if !crate::helpers::requires_postgres_and_redis(
        "a_worker_process_killed_with_sigkill_loses_nothing",
    ) {
        return;
    }
    let app = TestApp::builder()
        .env("QUEUE_VISIBILITY_TIMEOUT", "1")
        .spawn()
        .await;
    let mut worker = spawn_binary(&app, "worker", &[("MOCK_PROVIDER_LATENCY_MS", "60000")]);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            app.send(&sms_body()).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    wait_count(&app, "sending", 3).await;
    signal(&worker, "KILL");
    wait_exit(&mut worker, Duration::from_secs(5)).await;

    let deadline = Instant::now() + Duration::from_secs(15);
    let mut reclaimed = 0;
    loop {
        reclaimed += app.worker.reclaim_once().await.unwrap();
        if reclaimed >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "abandoned tasks were never reclaimed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in &ids {
        app.drain_until(id, MessageStatus::Sent).await;
        assert_eq!(app.provider.calls_for(id.parse().unwrap()), 1);
    }
}

#[tokio::test]
async fn the_api_process_drains_and_exits_0_on_sigterm() {
    if !crate::helpers::requires_postgres_and_redis("the_api_process_drains_and_exits_0_on_sigterm")
    {
        return;
    }
    let app = TestApp::builder().spawn().await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port().to_string()
    };
    let mut api = spawn_binary(&app, "serve", &[("PORT", &port)]);
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/health")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the API never came up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resp = client
        .post(format!("{base}/api/v1/messages/send"))
        .json(&sms_body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    signal(&api, "TERM");
    let status = wait_exit(&mut api, Duration::from_secs(15)).await;
    assert!(status.success(), "API exit status {status:?}");
}

#[tokio::test]
async fn a_bad_setting_stops_start_up_naming_the_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_messaging-service"))
        .arg("serve")
        .env("PORT", "not-a-port")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PORT"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}
