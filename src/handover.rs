//! Binary upgrade without a refused connection (docs/configuration.md, Command line: SIGUSR2),
//! nginx's way: on SIGUSR2 the running porter starts the program at its own path again (by then the
//! new binary), with the same arguments and its listening sockets left open across the exec. The
//! new process reads the configuration, takes the sockets ([`crate::listener::inherit`]), starts
//! accepting, and says so over a socket pair; only then does the old one stop accepting, drain
//! (bounded by `shutdown_timeout`) and exit 0. The listening sockets never close, so a client
//! connecting meanwhile waits in the kernel's backlog for whichever process accepts next. A new
//! process that fails (a bad configuration, a binary that does not start) exits, and the old one
//! keeps serving as if nothing happened.
//!
//! Under systemd the new process is a child of the old one, so in the service's
//! cgroup; the old one tells systemd `MAINPID=` the new one before it drains.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use crate::listener::inherit::{UPGRADE_FDS, UPGRADE_PARENT, UPGRADE_READY};

/// How long a new process has to take over before it is stopped and the old one
/// carries on: enough to read the configuration and certificates on a loaded machine.
pub(crate) const READY_WITHIN: Duration = Duration::from_secs(60);

/// How long a new process that closed the channel without taking over has to exit.
const EXIT_WITHIN: Duration = Duration::from_secs(5);

/// The upgrades of one running porter: at most one under way at a time.
pub struct Upgrades {
    results: mpsc::Sender<Result<u32, String>>,
    finished: mpsc::Receiver<Result<u32, String>>,
    under_way: bool,
}

impl Default for Upgrades {
    fn default() -> Self {
        let (results, finished) = mpsc::channel(1);
        Upgrades { results, finished, under_way: false }
    }
}

impl Upgrades {
    pub fn new() -> Upgrades {
        Upgrades::default()
    }

    /// Starts the new process with `listeners` (name, socket); its outcome comes
    /// out of [`Upgrades::taken_over`]. A second request while one runs is ignored.
    pub fn begin(&mut self, listeners: &[(&'static str, BorrowedFd<'_>)]) {
        if self.under_way {
            tracing::warn!("upgrade: one is already under way");
            return;
        }
        if std::process::id() == 1 {
            // A container ends when its PID 1 exits, taking the new process with it.
            tracing::error!("upgrade refused: porter is PID 1 (a container); replace the container instead");
            return;
        }
        let program = program();
        let successor = match spawn(&program, listeners) {
            Ok(successor) => successor,
            Err(e) => {
                tracing::error!(program = %program.to_string_lossy(), error = %e, "upgrade: cannot start the new process; this one keeps serving");
                return;
            }
        };
        tracing::info!(program = %program.to_string_lossy(), pid = successor.child.id(), "upgrade: started the new process");
        self.under_way = true;
        let results = self.results.clone();
        tokio::spawn(async move {
            let _ = results.send(successor.ready(READY_WITHIN).await).await;
        });
    }

    /// Resolves with the process id of a new process once it serves on the
    /// listeners; upgrades that fail are logged and waited past.
    pub async fn taken_over(&mut self) -> u32 {
        loop {
            let Some(result) = self.finished.recv().await else {
                std::future::pending::<()>().await;
                continue;
            };
            self.under_way = false;
            match result {
                Ok(pid) => return pid,
                Err(e) => tracing::error!("upgrade failed, this process keeps serving: {e}"),
            }
        }
    }
}

/// The program porter was started as: `argv[0]` names the path an upgrade replaced
/// (`/proc/self/exe` would name the old, deleted file); through `PATH` when it has no `/`.
fn program() -> std::ffi::OsString {
    std::env::args_os()
        .next()
        .filter(|p| !p.is_empty())
        .or_else(|| std::env::current_exe().ok().map(Into::into))
        .unwrap_or_else(|| "porter".into())
}

struct Successor {
    child: Child,
    channel: tokio::net::UnixStream,
}

fn spawn(program: &std::ffi::OsStr, listeners: &[(&'static str, BorrowedFd<'_>)]) -> io::Result<Successor> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    let names: Vec<String> = listeners.iter().map(|(name, fd)| format!("{name}:{}", fd.as_raw_fd())).collect();
    let mut keep: Vec<BorrowedFd<'_>> = listeners.iter().map(|(_, fd)| *fd).collect();
    keep.push(theirs.as_fd());
    let mut command = Command::new(program);
    command
        .args(std::env::args_os().skip(1))
        // Sockets from systemd are passed on under porter's own names; its variables
        // would name descriptors and a process id that no longer apply.
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDNAMES")
        .env(UPGRADE_FDS, names.join(","))
        .env(UPGRADE_READY, theirs.as_raw_fd().to_string())
        .env(UPGRADE_PARENT, std::process::id().to_string())
        .stdin(Stdio::null());
    // The listening sockets and the child's end of the channel cross the exec; nothing else does.
    let child = crate::sys::spawn_keeping(command, &keep)?;
    drop(theirs);
    ours.set_nonblocking(true)?;
    Ok(Successor { child, channel: tokio::net::UnixStream::from_std(ours)? })
}

impl Successor {
    /// The new process's id once it says it serves; an error (after reaping it) when
    /// it exits first or takes longer than `within` (then it is stopped).
    async fn ready(mut self, within: Duration) -> Result<u32, String> {
        let pid = self.child.id();
        let mut said = Vec::new();
        // The new process writes one line and closes its end; an exit closes it too.
        let read = tokio::time::timeout(within, (&mut self.channel).take(64).read_to_end(&mut said)).await;
        if matches!(read, Ok(Ok(_))) && said.starts_with(b"ready") {
            tracing::info!(pid, "upgrade: the new process serves on the listeners");
            return Ok(pid);
        }
        let mut child = self.child;
        let timed_out = read.is_err();
        // It exits after closing the channel unsaid; one that does not is stopped.
        let status = tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + if timed_out { Duration::ZERO } else { EXIT_WITHIN };
            while std::time::Instant::now() < deadline {
                if let Some(status) = child.try_wait()? {
                    return Ok(status);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            child.wait()
        })
        .await;
        let status = match status {
            Ok(Ok(status)) => status.to_string(),
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        if timed_out {
            Err(format!("the new process {pid} did not take over within {within:?} and was stopped ({status})"))
        } else {
            Err(format!("the new process {pid} ended before taking over ({status}); its log says why"))
        }
    }
}
