//! The test harness: `TestApp` runs the real API in-process on port 0 against a fresh
//! PostgreSQL database and its own Redis key prefix, with a scripted provider, and offers
//! a typed method per endpoint plus deterministic queue draining.
//!
//! `TEST_BACKEND=embedded` runs the same tests on the embedded deployment instead: a fresh
//! SQLite file and the in-process queue (`make test` runs the suite both ways). Tests of
//! PostgreSQL- or Redis-only behaviour skip there (`requires_postgres_and_redis`), printing
//! `SKIPPED <test>: <why>` past the output capture (`skip`).
//!
//! The scratch database, key prefix and directory are guards (`crate::scratch`): they are
//! removed when the `TestApp` drops, also when a test panics or its set-up fails half-way.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use messaging_service::app::{Application, Components};
use messaging_service::config::{ConnectionUrl, Env, Settings};
use messaging_service::domain::{Message, MessageStatus};
use messaging_service::provider::{Provider, ProviderError, Providers, Receipt};
use messaging_service::queue::Queue;
use messaging_service::queue::in_process::InProcessQueue;
use messaging_service::queue::redis::RedisQueue;
use messaging_service::store::Store;
use messaging_service::store::postgres::PgStore;
use messaging_service::store::sqlite::SqliteStore;
use messaging_service::worker::Worker;
use serde_json::{Value, json};
use sqlx::Connection;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::scratch::{ScratchDatabase, ScratchDir, ScratchPrefix};

pub const REDIS_ADDR: &str = "127.0.0.1:6379";
pub const PG_ADDR: &str = "127.0.0.1:5432";

/// The deployment the suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL and Redis Streams (the default).
    PostgresRedis,
    /// A SQLite file and the in-process queue (`TEST_BACKEND=embedded`).
    Embedded,
}

pub fn backend() -> Backend {
    match std::env::var("TEST_BACKEND").as_deref() {
        Ok("embedded") => Backend::Embedded,
        Ok("") | Ok("postgres") | Err(_) => Backend::PostgresRedis,
        Ok(other) => panic!("TEST_BACKEND={other:?} must be embedded or postgres"),
    }
}

/// For tests of PostgreSQL or Redis behaviour (cutting their connections, reading Redis keys,
/// separate processes sharing a queue): false, after saying so (`skip`), on the embedded
/// backend.
pub fn requires_postgres_and_redis(test: &str) -> bool {
    if backend() == Backend::Embedded {
        skip(
            test,
            "not applicable to the embedded backend (PostgreSQL/Redis only)",
        );
        return false;
    }
    true
}

/// Says that `test` checks nothing on this pass, and why: `SKIPPED <test>: <why>` on stderr,
/// written past the test harness's output capture so that it shows beside the `ok`.
pub fn skip(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {why}");
}

/// A provider whose answers a test scripts, and which counts every call.
#[derive(Default)]
pub struct FakeProvider {
    /// The provider name the service records (default `fake`).
    name: Option<String>,
    script: Mutex<VecDeque<Result<(), ProviderError>>>,
    calls: Mutex<Vec<Uuid>>,
}

impl FakeProvider {
    /// Next calls fail with these errors, in order; afterwards calls succeed.
    pub fn fail_next(&self, errors: impl IntoIterator<Item = ProviderError>) {
        self.script
            .lock()
            .unwrap()
            .extend(errors.into_iter().map(Err));
    }

    pub fn calls_for(&self, id: Uuid) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| **c == id)
            .count()
    }

    pub fn total_calls(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

pub fn transient(code: &str) -> ProviderError {
    ProviderError::Transient {
        code: code.into(),
        message: format!("fake transient {code}"),
        retry_after: None,
    }
}

pub fn permanent(code: &str) -> ProviderError {
    ProviderError::Permanent {
        code: code.into(),
        message: format!("fake permanent {code}"),
    }
}

#[async_trait]
impl Provider for FakeProvider {
    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("fake")
    }

    async fn send(&self, message: &Message) -> Result<Receipt, ProviderError> {
        self.calls.lock().unwrap().push(message.id);
        let next = self.script.lock().unwrap().pop_front();
        match next {
            Some(Err(e)) => Err(e),
            _ => Ok(Receipt::new(format!("FAKE{}", Uuid::new_v4().simple()))),
        }
    }
}

