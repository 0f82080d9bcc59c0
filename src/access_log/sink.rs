//! Where access-log lines go: a writer thread that owns the destination
//! (stderr, or a file opened for append and created 0640), fed by a bounded
//! queue that never blocks a request.
//!
//! Workers format a line and `try_send` it; when the queue is full (a stuck
//! terminal, a slow disk) the line is dropped and counted instead. The thread
//! writes what is queued through a buffer and flushes once the queue is
//! empty, so a burst costs one write, and a line is on disk (or stderr)
//! as soon as the writer is idle.
//!
//! Files are opened by the caller (start, reload, SIGUSR1), so an error is
//! reported where it can refuse the start or the reload, and handed to the
//! thread, which switches over between two batches. Reopening is what
//! logrotate's `postrotate kill -USR1` needs: the renamed file keeps what was
//! written, new lines go to a new file at the path.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::Log;
use crate::config::{AccessLogConfig, AccessLogFormat};

/// Lines queued for the writer before new ones are dropped, unless
/// `PORTER_ACCESS_LOG_QUEUE` says otherwise: enough that a short stall loses nothing.
const QUEUE: usize = 4096;
/// How long a stop waits for the writer to write out what is queued.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Lines dropped in this process because a writer fell behind.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Access-log lines dropped so far because the writer fell behind.
pub(crate) fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

enum Msg {
    Line(Vec<u8>),
    /// Something changed in [`Control`]: look before the next line.
    Wake,
}

/// The sending side a [`Log`] holds.
#[derive(Debug, Clone)]
pub(super) struct Queue(SyncSender<Msg>);

impl Queue {
    pub(super) fn push(&self, line: Vec<u8>) {
        match self.0.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Line(_) => "Line",
            Msg::Wake => "Wake",
        })
    }
}

enum Destination {
    Stderr,
    File(File),
}

/// Requests from the callers to the writer thread, looked at between batches.
#[derive(Default)]
struct Control {
    /// A destination to switch to.
    next: Option<Destination>,
    /// Told once everything queued so far is written and flushed.
    close: Option<tokio::sync::oneshot::Sender<()>>,
}

struct Shared {
    control: Mutex<Control>,
    changed: AtomicBool,
}

/// A configuration's destination, opened and not yet in use.
pub(crate) struct Prepared {
    enabled: bool,
    format: AccessLogFormat,
    file: Option<(PathBuf, File)>,
}

/// One porter's access-log writer (one thread), kept across reloads.
pub(crate) struct Sink {
    queue: Queue,
    shared: Arc<Shared>,
    /// The file lines go to now, for SIGUSR1 (`None`: stderr).
    path: Mutex<Option<PathBuf>>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink").field("path", &*self.path.lock().unwrap_or_else(PoisonError::into_inner)).finish()
    }
}

