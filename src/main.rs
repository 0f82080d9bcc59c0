//! The `porter` command: run the proxy, or `check` a configuration; signals
//! for reload (SIGHUP) and graceful stop (SIGTERM, SIGINT). Also the small
//! tools a deployment needs from the binary itself: `probe` (the container's
//! health check), `completions` and `man` (generated from this definition).
//! Under systemd (`NOTIFY_SOCKET` set) it reports READY=1 once listening,
//! RELOADING=1 with MONOTONIC_USEC then READY=1 around a reload, and STOPPING=1
//! on the way out, as a `Type=notify-reload` unit expects.
//! SIGUSR2 upgrades the binary (`porter::handover`): the new process takes the
//! listening sockets over, systemd's MAINPID follows it, and this one drains.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use porter::Config;
use porter::Inherited;
use porter::Upgrades;
use sd_notify::NotifyState;
use tokio::signal::unix::{signal, SignalKind};

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
struct Cli {
    /// Configuration file (default: porter.yaml, then /etc/porter/porter.yaml)
    #[arg(short = 'c', long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Format of porter's own log lines (stderr); the access log has `access_log.format`
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Level of porter's own log lines [default: RUST_LOG, else info]; wins over RUST_LOG
    #[arg(long, global = true, value_enum, value_name = "LEVEL")]
    log_level: Option<LogLevel>,
    /// Worker threads [default: one per core]
    #[arg(long, env = "PORTER_WORKERS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: Option<u16>,
    /// Reload when the configuration file changes, as SIGHUP does (sees editors' saves and
    /// Kubernetes ConfigMap updates)
    #[arg(long, env = "PORTER_WATCH", value_parser = clap::builder::FalseyValueParser::new())]
    watch: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
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
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

// mimalloc: per-thread free lists make the allocations of a request (heads, header maps,
// futures) cost a fraction of glibc malloc's (bench/instructions.sh, bench/results/history.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => exit_on_usage_error(e),
    };
    // The tools that need neither a configuration nor logging.
    match cli.command {
        Some(Command::Probe { url, timeout }) => return probe(&url, Duration::from_secs(timeout)),
        Some(Command::Completions { shell }) => {
            // Into a buffer first: clap_complete panics on a write error (`| head`).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "porter", &mut script);
            return print(&script);
        }
        Some(Command::Man) => {
            let mut page = Vec::new();
            return match clap_mangen::Man::new(Cli::command()).render(&mut page) {
                Ok(()) => print(&page),
                Err(e) => {
                    eprintln!("porter: {e}");
                    ExitCode::from(1)
                }
            };
        }
        Some(Command::Check) | None => {}
    }
    let _log_guard = init_logging(cli.log_format, cli.log_level);
    let path = match config_path(cli.config) {
        Ok(path) => path,
        Err(message) => {
            eprintln!("porter: {message}");
            return ExitCode::from(1);
        }
    };
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("porter: invalid configuration: {e}");
            return ExitCode::from(1);
        }
    };
    match cli.command {
        Some(Command::Check) => check(&path, &config),
        _ => {
            // Before anything else opens a descriptor: the sockets are numbered ones.
            let inherited = match Inherited::from_environment() {
                Ok(inherited) => inherited,
                Err(e) => {
                    eprintln!("porter: {e}");
                    return ExitCode::from(1);
                }
            };
            run(path, config, cli.workers, inherited, cli.watch)
        }
    }
}

/// Prints clap's error and exits as clap would (2; 0 for --help and --version), except
/// that a bad value that came from an environment variable is reported under the
/// variable's name: `PORTER_WORKERS=abc` names PORTER_WORKERS, not a `--workers` flag
/// the user never typed.
fn exit_on_usage_error(e: clap::Error) -> ! {
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

fn print(bytes: &[u8]) -> ExitCode {
    use std::io::Write;
    match std::io::stdout().lock().write_all(bytes) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(1),
    }
}

fn probe(url: &str, timeout: Duration) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("porter probe: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(porter::probe(url, timeout)) {
        Ok(status) => {
            println!("{status}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("porter probe: {e}");
            ExitCode::from(1)
        }
    }
}

