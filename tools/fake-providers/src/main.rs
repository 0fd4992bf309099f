//! `fake-providers`: the Twilio and SendGrid stand-ins on a local port, for end-to-end runs
//! of the service with real HTTP. Not part of the product; see the library for what it does.

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "fake-providers",
    about = "Serve Twilio- and SendGrid-compatible fake endpoints for end-to-end runs"
)]
struct Cli {
    #[command(flatten)]
    args: fake_providers::FakeProvidersArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    messaging_service::provider::install_crypto_provider();
    let cli = Cli::parse();
    // Logs on stderr: stdout starts with the address, for whoever started us.
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            on_signal.cancel();
            return;
        }
        let _ = ctrl_c.await;
        on_signal.cancel();
    });
    match fake_providers::run(cli.args, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "fake providers failed");
            ExitCode::FAILURE
        }
    }
}
