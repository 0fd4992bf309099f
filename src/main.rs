//! The `messaging-service` binary: `serve` (API), `worker`, both at once, and database tools.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use messaging_service::app::{Application, Components};
use messaging_service::config::{Env, Settings};
use messaging_service::keys;
use messaging_service::store::postgres::PgStore;
use messaging_service::telemetry;

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
    /// Run the API and a worker in one process (the default)
    All,
    /// Apply database migrations
    Migrate,
    /// Drop every table and apply the migrations again (destroys all data)
    DbReset,
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
    let cli = Cli::parse();
    let settings = match Settings::from_env(&Env::load()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&settings);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command.unwrap_or(Command::All), settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %format!("{e:#}"), "exiting");
            eprintln!("error: {e:#}");
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
        info!("shutdown signal received");
        t.cancel();
    });
    token
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
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
        Command::Keys { action } => {
            let store = PgStore::connect_lazy(&settings.database_url, 2)?;
            store.migrate().await?;
            let mut out = std::io::stdout();
            match action {
                KeysCommand::Create { name } => keys::create(&store, &name, &mut out).await,
                KeysCommand::List => keys::list(&store, &mut out).await,
                KeysCommand::Revoke { id } => keys::revoke(&store, &id, &mut out).await,
            }
        }
        Command::Serve => {
            let components = Components::from_settings(&settings).await?;
            serve(settings, components, shutdown_on_signal()).await
        }
        Command::Worker => {
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
                "worker starting"
            );
            worker
                .run(shutdown_on_signal(), settings.shutdown_grace)
                .await
        }
        Command::All => {
            let components = Components::from_settings(&settings).await?;
            let shutdown = shutdown_on_signal();
            let worker = components.worker(&settings);
            let grace = settings.shutdown_grace;
            let worker_task = tokio::spawn(worker.run(shutdown.clone(), grace));
            let served = serve(settings, components, shutdown.clone()).await;
            shutdown.cancel();
            worker_task.await.context("worker task panicked")??;
            served
        }
    }
}

async fn serve(
    settings: Settings,
    components: Components,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let store = components.store.backend();
    let queue = components.queue.backend();
    let sync = settings.sync_message_processing;
    let app = Application::build(settings, components).await?;
    let addr = app.local_addr()?;
    info!(%addr, store, queue, sync_message_processing = sync, "API listening on http://{addr}");
    if sync {
        warn!(
            "SYNC_MESSAGE_PROCESSING=true: messages are delivered inside the request (debugging only)"
        );
    }
    app.run_until_stopped(shutdown).await?;
    info!("API stopped");
    Ok(())
}
