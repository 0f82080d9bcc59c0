//! `--watch`: notices when the configuration file's content changes, so the
//! binary can reload it exactly as SIGHUP does.
//!
//! Like the certificate folder's watcher (`tls::watch`) it polls instead of
//! asking the OS for file events: it reads the file through its path every
//! tick, following symlinks, and compares the bytes. That one rule sees every
//! way a file gets replaced — an editor writing in place, an editor writing a
//! temporary file and renaming it over, and the Kubernetes ConfigMap swap
//! (`porter.yaml -> ..data/porter.yaml`, `..data` renamed to point at a new
//! timestamped folder), where an inotify watch on the file itself would stay on
//! the old inode — as well as network and overlay volumes that deliver no
//! events at all. A configuration is a few KiB; reading it four times a second
//! costs nothing measurable.
//!
//! Debounce: a change is reported once the content has stayed the same for one
//! whole tick, so a file written in several pieces is reloaded once, when the
//! writer is done. A file that is still half-written (or invalid) when it
//! settles is refused by the reload like any bad file, and the old
//! configuration keeps serving; the next change is picked up as usual.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// How often the file is read: a change is reported within about two ticks.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// A running watch: [`ConfigWatch::changed`] resolves each time the file's content
/// changed and settled. Dropping it stops the polling task.
#[derive(Debug)]
pub struct ConfigWatch {
    changes: mpsc::Receiver<()>,
    task: JoinHandle<()>,
}

impl ConfigWatch {
    /// Starts polling `path` every `every` (needs a tokio runtime). The content now
    /// (read before this returns, so no later change can slip into the baseline) is
    /// what the running configuration was loaded from: only a change from it is reported.
    pub fn start(path: PathBuf, every: Duration) -> ConfigWatch {
        // One pending notice is enough: a reload reads the file as it is then.
        let (tx, changes) = mpsc::channel(1);
        let baseline = std::fs::read(&path).map_err(|e| e.kind());
        let task = tokio::spawn(poll(path, every, baseline, tx));
        ConfigWatch { changes, task }
    }

    /// Waits for the next settled change (never resolves if the task ended).
    pub async fn changed(&mut self) {
        if self.changes.recv().await.is_none() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for ConfigWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The file's bytes, or the kind of error reading it gave (a file missing for a
/// moment while an editor swaps it is a state like any other and must settle too).
type Content = Result<Vec<u8>, std::io::ErrorKind>;

async fn read(path: &std::path::Path) -> Content {
    let path = path.to_path_buf();
    // File IO stays off the async workers.
    match tokio::task::spawn_blocking(move || std::fs::read(&path).map_err(|e| e.kind())).await {
        Ok(content) => content,
        Err(_) => Err(std::io::ErrorKind::Other),
    }
}

async fn poll(path: PathBuf, every: Duration, baseline: Content, changes: mpsc::Sender<()>) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick.tick().await;
    // What the running configuration was read from (or last reported), and what the
    // previous tick saw.
    let mut reported = baseline;
    let mut previous = reported.clone();
    loop {
        tick.tick().await;
        let now = read(&path).await;
        if now != previous {
            // Still changing (or just changed): wait one more tick for it to settle.
            tracing::debug!(config = %path.display(), "configuration file changed; waiting for it to settle");
            previous = now;
            continue;
        }
        if now != reported {
            tracing::info!(config = %path.display(), "configuration file changed: reloading (--watch)");
            reported = now;
            // Full means a reload is already pending; it will read the newest content.
            if let Err(mpsc::error::TrySendError::Closed(())) = changes.try_send(()) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    async fn next(watch: &mut ConfigWatch) -> bool {
        tokio::time::timeout(Duration::from_secs(3), watch.changed()).await.is_ok()
    }

    #[tokio::test]
    async fn reports_a_settled_change_once_and_ignores_rewrites_of_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("porter.yaml");
        fs::write(&path, "a: 1\n").unwrap();
        let mut watch = ConfigWatch::start(path.clone(), Duration::from_millis(20));
        tokio::time::sleep(Duration::from_millis(60)).await;
        // A burst of writes is one change.
        for n in 2..6 {
            fs::write(&path, format!("a: {n}\n")).unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(next(&mut watch).await, "change not reported");
        assert!(
            tokio::time::timeout(Duration::from_millis(300), watch.changed()).await.is_err(),
            "one burst reported twice"
        );
        // The same bytes again (a touch, a no-op save): nothing to reload.
        fs::write(&path, "a: 5\n").unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(300), watch.changed()).await.is_err());
        // A removed file is a change too (the reload will refuse it), and so is its return.
        fs::remove_file(&path).unwrap();
        assert!(next(&mut watch).await, "removal not reported");
        fs::write(&path, "a: 6\n").unwrap();
        assert!(next(&mut watch).await, "new file not reported");
    }
}
