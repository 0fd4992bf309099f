//! The embedded deployment as a newcomer runs it: the real binary with no subcommand and no
//! configuration, in an empty directory. It must create its SQLite file under `./data`,
//! survive `kill -9`, and refuse process layouts that cannot work.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use messaging_service::config::ConnectionUrl;
use messaging_service::domain::MessageStatus;
use messaging_service::store::sqlite::SqliteStore;
use messaging_service::store::{MessageFilter, Page};
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{Backend, KillOnDrop, backend, sms_body};
use crate::scratch::ScratchDir;

const MESSAGES: usize = 500;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The binary with a clean environment (no DATABASE_URL, no REDIS_URL) in `dir`.
fn binary(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_messaging-service"));
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .env("LOG_LEVEL", "warn")
        .env("NO_COLOR", "1")
        // One test client sends hundreds of messages from one address.
        .env("RATE_LIMIT_ENABLED", "false");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn start(dir: &Path, env: &[(&str, String)], log: &str) -> KillOnDrop {
    let out = std::fs::File::create(dir.join(log)).unwrap();
    KillOnDrop(
        binary(dir, &[], env)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start the binary"),
    )
}

async fn wait_healthy(child: &mut Child, base: &str, dir: &Path, log: &str) {
    messaging_service::provider::install_crypto_provider();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = std::fs::read_to_string(dir.join(log)).unwrap_or_default();
            panic!("the service exited during start-up ({status}):\n{out}");
        }
        if client.get(format!("{base}/health")).send().await.is_ok() {
            return;
        }
        assert!(Instant::now() < deadline, "the service never came up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn count(client: &reqwest::Client, base: &str, status: &str) -> i64 {
    let body: Value = client
        .get(format!("{base}/api/v1/messages?status={status}&limit=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["total"].as_i64().unwrap()
}

fn sigkill(child: &mut Child) {
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[tokio::test]
async fn a_single_process_killed_mid_drain_restarts_and_sends_every_message_exactly_once() {
    if backend() == Backend::Embedded {
        crate::helpers::skip(
            "a_single_process_killed_mid_drain_restarts_and_sends_every_message_exactly_once",
            "runs in the default pass only: it starts its own embedded process",
        );
        return;
    }
    let scratch = ScratchDir::new("messaging-embedded");
    let dir = scratch.path().to_path_buf();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let sent_log = dir.join("sent.log");
    let env = [
        ("PORT", port.to_string()),
        ("MOCK_PROVIDER_SENT_LOG", sent_log.display().to_string()),
        // Slow enough that the kill lands mid-drain.
        ("MOCK_PROVIDER_LATENCY_MS", "150".to_owned()),
        ("WORKER_CONCURRENCY", "16".to_owned()),
        ("QUEUE_VISIBILITY_TIMEOUT", "2".to_owned()),
    ];
    let mut first = start(&dir, &env, "first.log");
    wait_healthy(&mut first, &base, &dir, "first.log").await;
    assert!(
        dir.join("data/messaging.db").exists(),
        "the default database is a file under ./data"
    );

    // A second copy on the same data refuses to start rather than race the first.
    let second = binary(&dir, &[], &[("PORT", free_port().to_string())])
        .output()
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("already using"), "{stderr}");

    let client = reqwest::Client::new();
    let sends = (0..MESSAGES).map(|i| {
        let client = client.clone();
        let url = format!("{base}/api/v1/messages/send");
        async move {
            let mut body = sms_body();
            body["body"] = Value::from(format!("message {i}"));
            let resp = client.post(url).json(&body).send().await.unwrap();
            assert_eq!(resp.status(), 201);
            let m: Value = resp.json().await.unwrap();
            m["id"].as_str().unwrap().parse::<Uuid>().unwrap()
        }
    });
    let ids: Vec<Uuid> = futures_util::future::join_all(sends).await;
    let ids: HashSet<Uuid> = ids.into_iter().collect();
    assert_eq!(ids.len(), MESSAGES);

    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&client, &base, "sent").await < 100 {
        assert!(Instant::now() < deadline, "delivery never got going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sigkill(&mut first);

    // What the database says at the moment of the kill.
    let store = SqliteStore::open(
        &ConnectionUrl::new(format!(
            "sqlite://{}",
            dir.join("data/messaging.db").display()
        )),
        1,
    )
    .await
    .unwrap();
    let at_kill = |status| {
        let store = store.clone();
        async move {
            use messaging_service::store::MessageStore;
            let filter = MessageFilter {
                status: Some(status),
                ..Default::default()
            };
            let (list, total) = store
                .list_messages(
                    &filter,
                    Page {
                        limit: 1000,
                        offset: 0,
                    },
                )
                .await
                .unwrap();
            assert!(total <= 1000);
            list.into_iter().map(|m| m.id).collect::<HashSet<Uuid>>()
        }
    };
    let in_flight = at_kill(MessageStatus::Sending).await;
    let sent_before = at_kill(MessageStatus::Sent).await;
    drop(store);
    assert!(
        sent_before.len() < MESSAGES,
        "the kill must land mid-drain ({} already sent)",
        sent_before.len()
    );

    let mut again = start(&dir, &env, "second.log");
    wait_healthy(&mut again, &base, &dir, "second.log").await;
    // A new client: the old one's idle keep-alive connections went to the killed process,
    // and a request on one of them fails with a connection reset (seen once in CI).
    let client = reqwest::Client::new();
    // Sooner than the sweeper (QUEUE_SWEEP_AGE 30 s) could: start-up recovery refills the queue.
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let sent = count(&client, &base, "sent").await;
        if sent == MESSAGES as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {sent} of {MESSAGES} messages were sent after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for status in ["pending", "sending", "retry", "failed"] {
        assert_eq!(count(&client, &base, status).await, 0, "{status}");
    }

    // The provider's own record: every accepted message delivered exactly once.
    let log = std::fs::read_to_string(&sent_log).unwrap();
    let mut deliveries: HashMap<Uuid, usize> = HashMap::new();
    let mut repeats = Vec::new();
    for line in log.lines() {
        let (kind, id) = line.split_once(' ').expect("`sent <id>` or `repeat <id>`");
        let id: Uuid = id.parse().unwrap();
        assert!(
            ids.contains(&id),
            "the provider saw an unknown message {id}"
        );
        match kind {
            "sent" => *deliveries.entry(id).or_default() += 1,
            "repeat" => repeats.push(id),
            other => panic!("unexpected line kind {other}"),
        }
    }
    assert_eq!(deliveries.len(), MESSAGES, "every message was delivered");
    assert!(
        deliveries.values().all(|n| *n == 1),
        "no message was delivered twice"
    );
    eprintln!(
        "killed with {} sent and {} in flight; {} repeated provider requests after the restart",
        sent_before.len(),
        in_flight.len(),
        repeats.len()
    );
    // A repeated request can only be for a message whose outcome the kill interrupted:
    // one recorded as sent before the kill must never reach the provider again.
    for id in &repeats {
        assert!(
            in_flight.contains(id) && !sent_before.contains(id),
            "message {id} was sent again although it was not in flight at the kill"
        );
    }

    sigterm(&again);
    let status = again.wait().unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    let banner = std::fs::read_to_string(dir.join("first.log")).unwrap();
    assert!(
        banner.contains(&format!("listening on http://localhost:{port}")),
        "{banner}"
    );
    assert!(banner.contains("in-process"), "{banner}");
    assert!(banner.contains("curl -X POST"), "{banner}");
}

#[tokio::test]
async fn serve_and_worker_refuse_the_in_process_queue_and_say_what_to_do() {
    let scratch = ScratchDir::new("messaging-embedded");
    let dir = scratch.path().to_path_buf();
    for role in ["serve", "worker"] {
        let out = binary(
            &dir,
            &[role],
            &[("DATABASE_URL", "sqlite://data/messaging.db".to_owned())],
        )
        .output()
        .unwrap();
        assert!(!out.status.success(), "{role} must not start");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("REDIS_URL"), "{role}: {stderr}");
        assert!(stderr.contains("no subcommand"), "{role}: {stderr}");
    }
}

#[tokio::test]
async fn after_a_restart_recovery_refills_the_in_process_queue_from_the_database() {
    use messaging_service::domain::{ErrorInfo, NewMessage, OutboundContent};
    use messaging_service::store::{MessageStore, Outcome};
    let scratch = ScratchDir::new("messaging-embedded");
    let dir = scratch.path().to_path_buf();
    let url = ConnectionUrl::new(format!("sqlite://{}", dir.join("m.db").display()));
    let new = || {
        NewMessage::outbound(OutboundContent {
            from: Some("+15551234567".into()),
            to: Some("+15559876543".into()),
            body: Some("hi".into()),
            ..Default::default()
        })
        .unwrap()
    };
    // Before the "restart": one message accepted, one waiting for a retry an hour away.
    let (pending, waiting) = (new(), new());
    {
        let store = SqliteStore::open(&url, 1).await.unwrap();
        store
            .insert_messages(&[pending.clone(), waiting.clone()])
            .await
            .unwrap();
        let claim = store
            .claim(&[waiting.id], Duration::from_secs(60))
            .await
            .unwrap();
        let retry = Outcome::Retry {
            id: waiting.id,
            provider: "mock".into(),
            error: ErrorInfo {
                code: "500".into(),
                message: "later".into(),
            },
            next_attempt_at: time::OffsetDateTime::now_utc() + Duration::from_secs(3600),
        };
        store.record_outcomes(claim.token, &[retry]).await.unwrap();
    }

    let settings = messaging_service::config::Settings::from_env(
        &messaging_service::config::Env::from_pairs([
            ("DATABASE_URL", url.expose()),
            ("MOCK_PROVIDER_LATENCY_MS", "0"),
        ]),
    )
    .unwrap();
    let components = messaging_service::app::Components::from_settings(&settings)
        .await
        .unwrap();
    assert_eq!(components.queue.backend(), "in-process");
    let worker = components.worker(&settings);
    assert_eq!(worker.recover().await.unwrap(), 2);
    let depths = components.queue.depths().await.unwrap();
    assert_eq!((depths.sms, depths.delayed), (1, 1));
    assert_eq!(worker.process_once().await.unwrap(), 1);
    let m = components
        .store
        .get_message(pending.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.status, MessageStatus::Sent);
    let w = components
        .store
        .get_message(waiting.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w.status, MessageStatus::Retry, "still waiting for its time");
}
