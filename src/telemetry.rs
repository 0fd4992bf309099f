//! Logging set-up, done once at start-up.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::JsonFields;

use crate::config::{LogFormat, Settings};
use crate::observability::json_log::JsonLines;

/// Installs the global subscriber. `RUST_LOG` (if set) overrides `LOG_LEVEL`.
pub fn init(settings: &Settings) {
    let level = match settings.log_level.as_str() {
        "warning" => "warn",
        other => other,
    };
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{level},sqlx=warn,tower_http=warn,h2=warn,hyper=warn"
        ))
    });
    // Colours only for a terminal: log files must stay greppable.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stdout);
    let result = match settings.log_format {
        // Top-level `request_id` and `message_id` on every line of a request or message.
        LogFormat::Json => builder
            .with_ansi(false)
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .try_init(),
        LogFormat::Text => builder.with_target(true).try_init(),
    };
    if let Err(e) = result {
        eprintln!("logging was already initialised: {e}");
    }
}
