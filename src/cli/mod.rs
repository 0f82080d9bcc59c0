//! The `porter` command's parts (the binary's, not the library's):
//!
//! - this file: the command line as clap reads it, and its usage errors;
//! - `check`: `porter check`'s report;
//! - `logging`: porter's own log lines (stderr, text or JSON);
//! - `serve`: running porter, with the signals and systemd notifications around it.

pub(crate) mod check;
pub(crate) mod logging;
pub(crate) mod serve;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "porter",
    version,
    about = "HTTP/HTTPS edge reverse proxy and load balancer",
    after_long_help = "Environment: PORTER_WORKERS=N worker threads (as --workers); PORTER_WATCH=1 (as --watch); RUST_LOG log level \
                       and filter (default info; --log-level wins). The access log is `access_log:` in the \
                       configuration, whatever the level.\n\
                       Signals: SIGHUP reloads the configuration and certificates; SIGUSR1 reopens the access \
                       log file (logrotate); SIGTERM and SIGINT stop accepting, finish requests in flight \
                       (shutdown_timeout), then exit 0. SIGUSR2 \
                       upgrades: the binary at the same path starts with the same arguments, takes the \
                       listening sockets over, and this process drains and exits 0.\n\
                       Listening sockets from systemd (LISTEN_FDS) are used instead of binding."
)]
pub(crate) struct Cli {
    /// Configuration file (default: porter.yaml, then /etc/porter/porter.yaml)
    #[arg(short = 'c', long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Format of porter's own log lines (stderr); the access log has `access_log.format`
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
    /// Level of porter's own log lines [default: RUST_LOG, else info]; wins over RUST_LOG
    #[arg(long, global = true, value_enum, value_name = "LEVEL")]
    pub(crate) log_level: Option<LogLevel>,
    /// Worker threads [default: one per core]
    #[arg(long, env = "PORTER_WORKERS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) workers: Option<u16>,
    /// Reload when the configuration file changes, as SIGHUP does (sees editors' saves and
    /// Kubernetes ConfigMap updates)
    #[arg(long, env = "PORTER_WATCH", value_parser = clap::builder::FalseyValueParser::new())]
    pub(crate) watch: bool,
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Validate the configuration and certificates, print a summary, exit 0 or 1
    Check,
    /// GET an http:// URL, exit 0 on a 2xx answer and 1 otherwise (the container's health check)
    Probe {
        /// e.g. http://127.0.0.1:9901/healthz
        url: String,
        /// Seconds to wait for the answer
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=300))]
        timeout: u64,
    },
    /// Print a shell completion script to stdout
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout
    Man,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// Prints clap's error and exits as clap would (2; 0 for --help and --version), except
/// that a bad value that came from an environment variable is reported under the
/// variable's name: `PORTER_WORKERS=abc` names PORTER_WORKERS, not a `--workers` flag
/// the user never typed.
pub(crate) fn exit_on_usage_error(e: clap::Error) -> ! {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let from_env = |flag: &str, var: &str| {
        let typed = std::env::args_os().skip(1).any(|a| {
            let a = a.to_string_lossy();
            a == flag || a.starts_with(&format!("{flag}="))
        });
        !typed && std::env::var_os(var).is_some()
    };
    let bad_value = matches!(e.kind(), ErrorKind::InvalidValue | ErrorKind::ValueValidation);
    if let (true, Some(ContextValue::String(arg))) = (bad_value, e.get(ContextKind::InvalidArg)) {
        for (flag, var) in [("--workers", "PORTER_WORKERS"), ("--watch", "PORTER_WATCH")] {
            if arg.starts_with(flag) && from_env(flag, var) {
                let rendered = e.render().to_string();
                eprint!("{}", rendered.replace(&format!("'{arg}'"), &format!("the environment variable {var}")));
                std::process::exit(2);
            }
        }
    }
    e.exit()
}
