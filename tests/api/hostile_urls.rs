//! Hostile attachment URLs under production settings (`ENVIRONMENT=production`, so
//! `ATTACHMENT_ALLOW_PRIVATE_URLS` defaults to false), with the real SendGrid adapter. A
//! listener on 127.0.0.1 stands for what only the server can reach; it must see 0 requests.
//!
//! What each case proves:
//! - literal addresses (`169.254.169.254`, `127.0.0.1:port`, `[::1]`, `localhost`): refused
//!   with 422 at accept time, on v1 and on the original API — the accept-time check;
//! - a name that is neither literal nor `localhost` but resolves to 127.0.0.1 here (the host's
//!   own name, from `/etc/hosts`): accepted (names are not resolved at accept time), then the
//!   worker's client refuses it after DNS and the message fails `attachment_refused` without
//!   calling SendGrid — the resolver check;
//! - a redirect from an allowed host to 127.0.0.1 (or to a name resolving to it): refused by
//!   the client's redirect policy. The redirecting server is itself on loopback, so this case
//!   gives the guarded client a DNS override for its public-looking name (which bypasses only
//!   the resolver check, for that one name): what refuses the hop is the redirect policy.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use messaging_service::domain::NewApiKey;
use messaging_service::net::UrlGuard;
use messaging_service::provider::ProviderError;
use messaging_service::provider::attachments::fetch_all;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::TestApp;

/// A listener on 127.0.0.1 that answers 200 "secret" and counts every connection.
struct Loopback {
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl Loopback {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback listener");
        let port = listener.local_addr().expect("addr").port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = socket.read(&mut buf).await;
                    let _ = socket
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecret")
                        .await;
                });
            }
        });
        Self { port, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A name, not literal and not `localhost`, that resolves to a loopback address on this
/// machine (the host's own name is in `/etc/hosts`), if there is one.
async fn name_resolving_to_loopback() -> Option<String> {
    let own = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned());
    let candidates = own.into_iter().chain([
        "localhost.localdomain".to_owned(),
        "ip6-localhost".to_owned(),
    ]);
    for name in candidates {
        if name.is_empty()
            || UrlGuard::new(false)
                .check(&format!("http://{name}/"))
                .is_err()
        {
            continue;
        }
        let loopback = tokio::net::lookup_host((name.as_str(), 80))
            .await
            .is_ok_and(|mut addrs| addrs.any(|a| a.ip().is_loopback()));
        if loopback {
            return Some(name);
        }
    }
    None
}

struct Production {
    app: TestApp,
    key: String,
    sendgrid: MockServer,
}

async fn production() -> Production {
    let sendgrid = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .respond_with(ResponseTemplate::new(202).insert_header("X-Message-Id", "sg-1"))
        .mount(&sendgrid)
        .await;
    let app = TestApp::builder()
        .env("ENVIRONMENT", "production")
        .env("SECRET_KEY", "a-test-secret-that-is-not-the-default")
        .env("ALLOWED_HOSTS", "127.0.0.1")
        .env("LOG_FORMAT", "text")
        .env("QUEUE_MAX_RETRIES", "0")
        .real_providers()
        .env("EMAIL_PROVIDERS", "sendgrid")
        .env("SENDGRID_API_KEY", "SG.test-key")
        .env("SENDGRID_API_BASE", &sendgrid.uri())
        .spawn()
        .await;
    assert!(!app.settings.attachments.allow_private_urls);
    let (key, new) = NewApiKey::generate("hostile-urls").expect("key");
    app.components
        .store
        .create_api_key(&new)
        .await
        .expect("store the key");
    Production { app, key, sendgrid }
}

impl Production {
    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .app
            .client
            .post(self.app.url(path))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn message(&self, id: &str) -> Value {
        self.app
            .client
            .get(self.app.url(&format!("/api/v1/messages/{id}")))
            .bearer_auth(&self.key)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json")
    }