/// A child process (the real binary, a fake server) that is killed and reaped when the test
/// ends, passed or failed, so that none lives on against a dropped database or key prefix.
pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP proxy the test can cut and restore, standing between the service and a dependency.
pub struct Proxy {
    pub addr: String,
    open: Arc<AtomicBool>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Proxy {
    pub async fn start(upstream: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr").to_string();
        let open = Arc::new(AtomicBool::new(true));
        let (tx, _) = tokio::sync::watch::channel(0u64);
        let generation = Arc::new(tx);
        let (o, g) = (open.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !o.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cut = g.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self {
            addr,
            open,
            generation,
        }
    }

    /// Refuses new connections and kills the open ones.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub settings: Settings,
    pub components: Components,
    pub provider: Arc<FakeProvider>,
    pub worker: Worker,
    pub prefix: String,
    /// The scratch database (on the embedded backend: the name of the SQLite directory).
    pub db_name: String,
    pub redis_proxy: Option<Proxy>,
    pub db_proxy: Option<Proxy>,
    /// The in-process queue, on the embedded backend.
    pub in_process: Option<Arc<InProcessQueue>>,
    /// The directory holding the SQLite file, on the embedded backend.
    pub data_dir: Option<std::path::PathBuf>,
    /// The same service as `address`, for driving requests in-process.
    pub router: axum::Router,
    shutdown: CancellationToken,
    /// Declared last so that they drop after everything that uses them.
    _scratch: Scratch,
}

/// What a `TestApp` removes when it drops: its database (PostgreSQL) or directory (SQLite)
/// and its Redis key prefix.
struct Scratch {
    storage: ScratchStorage,
    prefix: ScratchPrefix,
}

enum ScratchStorage {
    Postgres(ScratchDatabase),
    Sqlite(ScratchDir),
}

#[derive(Default)]
pub struct TestAppBuilder {
    env: HashMap<String, String>,
    redis_proxy: bool,
    db_proxy: bool,
    mock_provider: bool,
    real_providers: bool,
    provider_name: Option<String>,
}

impl TestAppBuilder {
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.insert(k.into(), v.into());
        self
    }

    /// Route Redis traffic of the service through a proxy the test controls.
    pub fn redis_proxy(mut self) -> Self {
        self.redis_proxy = true;
        self
    }

    pub fn db_proxy(mut self) -> Self {
        self.db_proxy = true;
        self
    }

    /// Name the scripted provider (its metrics series are then this test's alone).
    pub fn provider_name(mut self, name: &str) -> Self {
        self.provider_name = Some(name.into());
        self
    }

    /// Use the built-in mock provider (configured by env) instead of the scripted fake.
    pub fn mock_provider(mut self) -> Self {
        self.mock_provider = true;
        self
    }

    /// Use the providers the settings configure (`SMS_PROVIDERS`, `EMAIL_PROVIDERS`, ...),
    /// paced through Redis, exactly as the binary does.
    pub fn real_providers(mut self) -> Self {
        self.real_providers = true;
        self
    }

    pub async fn spawn(self) -> TestApp {
        messaging_service::provider::install_crypto_provider();
        // `TEST_LOG=1 cargo test ...` shows the service's logs while debugging a test.
        if std::env::var("TEST_LOG").is_ok() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter("info,sqlx=warn")
                .with_test_writer()
                .try_init();
        }
        let embedded = backend() == Backend::Embedded;
        assert!(
            !(embedded && (self.redis_proxy || self.db_proxy)),
            "proxies cut PostgreSQL or Redis; guard this test with requires_postgres_and_redis"
        );
        // Guards first: whatever fails below, what was made is removed again.
        let scratch = Scratch {
            prefix: ScratchPrefix::new("test"),
            storage: if embedded {
                ScratchStorage::Sqlite(ScratchDir::new("messaging-test"))
            } else {
                ScratchStorage::Postgres(ScratchDatabase::create("test").await)
            },
        };
        let (db_name, data_dir) = match &scratch.storage {
            ScratchStorage::Postgres(db) => (db.name().to_owned(), None),
            ScratchStorage::Sqlite(dir) => (
                dir.path()
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                Some(dir.path().to_path_buf()),
            ),
        };

        let redis_proxy = if self.redis_proxy {
            Some(Proxy::start(REDIS_ADDR).await)
        } else {
            None
        };
        let db_proxy = if self.db_proxy {
            Some(Proxy::start(PG_ADDR).await)
        } else {
            None
        };
        let redis_addr = redis_proxy
            .as_ref()
            .map(|p| p.addr.clone())
            .unwrap_or_else(|| REDIS_ADDR.into());
        let db_addr = db_proxy
            .as_ref()
            .map(|p| p.addr.clone())
            .unwrap_or_else(|| PG_ADDR.into());
        let prefix = scratch.prefix.as_str().to_owned();

        let mut env: HashMap<String, String> = [
            ("HOST", "127.0.0.1".to_owned()),
            ("PORT", "0".to_owned()),
            (
                "DATABASE_URL",
                match &scratch.storage {
                    ScratchStorage::Postgres(db) => db.url_at(&db_addr),
                    ScratchStorage::Sqlite(dir) => dir.sqlite_url(),
                },
            ),
            ("REDIS_URL", format!("redis://{redis_addr}/0")),
            (
                "QUEUE_BACKEND",
                if embedded { "in-process" } else { "redis" }.to_owned(),
            ),
            ("QUEUE_KEY_PREFIX", prefix.clone()),
            ("MOCK_PROVIDER_LATENCY_MS", "0".to_owned()),
            ("QUEUE_RETRY_DELAY", "0.01".to_owned()),
            ("QUEUE_MAX_RETRY_DELAY", "0.05".to_owned()),
            ("QUEUE_BLOCK", "0.05".to_owned()),
            ("DB_MAX_CONNECTIONS", "5".to_owned()),
            ("INGEST_WRITERS", "2".to_owned()),
            ("LOG_LEVEL", "warn".to_owned()),
            // Tests that are about rate limiting turn it on themselves.
            ("RATE_LIMIT_ENABLED", "false".to_owned()),
            // Tests bring their own providers; production-mode tests must not trip on that.
            ("ALLOW_MOCK_PROVIDERS", "true".to_owned()),
            // Production-mode tests need a status callback secret of their own.
            ("STATUS_CALLBACK_SECRET", EVENTS_TEST_SECRET.to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(self.env);
        let settings = Settings::from_env(&Env::from_pairs(env)).expect("test settings are valid");

        let (store, queue, in_process): (Arc<dyn Store>, Arc<dyn Queue>, _) = if embedded {
            let store = SqliteStore::open(&settings.database_url, settings.db_max_connections)
                .await
                .expect("open the test SQLite file");
            let queue = Arc::new(InProcessQueue::new());
            (Arc::new(store), queue.clone(), Some(queue))
        } else {
            let store = PgStore::connect_lazy(&settings.database_url, settings.db_max_connections)
                .expect("pool");
            store.migrate().await.expect("migrate test database");
            let queue = RedisQueue::new(&settings.redis_url, &prefix).expect("redis queue");
            queue.ensure_groups().await.expect("consumer groups");
            (Arc::new(store), Arc::new(queue), None)
        };
        let provider = Arc::new(FakeProvider {
            name: self.provider_name,
            ..FakeProvider::default()
        });
        let providers = if self.real_providers {
            let pacer: Arc<dyn messaging_service::provider::pacing::Pacer> = if embedded {
                Arc::new(messaging_service::provider::pacing::LocalPacer::default())
            } else {
                Arc::new(
                    messaging_service::provider::pacing::RedisPacer::new(
                        &settings.redis_url,
                        &prefix,
                    )
                    .expect("pacer"),
                )
            };
            messaging_service::provider::build_providers(&settings, pacer)
                .expect("providers from settings")
        } else if self.mock_provider {
            Providers::all(Arc::new(
                messaging_service::provider::mock::MockProvider::new(
                    settings.mock_provider.clone(),
                ),
            ))
        } else {
            Providers::all(provider.clone())
        };
        let components = Components {
            store,
            queue,
            providers,
        };
        let worker = components.worker(&settings);

        let app = Application::build(settings.clone(), components.clone())
            .await
            .expect("build app");
        let address = format!("http://127.0.0.1:{}", app.port());
        let router = app.router();
        let shutdown = CancellationToken::new();
        tokio::spawn(app.run_until_stopped(shutdown.clone()));

        TestApp {
            address,
            client: reqwest::Client::new(),
            settings,
            components,
            provider,
            worker,
            prefix,
            db_name,
            redis_proxy,
            db_proxy,
            in_process,
            data_dir,
            router,
            shutdown,
            _scratch: scratch,
        }
    }
}

/// The `STATUS_CALLBACK_SECRET` of every test service.
pub const EVENTS_TEST_SECRET: &str = "whsec_dGVzdC1vbmx5LXN0YXR1cy1jYWxsYmFjay1zZWNyZXQ=";

pub async fn spawn_app() -> TestApp {
    TestApp::builder().spawn().await
}

pub fn sms_body() -> Value {
    json!({"from": "+15551234567", "to": "+15559876543", "type": "sms", "body": "Test"})
}

impl TestApp {
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder::default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn post_send(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/messages/send"))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_send_with_key(&self, body: &Value, key: &str) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/messages/send"))
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: &str,
    ) -> reqwest::Response {
        let mut req = self.client.post(self.url(path)).body(body.to_owned());
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        req.send().await.expect("request")
    }

