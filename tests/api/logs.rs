//! The real binary with `LOG_FORMAT=json`: every stdout line is a JSON object with the
//! documented fields, and the lines of one request and one message can be found by their ids.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::helpers::{TestApp, sms_body};

/// Kills the child if the test panics before it is stopped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

async fn next_line(lines: &mut mpsc::UnboundedReceiver<String>, seen: &mut Vec<String>) -> String {
    let line = tokio::time::timeout(Duration::from_secs(60), lines.recv())
        .await
        .expect("the service keeps logging")
        .expect("the service exited early");
    seen.push(line.clone());
    line
}

#[tokio::test]
async fn json_log_lines_carry_timestamp_level_target_message_request_id_and_message_id() {
    // The harness provides the scratch database and key prefix; the binary runs on them.
    let app = TestApp::builder().spawn().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_messaging-service"))
        .arg("all")
        .env_remove("RUST_LOG")
        .env("DATABASE_URL", app.database_url().expose())
        .env("REDIS_URL", app.settings.redis_url.expose())
        .env("QUEUE_KEY_PREFIX", &app.prefix)
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("LOG_FORMAT", "json")
        .env("LOG_LEVEL", "info")
        .env("MOCK_PROVIDER_LATENCY_MS", "0")
        .env("QUEUE_BLOCK", "0.05")
        .env("SHUTDOWN_GRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the binary");
    let stdout = child.stdout.take().expect("piped stdout");
    let child = Running(child);
    let (tx, mut lines) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut reader = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    // The start-up line says where it listens (port 0 picked a free one).
    let mut seen = Vec::new();
    let addr = loop {
        let line = next_line(&mut lines, &mut seen).await;
        if let Ok(v) = serde_json::from_str::<Value>(&line)
            && let Some(addr) = v["addr"].as_str()
        {
            break addr.to_owned();
        }
    };
    let base = format!("http://{addr}");

    let request_id = format!("log-test-{}", Uuid::new_v4());
    let resp = app
        .client
        .post(format!("{base}/api/v1/messages/send"))
        .header("X-Request-ID", &request_id)
        .json(&sms_body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let message_id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Read until the worker has sent it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen
        .iter()
        .any(|l| l.contains("Message sent") && l.contains(&message_id))
    {
        assert!(
            Instant::now() < deadline,
            "no 'Message sent' line: {seen:#?}"
        );
        next_line(&mut lines, &mut seen).await;
    }
    drop(child);

    let parsed: Vec<Value> = seen
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for (line, v) in seen.iter().zip(&parsed) {
        assert!(v.is_object(), "one object per line: {line}");
        let ts = v["timestamp"].as_str().unwrap_or_default();
        assert!(
            OffsetDateTime::parse(ts, &Rfc3339).is_ok(),
            "RFC 3339 timestamp: {line}"
        );
        assert!(
            ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
                .contains(&v["level"].as_str().unwrap_or_default()),
            "level: {line}"
        );
        assert!(
            v["target"].as_str().is_some_and(|t| !t.is_empty()),
            "target: {line}"
        );
        assert!(v["message"].as_str().is_some(), "message: {line}");
    }

    let of_request: Vec<&Value> = parsed
        .iter()
        .filter(|v| v["request_id"] == request_id.as_str())
        .collect();
    assert!(
        of_request
            .iter()
            .any(|v| v["message"].as_str().unwrap().contains("Request")
                && v["status"] == 201
                && v["route"] == "/api/v1/messages/send"),
        "the request's access line carries its request_id: {seen:#?}"
    );
    assert!(
        of_request
            .iter()
            .any(|v| v["message"] == "Message accepted" && v["message_id"] == message_id.as_str()),
        "lines inside the request carry both ids: {seen:#?}"
    );
    let of_message: Vec<&str> = parsed
        .iter()
        .filter(|v| v["message_id"] == message_id.as_str())
        .filter_map(|v| v["message"].as_str())
        .collect();
    assert!(
        of_message.contains(&"Processing message from queue: message_queue:sms")
            && of_message.contains(&"Message sent"),
        "the worker's lines carry the message_id: {of_message:?}"
    );
    assert!(
        !seen.iter().any(|l| l.contains("+15559876543")),
        "phone numbers are masked in logs"
    );
}

/// Everything `pipe` carries until it closes, read on a thread.
fn collect(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

#[tokio::test]
async fn with_json_logs_stdout_and_stderr_carry_only_json_lines_from_the_first_byte() {
    use crate::helpers::KillOnDrop;
    use crate::process::{accepts_a_send_once_up, binary, free_port, signal, wait_exit};

    let app = TestApp::builder().spawn().await;
    let port = free_port();
    let mut child = binary(&app, "all", &[("PORT", &port), ("LOG_FORMAT", "json")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the binary");
    let stdout = collect(child.stdout.take().expect("piped stdout"));
    let stderr = collect(child.stderr.take().expect("piped stderr"));
    let mut child = KillOnDrop(child);
    accepts_a_send_once_up(&format!("http://127.0.0.1:{port}")).await;
    signal(&child.0, "TERM");
    let status = wait_exit(&mut child.0, Duration::from_secs(20)).await;
    assert!(status.success(), "exit status {status:?}");
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");

    assert!(
        stdout.starts_with('{'),
        "JSON from the first byte: {stdout:.200}"
    );
    for (stream, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        for line in text.lines() {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{stream}: not a JSON line ({e}): {line}"));
            assert!(v.is_object(), "{stream}: one object per line: {line}");
        }
    }
    // The start-up banner is one event with its facts as fields.
    let banner = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["role"].is_string() && v["url"].is_string())
        .unwrap_or_else(|| panic!("no banner event: {stdout}"));
    assert_eq!(banner["url"], format!("http://localhost:{port}").as_str());
    assert!(banner["storage"].is_string() && banner["queue"].is_string());
    assert!(
        stdout.contains("\"message\":\"API stopped\""),
        "shutdown is logged too: {stdout}"
    );
}
