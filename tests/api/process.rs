//! The real binary as operators run it: signals, crashes and separate processes.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use messaging_service::domain::MessageStatus;

use crate::helpers::{KillOnDrop, TestApp, sms_body};

/// The binary running `subcommand` on the test's database and key prefix, its output
/// discarded unless the caller redirects it.
pub(crate) fn binary(app: &TestApp, subcommand: &str, extra: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_messaging-service"));
    cmd.arg(subcommand)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", app.database_url().expose())
        .env("REDIS_URL", "redis://127.0.0.1:6379/0")
        .env("QUEUE_KEY_PREFIX", &app.prefix)
        .env("HOST", "127.0.0.1")
        .env("LOG_LEVEL", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd
}

fn spawn_binary(app: &TestApp, subcommand: &str, extra: &[(&str, &str)]) -> KillOnDrop {
    KillOnDrop(
        binary(app, subcommand, extra)
            .spawn()
            .expect("start the binary"),
    )
}

/// A port nobody listens on right now.
pub(crate) fn free_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port().to_string()
}

/// Waits until `url` answers at all (the process is up).
pub(crate) async fn wait_until_answers(url: &str) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(url).send().await.is_err() {
        assert!(Instant::now() < deadline, "{url} never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for the API at `base` to come up, then sends one SMS through it (201).
pub(crate) async fn accepts_a_send_once_up(base: &str) {
    wait_until_answers(&format!("{base}/health")).await;
    let resp = reqwest::Client::new()
        .post(format!("{base}/api/v1/messages/send"))
        .json(&sms_body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
}

pub(crate) fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill")
        .success();
    assert!(ok, "could not deliver SIG{sig}");
}

pub(crate) async fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
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
    let mut worker = spawn_binary(
        &app,
        "worker",
        &[
            ("MOCK_PROVIDER_LATENCY_MS", "60000"),
            ("QUEUE_VISIBILITY_TIMEOUT", "1"),
        ],
    );
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

    // The dead worker renewed its leases until it died: its tasks are taken over once the
    // last lease has run out (a reclaim before that leaves them claimed, and tries again).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        app.worker.reclaim_once().await.unwrap();
        let mut sent = 0;
        for id in &ids {
            if app.message(id).await["status"] == MessageStatus::Sent.as_str() {
                sent += 1;
            }
        }
        if sent == ids.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "abandoned tasks were never reclaimed and sent"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in &ids {
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
    let port = free_port();
    let mut api = spawn_binary(&app, "serve", &[("PORT", &port)]);
    accepts_a_send_once_up(&format!("http://127.0.0.1:{port}")).await;
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

/// The reproduction: stdout and stderr on a FIFO (`>f 2>&1`) whose reader (`cat f`)
/// is killed once the service is up; SIGTERM must still stop it, whatever the log lines it
/// then fails to write.
async fn sigterm_stops_it_after_its_log_reader_died(app: &TestApp, subcommand: &str) {
    let fifo = std::env::temp_dir().join(format!("log-fifo-{}", uuid::Uuid::new_v4()));
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success(), "mkfifo {}", fifo.display());
    let mut reader = Command::new("cat")
        .arg(&fifo)
        .stdout(Stdio::null())
        .spawn()
        .expect("cat");
    // Opening the write end waits for the reader, as the shell's `>f` does.
    let out = std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .expect("open the FIFO");
    let err = out.try_clone().expect("dup the FIFO");
    let (port, metrics_port) = (free_port(), free_port());
    let service = binary(
        app,
        subcommand,
        &[("PORT", &port), ("WORKER_METRICS_PORT", &metrics_port)],
    )
    .stdout(out)
    .stderr(err)
    .spawn()
    .expect("start the binary");
    let mut service = KillOnDrop(service);
    let probe = if subcommand == "worker" {
        &metrics_port
    } else {
        &port
    };
    wait_until_answers(&format!("http://127.0.0.1:{probe}/health")).await;

    reader.kill().expect("kill the reader");
    reader.wait().expect("reap the reader");
    signal(&service.0, "TERM");
    let status = wait_exit(&mut service.0, Duration::from_secs(20)).await;
    let _ = std::fs::remove_file(&fifo);
    assert!(status.success(), "{subcommand} exit status {status:?}");
}

#[tokio::test]
async fn all_stops_on_sigterm_after_its_log_reader_died() {
    let app = TestApp::builder().spawn().await;
    sigterm_stops_it_after_its_log_reader_died(&app, "all").await;
}

#[tokio::test]
async fn serve_stops_on_sigterm_after_its_log_reader_died() {
    if !crate::helpers::requires_postgres_and_redis(
        "serve_stops_on_sigterm_after_its_log_reader_died",
    ) {
        return;
    }
    let app = TestApp::builder().spawn().await;
    sigterm_stops_it_after_its_log_reader_died(&app, "serve").await;
}

#[tokio::test]
async fn worker_stops_on_sigterm_after_its_log_reader_died() {
    if !crate::helpers::requires_postgres_and_redis(
        "worker_stops_on_sigterm_after_its_log_reader_died",
    ) {
        return;
    }
    let app = TestApp::builder().spawn().await;
    sigterm_stops_it_after_its_log_reader_died(&app, "worker").await;
}
