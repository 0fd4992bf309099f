//! The `messaging-service` binary: `serve` (API), `worker`, both at once (the default, which
//! runs embedded on SQLite with an in-process queue unless backends are configured), and
//! database tools.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// mimalloc instead of the system allocator: a request allocates and frees many small
/// buffers, and glibc's malloc and free took about 14% of the API's CPU at full load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use messaging_service::app::{Application, Components};
use messaging_service::cli::keys;
use messaging_service::config::{Env, LogFormat, QueueBackend, Settings};
use messaging_service::observability;
use messaging_service::store::postgres::PgStore;
use messaging_service::store::sqlite::SqliteStore;

#[derive(Parser)]
#[command(
    name = "messaging-service",
    version,
    about = "Send and receive SMS, MMS and email through one HTTP API"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API
    Serve,
    /// Run the background worker that delivers queued messages
    Worker,
    /// Run the API and a worker in one process (the default; embedded on SQLite with an
    /// in-process queue unless DATABASE_URL / REDIS_URL are set)
    All,
    /// Apply database migrations
    Migrate,
    /// Drop every table and apply the migrations again (destroys all data)
    DbReset,
    /// Inspect and redrive the dead-letter queue
    #[command(subcommand)]
    Dlq(messaging_service::cli::dlq::DlqCommand),
    /// List and redrive failed webhook deliveries
    #[command(subcommand)]
    Events(messaging_service::cli::events::EventsCommand),
    /// Manage API keys (required on /api routes in production)
    Keys {
        #[command(subcommand)]
        action: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key; it is printed once and only its hash is stored
    Create {
        #[arg(long)]
        name: String,
    },
    /// List keys (id, name, first characters, status); never the keys themselves
    List,
    /// Revoke a key by its id
    Revoke { id: String },
}

