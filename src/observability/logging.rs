//! Logging set-up, done once at start-up: plain text for a terminal, JSON lines
//! (`json_log`) for collectors, both on stdout.
//!
//! Logging never decides whether the process lives: a line that cannot be written (stdout
//! is a pipe whose reader died, a full disk) is dropped and counted in
//! `log_write_errors_total`, never retried, never a panic, so signals and shutdown work
//! whatever happens to the output.

use std::io::{self, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::JsonFields;

use super::json_log::JsonLines;
use crate::config::{LogFormat, Settings};

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
    let ansi = io::IsTerminal::is_terminal(&io::stdout()) && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(Stdout)
        // The default reports a failed write on stderr, which may be the same dead pipe.
        .log_internal_errors(false);
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
        let _ = writeln!(io::stderr(), "logging was already initialised: {e}");
    }
}

/// Writes `text` to stdout for an operator to read (the text-mode banner), under the same
/// rule as log lines: a failed write is counted, never fatal.
pub fn print(text: &str) {
    let _ = Stdout.make_writer().write_all(text.as_bytes());
}

/// stdout through a writer whose failures are counted and swallowed.
#[derive(Clone, Copy)]
struct Stdout;

impl<'a> MakeWriter<'a> for Stdout {
    type Writer = Lossy<io::StdoutLock<'static>>;

    fn make_writer(&'a self) -> Self::Writer {
        Lossy(io::stdout().lock())
    }
}

/// Reports every write as done; a failure increments `log_write_errors_total` instead.
struct Lossy<W>(W);

impl<W: Write> Write for Lossy<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.0.write_all(buf).is_err() {
            super::log_write_failed();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.0.flush().is_err() {
            super::log_write_failed();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
    }

    #[test]
    fn a_broken_output_is_swallowed_not_reported_to_the_logger() {
        let mut w = Lossy(Broken);
        assert_eq!(w.write(b"a line\n").unwrap(), 7);
        assert!(w.flush().is_ok());
        assert!(writeln!(w, "another").is_ok());
    }
}
