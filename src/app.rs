//! Wiring: backends chosen from settings, the HTTP application, and the worker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{QueueBackend, Settings};
use crate::http::{AppState, router};
use crate::ingest::Ingestor;
use crate::provider::Providers;
use crate::provider::mock::MockProvider;
use crate::queue::Queue;
use crate::queue::in_process::InProcessQueue;
use crate::queue::redis::RedisQueue;
use crate::store::Store;
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::worker::{Deliverer, Worker};

/// How long one provider call may take before it counts as a transient timeout.
pub const PROVIDER_TIMEOUT: Duration = Duration::from_secs(30);

/// The backends a process runs on.
#[derive(Clone)]
pub struct Components {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub providers: Providers,
}

impl Components {
    /// The store chosen by the `DATABASE_URL` scheme (PostgreSQL or a SQLite file, migrated)
    /// and the queue chosen by the settings (Redis or in-process), with the mock providers.
    pub async fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let queue: Arc<dyn Queue> = match settings.queue_backend {
            QueueBackend::Redis => Arc::new(RedisQueue::new(
                &settings.redis_url,
                &settings.queue.key_prefix,
            )?),
            QueueBackend::InProcess => Arc::new(InProcessQueue::new()),
        };
        let store = connect_store(settings).await?;
        let providers = Providers::all(Arc::new(MockProvider::from_settings(
            &settings.mock_provider,
        )?));
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
            provider_timeout: PROVIDER_TIMEOUT,
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
        let addr = format!("{}:{}", settings.host, settings.port);
        let listener = TcpListener::bind(&addr).await.with_context(|| {
            format!("cannot listen on {addr} (is another process using the port? try `make stop`)")
        })?;
        let ingest = Ingestor::start(
            components.store.clone(),
            components.queue.clone(),
            settings.ingest_batch_size,
            settings.ingest_writers,
            !settings.sync_message_processing,
        );
        let state = AppState {
            deliverer: components.deliverer(&settings),
            store: components.store,
            queue: components.queue,
            ingest,
            settings: Arc::new(settings),
        };
        Ok(Self { listener, state })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Serves until `shutdown` is cancelled, then finishes in-flight requests.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let app = router(self.state).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .context("HTTP server failed")
    }
}