fn main() -> ExitCode {
    messaging_service::provider::install_crypto_provider();
    let cli = Cli::parse();
    let settings = match Settings::from_env(&Env::load()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    observability::logging::init(&settings);
    // Before any work starts, so no early event is recorded into the void.
    observability::export_known_series(&settings.providers);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let json_logs = settings.log_format == LogFormat::Json;
    let command = cli.command.unwrap_or(Command::All);
    let settings = match command {
        Command::All => settings.single_process(),
        _ => settings,
    };
    match runtime.block_on(run(command, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %format!("{e:#}"), "exiting");
            // With JSON logs the event above is the report: stderr may be the same collector.
            if !json_logs {
                let _ = writeln!(std::io::stderr(), "error: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Cancels the token on SIGTERM or Ctrl-C.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = ctrl_c => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = ctrl_c.await;
                }
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        // Cancel first: shutting down must not wait on (or depend on) a log line.
        t.cancel();
        info!("shutdown signal received");
    });
    token
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Migrate if settings.database_is_sqlite() => {
            SqliteStore::open(&settings.database_url, 1).await?;
            println!("migrations applied to {}", settings.database_url.redacted());
            Ok(())
        }
        Command::DbReset if settings.database_is_sqlite() => {
            let store = SqliteStore::open(&settings.database_url, 1).await?;
            store.reset().await?;
            println!(
                "database {} reset: all tables dropped and recreated",
                settings.database_url.redacted()
            );
            Ok(())
        }
        Command::Migrate => {
            let store = PgStore::connect_lazy(&settings.database_url, 2)?;
            store.migrate().await?;
            info!(database = %settings.database_url.redacted(), "migrations applied");
            println!("migrations applied to {}", settings.database_url.redacted());
            Ok(())
        }
        Command::DbReset => {
            let store = PgStore::connect_lazy(&settings.database_url, 2)?;
            store.reset().await?;
            println!(
                "database {} reset: all tables dropped and recreated",
                settings.database_url.redacted()
            );
            Ok(())
        }
        Command::Dlq(command) => {
            refuse_dlq_in_process(&settings)?;
            let store = open_store_for_tool(&settings).await?;
            let queue = messaging_service::queue::redis::RedisQueue::new(
                &settings.redis_url,
                &settings.queue.key_prefix,
            )?;
            messaging_service::cli::dlq::run(command, store.as_ref(), &queue).await
        }
        Command::Events(command) => {
            let store = open_store_for_tool(&settings).await?;
            messaging_service::cli::events::run(command, store.as_ref(), &mut std::io::stdout())
                .await
        }
        Command::Keys { action } => {
            let store = open_store_for_tool(&settings).await?;
            let store = store.as_ref();
            let mut out = std::io::stdout();
            match action {
                KeysCommand::Create { name } => keys::create(store, &name, &mut out).await,
                KeysCommand::List => keys::list(store, &mut out).await,
                KeysCommand::Revoke { id } => keys::revoke(store, &id, &mut out).await,
            }
        }
        Command::Serve => {
            refuse_in_process_queue("serve", &settings)?;
            let components = Components::from_settings(&settings).await?;
            serve(settings, components, shutdown_on_signal(), false).await
        }
        Command::Worker => {
            refuse_in_process_queue("worker", &settings)?;
            if settings.sync_message_processing {
                warn!(
                    "SYNC_MESSAGE_PROCESSING=true: the API delivers inline; this worker only handles retries and stranded messages"
                );
            }
            let components = Components::from_settings(&settings).await?;
            let worker = components.worker(&settings);
            info!(
                queue = components.queue.backend(),
                store = components.store.backend(),
                consumer = worker.consumer(),
                metrics_port = settings.worker_metrics_port,
                "worker starting (no HTTP API; /metrics on WORKER_METRICS_PORT)"
            );
            let shutdown = shutdown_on_signal();
            start_worker_metrics(&settings, &components, &shutdown).await;
            let _events = messaging_service::events::Dispatcher::new(
                components.store.clone(),
                &settings.events,
            )?
            .spawn(shutdown.clone());
            worker.run(shutdown, settings.shutdown_grace).await
        }
        Command::All => {
            let components = Components::from_settings(&settings).await?;
            let shutdown = shutdown_on_signal();
            let worker = components.worker(&settings);
            if settings.queue_backend == QueueBackend::InProcess {
                // The queue starts empty: refill it from the database before taking work.
                worker
                    .recover()
                    .await
                    .context("recovering unfinished messages")?;
            }
            let grace = settings.shutdown_grace;
            let worker_task = tokio::spawn(worker.run(shutdown.clone(), grace));
            let _events = messaging_service::events::Dispatcher::new(
                components.store.clone(),
                &settings.events,
            )?
            .spawn(shutdown.clone());
            let served = serve(settings, components, shutdown.clone(), true).await;
            shutdown.cancel();
            worker_task.await.context("worker task panicked")??;
            served
        }
    }
}

/// The configured database (`DATABASE_URL`: PostgreSQL or a SQLite file), migrated, for an
/// operator's command. A SQLite file is opened shared: the command runs beside the service
/// using it (SQLite serialises the writes).
async fn open_store_for_tool(
    settings: &Settings,
) -> anyhow::Result<std::sync::Arc<dyn messaging_service::store::Store>> {
    if settings.database_is_sqlite() {
        return Ok(std::sync::Arc::new(
            SqliteStore::open(&settings.database_url, 2).await?,
        ));
    }
    let store = PgStore::connect_lazy(&settings.database_url, 2)?;
    store.migrate().await?;
    Ok(std::sync::Arc::new(store))
}

/// The in-process queue's dead letters live in the memory of the process that runs it: a
/// separate command cannot see or remove them. The service's HTTP API can.
fn refuse_dlq_in_process(settings: &Settings) -> anyhow::Result<()> {
    if settings.queue_backend == QueueBackend::InProcess {
        anyhow::bail!(
            "`dlq` needs the Redis queue: with the in-process queue the dead letters live in the running service's memory. \
             List failed messages with `GET /api/v1/messages?status=failed` and redrive one with \
             `POST /api/v1/messages/{{id}}/retry` on the running service, or set REDIS_URL."
        );
    }
    Ok(())
}

/// `serve` and `worker` are separate processes: they can only meet through a shared queue.
fn refuse_in_process_queue(role: &str, settings: &Settings) -> anyhow::Result<()> {
    if settings.queue_backend == QueueBackend::InProcess {
        anyhow::bail!(
            "`{role}` cannot run on the in-process queue, which only connects an API and a worker inside one process. \
             Set REDIS_URL (e.g. redis://localhost:6379) so separate processes share a Redis queue, \
             or run `messaging-service` with no subcommand (`make dev`) for API and worker in one process."
        );
    }
    Ok(())
}