impl Sink {
    /// Starts the writer thread, writing to stderr until [`Sink::configure`] says otherwise.
    pub(crate) fn start() -> std::io::Result<Sink> {
        let size = std::env::var("PORTER_ACCESS_LOG_QUEUE")
            .ok()
            .and_then(|n| n.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or(QUEUE);
        let (tx, rx) = mpsc::sync_channel(size);
        let shared = Arc::new(Shared { control: Mutex::default(), changed: AtomicBool::new(false) });
        let writer = Writer { out: BufWriter::with_capacity(64 * 1024, Box::new(std::io::stderr())), failing: false };
        let thread_shared = shared.clone();
        std::thread::Builder::new().name("porter-access-log".into()).spawn(move || writer.run(rx, &thread_shared))?;
        Ok(Sink { queue: Queue(tx), shared, path: Mutex::new(None) })
    }

    /// Opens what `config` names (at start and on every reload), changing nothing yet:
    /// a file that cannot be opened refuses the start or the reload.
    pub(crate) fn prepare(&self, config: &AccessLogConfig) -> Result<Prepared, String> {
        let file = match (&config.path, config.enabled) {
            // Opened again on each reload too, as nginx does: a file moved away is recreated.
            (Some(path), true) => Some(
                open(path)
                    .map(|file| (path.clone(), file))
                    .map_err(|e| format!("access_log.path: cannot open {}: {e}", path.display()))?,
            ),
            _ => None,
        };
        Ok(Prepared { enabled: config.enabled, format: config.format, file })
    }

    /// Switches to what [`Sink::prepare`] opened; returns the [`Log`] the new snapshot's
    /// requests write to (`None`: the log is off).
    pub(crate) fn apply(&self, prepared: Prepared) -> Option<Arc<Log>> {
        let mut path = self.path.lock().unwrap_or_else(PoisonError::into_inner);
        match prepared.file {
            Some((file_path, file)) => {
                self.switch(Destination::File(file));
                *path = Some(file_path);
            }
            // Stderr, or off: the file is let go (so it can be removed).
            None => {
                if path.take().is_some() {
                    self.switch(Destination::Stderr);
                }
            }
        }
        let queue = self.queue.clone();
        prepared.enabled.then(|| Arc::new(Log { format: prepared.format, queue }))
    }

    /// SIGUSR1: opens the file at the configured path again (after logrotate moved it away).
    /// On failure the old file keeps receiving lines and the error is logged.
    pub(crate) fn reopen(&self) {
        let path = self.path.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(file) = path.as_deref() else { return };
        match open(file) {
            Ok(opened) => {
                self.switch(Destination::File(opened));
                tracing::info!(path = %file.display(), "access log reopened");
            }
            Err(e) => {
                tracing::error!(path = %file.display(), error = %e, "cannot reopen the access log; still writing to the old file")
            }
        }
    }

    /// Waits (a bounded time) until the lines queued so far are written; the writer
    /// then stops. Later lines are dropped and counted.
    pub(crate) async fn close(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.shared.control.lock().unwrap_or_else(PoisonError::into_inner).close = Some(done);
        self.wake();
        if tokio::time::timeout(CLOSE_WAIT, wait).await.is_err() {
            tracing::warn!("the access log writer did not finish writing in time (stuck stderr or disk?)");
        }
    }

    fn switch(&self, to: Destination) {
        self.shared.control.lock().unwrap_or_else(PoisonError::into_inner).next = Some(to);
        self.wake();
    }

    fn wake(&self) {
        self.shared.changed.store(true, Ordering::Release);
        // A full queue is fine: the writer looks at the control between batches anyway.
        let _ = self.queue.0.try_send(Msg::Wake);
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // 0640 like nginx's and Apache's logs under Debian: the owner writes, its group (adm) reads.
    std::fs::OpenOptions::new().create(true).append(true).mode(0o640).open(path)
}

struct Writer {
    out: BufWriter<Box<dyn Write + Send>>,
    /// Set after a write error was logged, so a full disk is reported once, not per line.
    failing: bool,
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>, shared: &Shared) {
        // Ends when every sender is gone (the porter and its snapshots dropped).
        while let Ok(first) = rx.recv() {
            let close = self.apply(shared);
            let mut next = Some(first);
            while let Some(msg) = next {
                if let Msg::Line(line) = msg {
                    self.write(&line);
                }
                next = rx.try_recv().ok();
            }
            self.flush();
            if let Some(done) = close {
                let _ = done.send(());
                return;
            }
        }
        self.flush();
    }

    /// Switches destination if asked; returns a pending close (answered after this batch).
    fn apply(&mut self, shared: &Shared) -> Option<tokio::sync::oneshot::Sender<()>> {
        if !shared.changed.swap(false, Ordering::Acquire) {
            return None;
        }
        let mut control = shared.control.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(next) = control.next.take() {
            self.flush();
            let out: Box<dyn Write + Send> = match next {
                Destination::Stderr => Box::new(std::io::stderr()),
                Destination::File(file) => Box::new(file),
            };
            self.out = BufWriter::with_capacity(64 * 1024, out);
            self.failing = false;
        }
        control.close.take()
    }

    fn write(&mut self, line: &[u8]) {
        if let Err(e) = self.out.write_all(line) {
            self.failed(&e);
        }
    }

    fn flush(&mut self) {
        match self.out.flush() {
            Ok(()) => self.failing = false,
            Err(e) => self.failed(&e),
        }
    }

    fn failed(&mut self, e: &std::io::Error) {
        if !self.failing {
            self.failing = true;
            tracing::error!(error = %e, "cannot write the access log");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(path: &Path) -> AccessLogConfig {
        AccessLogConfig { enabled: true, format: AccessLogFormat::Text, path: Some(path.to_path_buf()) }
    }

    fn wait_for(path: &Path, want: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(path).unwrap_or_default() != want {
            assert!(std::time::Instant::now() < deadline, "{path:?}: {:?}", std::fs::read_to_string(path));
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_failed_reopen_keeps_the_old_file_and_a_close_writes_out_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("logs");
        std::fs::create_dir(&folder).unwrap();
        let sink = Sink::start().unwrap();
        let log = sink.apply(sink.prepare(&config(&folder.join("access.log"))).unwrap()).unwrap();
        log.queue.push(b"one\n".to_vec());
        wait_for(&folder.join("access.log"), "one\n");

        // The folder moved away: the path cannot be opened again, the open file takes the lines.
        let moved = dir.path().join("moved");
        std::fs::rename(&folder, &moved).unwrap();
        sink.reopen();
        log.queue.push(b"two\n".to_vec());
        wait_for(&moved.join("access.log"), "one\ntwo\n");
        assert!(!folder.exists());

        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        for n in 0..100 {
            log.queue.push(format!("{n}\n").into_bytes());
        }
        runtime.block_on(sink.close());
        let text = std::fs::read_to_string(moved.join("access.log")).unwrap();
        assert_eq!(text.lines().count(), 102, "everything queued before the close is written");
    }

    #[test]
    fn a_file_that_cannot_be_opened_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Sink::start().unwrap();
        let err = sink.prepare(&config(&dir.path().join("no/such/access.log"))).err().unwrap();
        assert!(err.starts_with("access_log.path: cannot open ") && err.contains("no/such"), "{err}");
        let off = AccessLogConfig { enabled: false, ..config(&dir.path().join("off.log")) };
        assert!(sink.apply(sink.prepare(&off).unwrap()).is_none());
        assert!(!dir.path().join("off.log").exists(), "a log that is off opens nothing");
    }
}
