//! Wiring: backends chosen from settings, the HTTP application, and the worker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::http::{AppState, router};
use crate::ingest::Ingestor;
use crate::provider::Providers;
use crate::provider::mock::MockProvider;
use crate::queue::Queue;
use crate::queue::redis::RedisQueue;
use crate::store::Store;
use crate::store::postgres::PgStore;
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
    /// PostgreSQL and Redis from the settings (migrated), with the mock providers.
    pub async fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let store = PgStore::connect_lazy(&settings.database_url, settings.db_max_connections)?;
        store.migrate().await.with_context(|| {
            format!(
                "cannot prepare PostgreSQL at {} (is it running? `make services` starts it and creates the role and database)",
                settings.database_url.redacted()
            )
        })?;
        let queue = RedisQueue::new(&settings.redis_url, &settings.queue.key_prefix)?;
        let providers = Providers::all(Arc::new(MockProvider::new(settings.mock_provider.clone())));
        Ok(Self {
            store: Arc::new(store),
            queue: Arc::new(queue),
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
        let webhook_permits = Arc::new(tokio::sync::Semaphore::new(
            (settings.db_max_connections as usize / 2).max(1),
        ));
        let state = AppState {
            webhook_permits,
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
