//! Graceful shutdown, shared by the listeners, the proxy's upgrade tunnels and
//! the admin listener: one [`Drain`] per porter, one [`DrainWatch`] held by
//! every connection and tunnel. [`Drain::drain`] tells them all to finish and
//! waits until every watch has been dropped. [`Drain::is_draining`] is a single
//! atomic load, for health endpoints that must answer 503 once a stop began.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

#[derive(Debug)]
pub(crate) struct Drain {
    signal: watch::Sender<()>,
    draining: AtomicBool,
}

/// Held by a connection (or tunnel) for its life; shutdown waits until all are dropped.
#[derive(Debug, Clone)]
pub(crate) struct DrainWatch(watch::Receiver<()>);

impl Drain {
    pub(crate) fn new() -> Drain {
        Drain { signal: watch::channel(()).0, draining: AtomicBool::new(false) }
    }

    pub(crate) fn watch(&self) -> DrainWatch {
        DrainWatch(self.signal.subscribe())
    }

    /// Marks porter as stopping (health checks of porter itself fail from now on)
    /// without yet telling connections to finish: the accept loops stop first.
    pub(crate) fn begin(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// True once a stop has begun.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Signals every watch to finish, then waits until all of them are dropped.
    pub(crate) async fn drain(&self) {
        self.begin();
        let _ = self.signal.send(());
        self.signal.closed().await;
    }
}

impl Default for Drain {
    fn default() -> Self {
        Drain::new()
    }
}

impl DrainWatch {
    /// Resolves when the drain is signalled.
    pub(crate) async fn signalled(&mut self) {
        let _ = self.0.changed().await;
    }

    /// Whether the drain has been signalled (and not yet awaited through `signalled`).
    pub(crate) fn is_signalled(&self) -> bool {
        self.0.has_changed().unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn drain_waits_for_every_watch() {
        let drain = std::sync::Arc::new(Drain::new());
        assert!(!drain.is_draining());
        let mut watch = drain.watch();
        let held = tokio::spawn(async move {
            watch.signalled().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(watch);
        });
        tokio::time::timeout(Duration::from_secs(5), drain.drain()).await.expect("drain finished");
        assert!(drain.is_draining());
        held.await.unwrap();
    }
}