fn config_path(given: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(path) = given {
        return Ok(path);
    }
    for candidate in ["porter.yaml", "/etc/porter/porter.yaml"] {
        if Path::new(candidate).exists() {
            return Ok(PathBuf::from(candidate));
        }
    }
    Err("no configuration: pass --config FILE, or create porter.yaml or /etc/porter/porter.yaml".into())
}

fn init_logging(format: LogFormat, level: Option<LogLevel>) -> tracing_appender::non_blocking::WorkerGuard {
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

fn check(path: &Path, config: &Config) -> ExitCode {
    // The report is written whole at the end: `porter check | head -1` closes the pipe
    // early, and a closed stdout must end the command quietly, not in a panic.
    let mut out = String::new();
    let code = check_report(path, config, &mut out);
    use std::io::Write;
    match std::io::stdout().lock().write_all(out.as_bytes()) {
        Ok(()) => code,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => code,
        Err(e) => {
            eprintln!("porter: cannot write the report: {e}");
            ExitCode::from(1)
        }
    }
}

fn check_report(path: &Path, config: &Config, out: &mut String) -> ExitCode {
    use std::fmt::Write;
    // Exactly what start and reload run after loading the file.
    let warnings = match porter::validate(config) {
        Ok(warnings) => warnings,
        Err(e) => {
            eprintln!("porter: invalid configuration: {e}");
            return ExitCode::from(1);
        }
    };
    let _ = writeln!(out, "configuration {} is valid", path.display());
    for warning in &warnings {
        let _ = writeln!(out, "  WARNING: {warning}");
    }
    let listen = &config.listen;
    for (what, address) in [("https", listen.https), ("http", listen.http), ("admin", listen.admin)] {
        if let Some(address) = address {
            let _ = writeln!(out, "  listen {what:5} {address}");
        }
    }
    if listen.http.is_some() {
        let _ = writeln!(out, "  http: {}", if config.http.redirect { "redirects to https" } else { "serves routes" });
    }
    let log = &config.access_log;
    let _ = match (&log.path, log.enabled) {
        (_, false) => writeln!(out, "  access log: off"),
        (Some(file), true) => writeln!(out, "  access log: {} to {}", log.format, file.display()),
        (None, true) => writeln!(out, "  access log: {} to stderr", log.format),
    };
    let _ = writeln!(out, "routes:");
    for route in &config.routes {
        let strip = if route.strip_prefix { " (prefix stripped)" } else { "" };
        let action = match &route.action {
            porter::RouteAction::Upstream(name) => name.clone(),
            porter::RouteAction::Redirect(r) => format!("redirect {}", r.status),
            porter::RouteAction::Respond(r) => format!("respond {}", r.status),
        };
        let strip = if route.policy.is_empty() { strip.to_string() } else { format!("{strip} (with policy)") };
        let _ = writeln!(out, "  {}{} -> {}{strip}", route.host.as_deref().unwrap_or("*"), route.path, action);
    }
    let _ = writeln!(out, "upstreams:");
    for (name, upstream) in &config.upstreams {
        let sticky = upstream.sticky.as_ref().map(|s| format!(", sticky cookie {}", s.cookie)).unwrap_or_default();
        let _ = writeln!(out, "  {name} ({}, retries {}{sticky})", upstream.balance, upstream.retries);
        for server in &upstream.servers {
            let _ = writeln!(out, "    {} weight {}", server.url.original, server.weight);
        }
    }
    if let Some(acme) = &config.acme {
        for line in porter::describe_acme(acme, &config.tls.certs) {
            let _ = writeln!(out, "{line}");
        }
    }
    if config.listen.https.is_none() {
        // Nothing serves TLS: the folder is not read, so there is nothing to warn about.
        let _ = writeln!(out, "certificates: none needed (no https listener)");
        return ExitCode::SUCCESS;
    }
    let _ = writeln!(out, "certificates in {}:", config.tls.certs.display());
    if !config.tls.certs.is_dir() {
        // Not fatal: porter starts with a self-signed certificate, as it would with an empty folder.
        let _ = writeln!(
            out,
            "  WARNING: the folder does not exist; porter would start with a self-signed certificate for localhost"
        );
        return ExitCode::SUCCESS;
    }
    let (store, problems) = porter::CertStore::scan(&config.tls.certs, None);
    if store.is_empty() {
        let _ = writeln!(out, "  none: porter would start with a self-signed certificate for localhost");
    }
    for cert in store.certs() {
        let _ = writeln!(out, "  {}", porter::describe_certificate(cert));
    }
    for problem in &problems {
        let _ = writeln!(out, "  ERROR {problem}");
    }
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn run(path: PathBuf, config: Config, workers: Option<u16>, inherited: Inherited, watch: bool) -> ExitCode {
    let workers = workers.map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), usize::from);
    let runtime = if workers == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("porter: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(serve(path, config, inherited, watch))
}

async fn serve(path: PathBuf, config: Config, mut inherited: Inherited, watch: bool) -> ExitCode {
    let mut shutdown_timeout = config.shutdown_timeout;
    // Handlers first: a SIGHUP that arrives while porter starts must not kill it (the
    // default action); it is handled as a reload once porter runs.
    let (Ok(mut hup), Ok(mut term), Ok(mut int), Ok(mut usr1), Ok(mut usr2)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined1()),
        signal(SignalKind::user_defined2()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return ExitCode::from(1);
    };
    // Before start: a change made while porter starts is reloaded once it runs.
    let mut watcher = watch.then(|| porter::ConfigWatch::start(path.clone(), porter::WATCH_INTERVAL));
    let upgrade = inherited.is_upgrade();
    let porter = match porter::start_with(config, &mut inherited).await {
        Ok(porter) => porter,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(1);
        }
    };
    if upgrade {
        // The old process hands systemd over to this one (MAINPID) once told.
        if let Err(e) = inherited.ready() {
            tracing::error!(error = %e, "upgrade: cannot tell the old process that this one serves");
        }
    } else {
        notify(&[NotifyState::Ready]);
    }
    if watcher.is_some() {
        tracing::info!(config = %path.display(), "watching the configuration file (--watch)");
    }
    let mut upgrades = Upgrades::new();
    let mut successor = None;
    loop {
        tokio::select! {
            _ = hup.recv() => reload(&porter, &path, &mut shutdown_timeout),
            () = file_changed(&mut watcher) => reload(&porter, &path, &mut shutdown_timeout),
            // logrotate's `postrotate`: the access log file was moved away.
            _ = usr1.recv() => porter.reopen_logs(),
            _ = usr2.recv() => upgrades.begin(&porter.listening_fds()),
            pid = upgrades.taken_over() => {
                successor = Some(pid);
                break;
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    drop(watcher);
    if let Some(pid) = successor {
        // Not STOPPING: the service goes on, in the new process.
        notify(&[NotifyState::MainPid(pid)]);
        tracing::info!(
            pid,
            ?shutdown_timeout,
            "upgrade: handed the listeners over to process {pid}; finishing requests in flight"
        );
        porter.hand_over(shutdown_timeout).await;
        tracing::info!("stopped");
        return ExitCode::SUCCESS;
    }
    notify(&[NotifyState::Stopping]);
    tracing::info!(?shutdown_timeout, "stopping: no new connections, finishing requests in flight");
    porter.shutdown(shutdown_timeout).await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// The next settled change of the configuration file; never, without `--watch`.
async fn file_changed(watcher: &mut Option<porter::ConfigWatch>) {
    match watcher {
        Some(watcher) => watcher.changed().await,
        None => std::future::pending().await,
    }
}

/// Reloads the configuration file and certificates: SIGHUP and `--watch` both come here.
/// A file that does not load, or a configuration that does not apply, is refused and
/// counted; the running configuration keeps serving.
fn reload(porter: &porter::Porter, path: &Path, shutdown_timeout: &mut Duration) {
    let reloading = NotifyState::monotonic_usec_now().map(|now| [NotifyState::Reloading, now]);
    if let Ok(states) = &reloading {
        notify(states);
    }
    match Config::load(path) {
        Ok(config) => match porter.reload(&config) {
            Ok(()) => {
                *shutdown_timeout = config.shutdown_timeout;
                tracing::info!(config = %path.display(), "configuration reloaded");
            }
            Err(e) => tracing::error!("reload failed, keeping the running configuration: {e}"),
        },
        Err(e) => {
            tracing::error!("reload failed, keeping the running configuration: {e}");
            porter.reload_refused(&e.to_string());
        }
    }
    notify(&[NotifyState::Ready]);
}

/// Tells systemd about a state change; does nothing unless `NOTIFY_SOCKET` is set.
fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}