    /// Sends and returns the created message's JSON, asserting 201.
    pub async fn send(&self, body: &Value) -> Value {
        let resp = self.post_send(body).await;
        assert_eq!(resp.status(), 201, "send should be accepted");
        resp.json().await.expect("json")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let resp = self.get(path).await;
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn message(&self, id: &str) -> Value {
        let (status, body) = self.get_json(&format!("/api/v1/messages/{id}")).await;
        assert_eq!(status, 200, "message {id} should exist");
        body
    }

    pub async fn events(&self, id: &str) -> Vec<Value> {
        let (status, body) = self
            .get_json(&format!("/api/v1/messages/{id}/events"))
            .await;
        assert_eq!(status, 200);
        body["events"].as_array().cloned().unwrap_or_default()
    }

    /// Runs the worker step by step until the message reaches `status` (or panics after 15 s).
    pub async fn drain_until(&self, id: &str, status: MessageStatus) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let handled = self.worker.process_once().await.expect("worker step");
            let m = self.message(id).await;
            if m["status"] == status.as_str() {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "message {id} never reached {status}; last: {m}"
            );
            if handled == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(format!("redis://{REDIS_ADDR}/0"))
            .expect("client")
            .get_multiplexed_async_connection()
            .await
            .expect("direct redis connection")
    }

