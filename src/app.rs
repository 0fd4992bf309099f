//! Wiring: backends chosen from settings, the HTTP application, and the worker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{QueueBackend, Settings};
use crate::http::security::SecurityState;
use crate::http::{AppState, Shared, router};
use crate::provider::build_providers;
use crate::provider::pacing::{LocalPacer, Pacer, RedisPacer};
use crate::queue::Queue;
use crate::queue::in_process::InProcessQueue;
use crate::queue::redis::RedisQueue;
use crate::service::ingest::Ingestor;
use crate::store::Store;
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::worker::{Deliverer, Worker};

/// The longest one delivery attempt may take, all providers of the channel tried: each
/// provider request (and attachment fetch) has its own `PROVIDER_TIMEOUT`, plus the wait
/// for a pacing slot. A safety net around the adapters' own timeouts.
pub fn delivery_timeout(settings: &Settings) -> Duration {
    let p = &settings.providers;
    let longest_chain = p.sms.len().max(p.email.len()) as u32;
    p.request_timeout * (2 * longest_chain) + p.pacing.max_wait + Duration::from_secs(1)
}

/// The backends a process runs on.
#[derive(Clone)]
pub struct Components {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub providers: crate::provider::Providers,
}

impl Components {
    /// The store chosen by the `DATABASE_URL` scheme (PostgreSQL or a SQLite file, migrated),
    /// the queue chosen by the settings (Redis or in-process), and the configured providers,
    /// paced through Redis when the queue is Redis and in process otherwise.
    pub async fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let (queue, pacer): (Arc<dyn Queue>, Arc<dyn Pacer>) = match settings.queue_backend {
            QueueBackend::Redis => (
                Arc::new(RedisQueue::new(
                    &settings.redis_url,
                    &settings.queue.key_prefix,
                )?),
                Arc::new(RedisPacer::new(
                    &settings.redis_url,
                    &settings.queue.key_prefix,
                )?),
            ),
            QueueBackend::InProcess => (
                Arc::new(InProcessQueue::new()),
                Arc::new(LocalPacer::default()),
            ),
        };
        let store = connect_store(settings).await?;
        let providers = build_providers(settings, pacer)?;
        Ok(Self {
            store,
            queue,
            providers,
        })
    }

    pub fn deliverer(&self, settings: &Settings) -> Deliverer {
        Deliverer {
            store: self.store.clone(),
            queue: self.queue.clone(),
            providers: self.providers.clone(),
            settings: settings.queue.clone(),
            delivery: settings.delivery.clone(),
            provider_timeout: delivery_timeout(settings),
            outcomes: crate::worker::OutcomeWriters::start(
                self.store.clone(),
                settings.outcome_writers(),
            ),
        }
    }

    pub fn worker(&self, settings: &Settings) -> Worker {
        Worker::new(self.deliverer(settings))
    }
}

/// Opens the configured database and applies its migrations.
pub async fn connect_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    if settings.database_is_sqlite() {
        // With the in-process queue this process must be the file's only user.
        let store = if settings.queue_backend == QueueBackend::InProcess {
            SqliteStore::open_exclusive(&settings.database_url, settings.db_max_connections).await?
        } else {
            SqliteStore::open(&settings.database_url, settings.db_max_connections).await?
        };
        return Ok(Arc::new(store));
    }
    let store = PgStore::connect_lazy(&settings.database_url, settings.db_max_connections)?;
    store.migrate().await.with_context(|| {
        format!(
            "cannot prepare PostgreSQL at {} (is it running? `make services` starts it and creates the role and database)",
            settings.database_url.redacted()
        )
    })?;
    Ok(Arc::new(store))
}

/// The HTTP API, bound and ready to serve.
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Binds `HOST:PORT` (port 0 picks a free port) and prepares the state.
    pub async fn build(settings: Settings, components: Components) -> anyhow::Result<Self> {
        crate::observability::handle();
        let addr = format!("{}:{}", settings.host, settings.port);
        let listener = TcpListener::bind(&addr).await.with_context(|| {
            format!("cannot listen on {addr} (is another process using the port? try `make stop`)")
        })?;
        let ingest = Ingestor::start(
            components.store.clone(),
            components.queue.clone(),
            settings.ingest_batch_size,
            settings.ingest_writers(),
            !settings.sync_message_processing,
        );
        let security = SecurityState::for_deployment(&settings, components.queue.as_ref())?;
        let webhook_permits = Arc::new(tokio::sync::Semaphore::new(
            (settings.db_max_connections as usize / 2).max(1),
        ));
        let state = AppState::new(Shared {
            security,
            webhook_permits,
            deliverer: components.deliverer(&settings),
            store: components.store,
            queue: components.queue,
            ingest,
            settings: Arc::new(settings),
            startup: Default::default(),
        });
        Ok(Self { listener, state })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The full middleware stack and routes, for driving requests in-process.
    pub fn router(&self) -> axum::Router {
        router(self.state.clone())
    }

    /// Serves until `shutdown` is cancelled, then finishes in-flight requests.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let sampler = crate::observability::spawn_sampler(
            self.state.store.clone(),
            self.state.queue.clone(),
            self.state.settings.metrics_sample_interval,
            shutdown.child_token(),
        );
        let search_index =
            crate::service::search_index::spawn(self.state.store.clone(), shutdown.child_token());
        self.state.startup.finish();
        crate::http::server::serve(self.listener, router(self.state), shutdown).await;
        sampler.abort();
        search_index.abort();
        Ok(())
    }
}
