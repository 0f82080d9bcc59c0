//! The `porter` command: run the proxy, or `check` a configuration; signals
//! for reload (SIGHUP) and graceful stop (SIGTERM, SIGINT). Also the small
//! tools a deployment needs from the binary itself: `probe` (the container's
//! health check), `completions` and `man` (generated from the definition in
//! `cli/`).
//! Under systemd (`NOTIFY_SOCKET` set) it reports READY=1 once listening,
//! RELOADING=1 with MONOTONIC_USEC then READY=1 around a reload, and STOPPING=1
//! on the way out, as a `Type=notify-reload` unit expects.
//! SIGUSR2 upgrades the binary (`porter::handover`): the new process takes the
//! listening sockets over, systemd's MAINPID follows it, and this one drains.

mod cli;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use porter::Config;
use porter::Inherited;

use cli::{Cli, Command};

// mimalloc: per-thread free lists make the allocations of a request (heads, header maps,
// futures) cost a fraction of glibc malloc's (bench/instructions.sh, bench/results/history.md).
#[global_allocator]
static ALLOCATOR: porter::Allocator = porter::Allocator;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => cli::exit_on_usage_error(e),
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
    let _log_guard = cli::logging::init_logging(cli.log_format, cli.log_level);
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
        Some(Command::Check) => cli::check::check(&path, &config),
        _ => {
            // Before anything else opens a descriptor: the sockets are numbered ones.
            let inherited = match Inherited::from_environment() {
                Ok(inherited) => inherited,
                Err(e) => {
                    eprintln!("porter: {e}");
                    return ExitCode::from(1);
                }
            };
            cli::serve::run(path, config, cli.workers, inherited, cli.watch)
        }
    }
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
