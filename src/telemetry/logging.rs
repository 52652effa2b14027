//! Log output: `--log-format text|json`, filtered by `TOLLGATE_LOG` (or
//! `RUST_LOG`; `tracing` filter syntax, default `info`), written to stderr
//! by a background thread so a request never waits on the terminal or a
//! log shipper's pipe. If that thread falls behind by more than its buffer,
//! lines are dropped (and counted by `tracing-appender`) rather than
//! slowing requests down.

use clap::ValueEnum;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`,
    /// `fields`, and the current spans), for log shippers.
    Json,
}

/// The filter: `TOLLGATE_LOG`, else `RUST_LOG`, else `info`.
fn filter() -> EnvFilter {
    EnvFilter::try_from_env("TOLLGATE_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the global subscriber. Keep the guard alive until exit: it
/// flushes the lines still queued when dropped.
pub fn init(format: LogFormat) -> WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter()).with_writer(writer);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).init(),
    }
    guard
}
