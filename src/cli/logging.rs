//! porter's own log lines: stderr through a writer thread, text or JSON, at the
//! level `--log-level` or RUST_LOG names.

use super::{LogFormat, LogLevel};

pub(crate) fn init_logging(format: LogFormat, level: Option<LogLevel>) -> tracing_appender::non_blocking::WorkerGuard {
    use tracing_subscriber::filter::{EnvFilter, LevelFilter};
    // Lines go through a writer thread so a slow stderr never stalls a request; none are
    // dropped. (The access log has its own writer: src/access_log.)
    let (events, guard) =
        tracing_appender::non_blocking::NonBlockingBuilder::default().lossy(false).finish(std::io::stderr());
    // The flag wins over RUST_LOG, as a command line does over the environment (nginx's
    // `-g 'error_log ... warn;'` over its file); RUST_LOG keeps its per-target directives.
    let filter = match level {
        Some(level) => EnvFilter::default().add_directive(LevelFilter::from(level).into()),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(events);
    match format {
        LogFormat::Text => builder.with_ansi(ansi).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    guard
}

impl From<LogLevel> for tracing_subscriber::filter::LevelFilter {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Error => Self::ERROR,
            LogLevel::Warn => Self::WARN,
            LogLevel::Info => Self::INFO,
            LogLevel::Debug => Self::DEBUG,
            LogLevel::Trace => Self::TRACE,
        }
    }
}