    /// The backlog of a stream (`message_queue:sms`...): its `XLEN`, or the in-process
    /// queue's equivalent.
    pub async fn xlen(&self, stream: &str) -> u64 {
        if self.in_process.is_some() {
            let d = self.components.queue.depths().await.expect("depths");
            return match stream {
                "message_queue:sms" => d.sms,
                "message_queue:mms" => d.mms,
                "message_queue:email" => d.email,
                "message_queue:dead_letter" => d.dead_letter,
                other => panic!("no in-process equivalent of {other}"),
            };
        }
        let mut conn = self.redis().await;
        redis::cmd("XLEN")
            .arg(format!("{}{stream}", self.prefix))
            .query_async(&mut conn)
            .await
            .expect("XLEN")
    }

    /// The message ids recorded as dead letters, oldest first (through the `Queue` trait,
    /// so the same on Redis and in process).
    pub async fn dead_letters(&self) -> Vec<String> {
        self.components
            .queue
            .dead_letters(None, 10_000)
            .await
            .expect("dead letters")
            .iter()
            .filter_map(|e| e.message_id.map(|id| id.to_string()))
            .collect()
    }

    /// The first column of every row of `sql`, read as text. `sql` must read the same on
    /// PostgreSQL and SQLite: `$1`… text parameters, ids compared as text
    /// (`cast(conversation_id as text) = $1`).
    pub async fn db_strings(&self, sql: &str, binds: &[&str]) -> Vec<String> {
        self.db_column(sql, binds).await
    }

    /// The single number `sql` answers (see `db_strings`).
    pub async fn db_count(&self, sql: &str, binds: &[&str]) -> i64 {
        let rows: Vec<i64> = self.db_column(sql, binds).await;
        assert_eq!(rows.len(), 1, "{sql} answers one row");
        rows[0]
    }

    async fn db_column<T>(&self, sql: &str, binds: &[&str]) -> Vec<T>
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
        T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
        T: Send + Unpin,
    {
        let url = self.database_url().expose();
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        if self.data_dir.is_some() {
            let mut conn = sqlx::SqliteConnection::connect(url)
                .await
                .expect("open the test SQLite file");
            let mut q = sqlx::query_scalar::<_, T>(sql);
            for b in binds {
                q = q.bind(*b);
            }
            return q
                .fetch_all(&mut conn)
                .await
                .expect("query the test database");
        }
        let mut conn = sqlx::PgConnection::connect(url)
            .await
            .expect("connect to the test database");
        let mut q = sqlx::query_scalar::<_, T>(sql);
        for b in binds {
            q = q.bind(*b);
        }
        q.fetch_all(&mut conn)
            .await
            .expect("query the test database")
    }

    pub fn database_url(&self) -> &ConnectionUrl {
        &self.settings.database_url
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // The server stops; then the fields drop, the scratch guards last (see `Scratch`).
        self.shutdown.cancel();
    }
}
