//! The SMTP adapter against a real SMTP server (Python's `aiosmtpd`, installed from PyPI
//! into a private virtualenv under the target directory on first use), checking the MIME
//! that arrives.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use messaging_service::domain::MessageStatus;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::TestApp;

/// A Python with aiosmtpd, made once per target directory.
fn sink_python() -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("smtp-sink-venv");
    let python = venv.join("bin/python");
    let ready = |p: &Path| {
        Command::new(p)
            .args(["-c", "import aiosmtpd"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ready(&python) {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 is needed for the SMTP test")
            .success();
        assert!(ok, "could not create a virtualenv at {venv:?}");
        let ok = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "aiosmtpd"])
            .status()
            .expect("pip")
            .success();
        assert!(ok, "could not install aiosmtpd from PyPI");
    }
    python
}

struct Sink {
    child: Child,
    port: u16,
    maildir: PathBuf,
}

impl Sink {
    fn start() -> Self {
        let python = sink_python();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let maildir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("maildir-{}", uuid::Uuid::new_v4().simple()));
        let child = Command::new(python)
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the SMTP sink never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            port,
            maildir,
        }
    }

    fn messages(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        dir.flatten()
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.maildir);
    }
}

/// The lines of a base64 MIME body after the part header naming `marker`, decoded.
fn part_body(mime: &str, marker: &str) -> Vec<u8> {
    let start = mime
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in {mime}"));
    let rest = &mime[start..];
    let body_start = rest
        .find("\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| rest.find("\n\n").map(|i| i + 2))
        .unwrap();
    let encoded: String = rest[body_start..]
        .lines()
        .take_while(|l| !l.starts_with("--") && !l.trim().is_empty())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .unwrap()
}

#[tokio::test]
async fn an_email_goes_over_smtp_as_text_with_an_html_alternative_and_an_attachment() {
    let sink = Sink::start();
    let files = MockServer::start().await;
    // Binary content, so it must travel base64-encoded.
    let png: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    Mock::given(method("GET"))
        .and(path("/exports/chart.png"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(png.clone(), "image/png"))
        .mount(&files)
        .await;
    let app = TestApp::builder()
        .real_providers()
        .env("EMAIL_PROVIDERS", "smtp")
        .env("SMTP_URL", &format!("smtp://127.0.0.1:{}", sink.port))
        .spawn()
        .await;
    let id = app
        .send(&json!({
            "from": "reports@example.com", "to": "ann@example.org", "subject": "Monthly totals",
            "body": "<p>Hi Ann,</p><p>the totals are attached.</p>",
            "attachments": [format!("{}/exports/chart.png", files.uri())]
        }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sent = app.drain_until(&id, MessageStatus::Sent).await;
    assert_eq!(sent["provider"], "smtp");
    assert_eq!(sent["provider_message_id"], format!("<{id}@example.com>"));

    let deadline = Instant::now() + Duration::from_secs(5);
    let mime = loop {
        if let Some(m) = sink.messages().pop() {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "nothing arrived at the SMTP sink"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(mime.contains("From: reports@example.com"), "{mime}");
    assert!(mime.contains("To: ann@example.org"), "{mime}");
    assert!(mime.contains("Subject: Monthly totals"), "{mime}");
    assert!(
        mime.contains(&format!("Message-ID: <{id}@example.com>")),
        "{mime}"
    );
    assert!(mime.contains("Content-Type: multipart/mixed"), "{mime}");
    assert!(
        mime.contains("Content-Type: multipart/alternative"),
        "{mime}"
    );
    let text_at = mime.find("Content-Type: text/plain").expect("a text part");
    let html_at = mime.find("Content-Type: text/html").expect("an html part");
    assert!(text_at < html_at, "text comes before its HTML alternative");
    assert!(mime.contains("Hi Ann,"), "{mime}");
    assert!(mime.contains("<p>the totals are attached.</p>"), "{mime}");
    assert!(
        mime.contains("Content-Disposition: attachment; filename=\"chart.png\""),
        "{mime}"
    );
    assert!(mime.contains("Content-Type: image/png"), "{mime}");
    assert_eq!(part_body(&mime, "filename=\"chart.png\""), png);
}

#[tokio::test]
async fn an_unreachable_smtp_server_is_a_transient_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = TestApp::builder()
        .real_providers()
        .env("EMAIL_PROVIDERS", "smtp")
        .env("SMTP_URL", &format!("smtp://127.0.0.1:{port}"))
        .spawn()
        .await;
    let id = app
        .send(&json!({"from": "a@example.com", "to": "b@example.com", "body": "x"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let retry = app.drain_until(&id, MessageStatus::Retry).await;
    assert_eq!(retry["retry_count"], 1);
    assert!(
        retry["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("smtp:"),
        "{retry}"
    );
}