    /// Runs the worker until the message is `failed` or `sent`.
    async fn outcome(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let handled = self.app.worker.process_once().await.expect("worker step");
            let m = self.message(id).await;
            if m["status"] == "failed" || m["status"] == "sent" {
                return m;
            }
            assert!(Instant::now() < deadline, "no outcome for {id}: {m}");
            if handled == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

fn email(attachment: &str) -> Value {
    json!({
        "from": "news@example.com", "to": "ann@example.org", "subject": "Report",
        "body": "Hello", "attachments": [attachment]
    })
}

#[tokio::test]
async fn literal_private_attachment_hosts_are_refused_with_422_at_accept_time() {
    let p = production().await;
    let listener = Loopback::start().await;
    let port = listener.port;
    for url in [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/".to_owned(),
        format!("http://127.0.0.1:{port}/secret"),
        format!("http://[::1]:{port}/secret"),
        format!("http://localhost:{port}/secret"),
        format!("http://127.1:{port}/secret"),
    ] {
        let (status, body) = p.post("/api/v1/messages/send", &email(&url)).await;
        assert_eq!(status, 422, "{url}: {body}");
        assert_eq!(body["error"], "validation_error", "{url}: {body}");
        assert_eq!(body["details"]["field"], "attachments", "{url}: {body}");
        let (status, body) = p.post("/api/messages/email", &email(&url)).await;
        assert_eq!(status, 422, "original API, {url}: {body}");
    }
    let stored = p.app.db_count("select count(*) from messages", &[]).await;
    assert_eq!(stored, 0, "nothing was stored");
    assert_eq!(listener.hits(), 0, "the loopback listener was reached");
    println!("hostile_urls: 10 literal URLs refused at accept time, 0 hits on 127.0.0.1");
}

#[tokio::test]
async fn a_name_resolving_to_loopback_fails_at_download_without_reaching_it() {
    let test = "a_name_resolving_to_loopback_fails_at_download_without_reaching_it";
    let Some(name) = name_resolving_to_loopback().await else {
        crate::helpers::skip(
            test,
            "no name other than localhost resolves to loopback here",
        );
        return;
    };
    let p = production().await;
    let listener = Loopback::start().await;
    let url = format!("http://{name}:{}/secret", listener.port);
    let (status, body) = p.post("/api/v1/messages/send", &email(&url)).await;
    assert_eq!(status, 201, "names are resolved at download time: {body}");
    let id = body["id"].as_str().expect("id").to_owned();
    let m = p.outcome(&id).await;
    assert_eq!(m["status"], "failed", "{m}");
    assert_eq!(m["error"]["code"], "attachment_refused", "{m}");
    assert_eq!(listener.hits(), 0, "the loopback listener was reached");
    let sendgrid_calls = p.sendgrid.received_requests().await.unwrap_or_default();
    assert!(sendgrid_calls.is_empty(), "SendGrid was not called");
    println!("hostile_urls: {name} (resolves to 127.0.0.1) refused at download, 0 hits");
}

#[tokio::test]
async fn a_redirect_to_a_private_address_is_refused_without_reaching_it() {
    let listener = Loopback::start().await;
    let redirector = MockServer::start().await;
    let loopback_name = name_resolving_to_loopback().await;
    let mut targets = vec![
        format!("http://127.0.0.1:{}/secret", listener.port),
        format!("http://169.254.169.254/latest/meta-data/"),
    ];
    if let Some(name) = &loopback_name {
        targets.push(format!("http://{name}:{}/secret", listener.port));
    }
    for (i, target) in targets.iter().enumerate() {
        Mock::given(method("GET"))
            .and(path(format!("/r{i}")))
            .respond_with(ResponseTemplate::new(302).insert_header("Location", target.as_str()))
            .mount(&redirector)
            .await;
    }
    Mock::given(method("GET"))
        .and(path("/ok.txt"))
        .respond_with(ResponseTemplate::new(200).set_body_string("public"))
        .mount(&redirector)
        .await;
    let redirector_addr = *redirector.address();
    // The redirecting server stands for a public host: its name is pinned to its address.
    let client = UrlGuard::new(false)
        .client_builder()
        .resolve("files.example.com", redirector_addr)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let base = format!("http://files.example.com:{}", redirector_addr.port());

    let fetched = fetch_all(&client, &[format!("{base}/ok.txt")], 1024).await;
    assert!(
        fetched.is_ok(),
        "the allowed host itself is fetched: {fetched:?}"
    );

    for (i, target) in targets.iter().enumerate() {
        let result = fetch_all(&client, &[format!("{base}/r{i}")], 1024).await;
        match result {
            Err(ProviderError::Permanent { code, .. }) => {
                assert_eq!(code, "attachment_refused", "redirect to {target}")
            }
            other => panic!("redirect to {target} was not refused: {other:?}"),
        }
    }
    assert_eq!(listener.hits(), 0, "the loopback listener was reached");
    println!(
        "hostile_urls: {} redirects to private addresses refused, 0 hits",
        targets.len()
    );
}