/// What an operator needs on start-up: where to reach the API, what it runs on, a first
/// request. In text mode a few lines on stdout; with `LOG_FORMAT=json` one log event with
/// the facts as fields (role, url, storage, queue; the curl hint is for people), so stdout
/// (and stderr) carry nothing but JSON lines.
fn print_banner(settings: &Settings, addr: std::net::SocketAddr, with_worker: bool) {
    let host = if addr.ip().is_unspecified() || addr.ip().is_loopback() {
        "localhost".to_owned()
    } else {
        addr.ip().to_string()
    };
    let url = format!("http://{host}:{}", addr.port());
    let storage = settings.database_url.redacted();
    let queue = match settings.queue_backend {
        QueueBackend::InProcess => "in-process (durable through the database)".to_owned(),
        QueueBackend::Redis => format!("Redis Streams at {}", settings.redis_url.redacted()),
    };
    let role = if with_worker {
        "API and worker in one process"
    } else {
        "API"
    };
    if settings.log_format == LogFormat::Json {
        info!(
            role,
            url = %url,
            storage = %storage,
            queue = %queue,
            "messaging-service ({role}) listening on {url}"
        );
        return;
    }
    let first_request = format!(
        "curl -X POST {url}/api/v1/messages/send -H 'Content-Type: application/json' \\\n    \
         -d '{{\"from\":\"+15551234567\",\"to\":\"+15559876543\",\"type\":\"sms\",\"body\":\"Hello\"}}'"
    );
    let then = format!("curl '{url}/api/v1/messages?limit=1'");
    observability::logging::print(&format!(
        "messaging-service ({role}) listening on {url}\n  \
         storage: {storage}\n  \
         queue:   {queue}\n\
         Send a first message:\n  \
         {first_request}\n\
         then: {then}\n"
    ));
}

/// The worker's `/metrics` listener and sampler. A taken port is logged, not fatal: a
/// second worker on one host keeps delivering, only without its own metrics endpoint.
async fn start_worker_metrics(
    settings: &Settings,
    components: &Components,
    shutdown: &CancellationToken,
) {
    observability::spawn_sampler(
        components.store.clone(),
        components.queue.clone(),
        settings.metrics_sample_interval,
        shutdown.child_token(),
    );
    let addr = format!("{}:{}", settings.host, settings.worker_metrics_port);
    let bound = match addr.parse::<SocketAddr>() {
        Ok(a) => observability::serve_worker_metrics(a, shutdown.child_token()).await,
        Err(_) => match tokio::net::lookup_host(&addr).await.map(|mut a| a.next()) {
            Ok(Some(a)) => observability::serve_worker_metrics(a, shutdown.child_token()).await,
            _ => Err(anyhow::anyhow!("cannot resolve HOST for {addr}")),
        },
    };
    if let Err(e) = bound {
        warn!(error = %format!("{e:#}"), "worker metrics are not served; set WORKER_METRICS_PORT to a free port");
    }
}

async fn serve(
    settings: Settings,
    components: Components,
    shutdown: CancellationToken,
    with_worker: bool,
) -> anyhow::Result<()> {
    let store = components.store.backend();
    let queue = components.queue.backend();
    let sync = settings.sync_message_processing;
    let verify_webhooks = settings.webhooks.verify_signatures;
    let banner_settings = settings.clone();
    let app = Application::build(settings, components).await?;
    let addr = app.local_addr()?;
    info!(%addr, store, queue, sync_message_processing = sync, "API listening on http://{addr}");
    print_banner(&banner_settings, addr, with_worker);
    if sync {
        warn!(
            "SYNC_MESSAGE_PROCESSING=true: messages are delivered inside the request (debugging only)"
        );
    }
    if !verify_webhooks {
        warn!(
            "WEBHOOK_VERIFY_SIGNATURES=false: provider webhooks are accepted without signatures (development only)"
        );
    }
    app.run_until_stopped(shutdown).await?;
    info!("API stopped");
    Ok(())
}
