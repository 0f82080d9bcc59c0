//! Running porter: the runtime, the signals (SIGHUP and `--watch` reload, SIGUSR1
//! reopens the access log, SIGUSR2 upgrades, SIGTERM and SIGINT stop) and what
//! systemd is told around each.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use porter::Config;
use porter::Inherited;
use porter::Upgrades;
use sd_notify::NotifyState;
use tokio::signal::unix::{signal, SignalKind};

pub(crate) fn run(path: PathBuf, config: Config, workers: Option<u16>, inherited: Inherited, watch: bool) -> ExitCode {
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
