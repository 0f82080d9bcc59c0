//! Stopping: accepting ends, requests in flight finish within the timeout; after a
//! hand-over the admin listener and HTTP/3's socket are let go first.

use std::time::Duration;

use super::Porter;

impl Porter {
    /// [`Porter::shutdown`] after a new process took the listeners over: the admin
    /// listener stops accepting at once too (the new process answers health checks;
    /// this one's would say 503 while it drains).
    pub async fn hand_over(self, timeout: Duration) {
        let _ = self.admin_stop.send(true);
        if let Some(http3) = &self.http3 {
            http3.let_go().await;
        }
        self.shutdown(timeout).await;
    }

    /// Stops accepting, lets open connections finish their requests for up to `timeout`, then returns.
    pub async fn shutdown(mut self, timeout: Duration) {
        // The copies kept for a hand-over would hold the sockets open (connections
        // would wait in the backlog instead of being refused).
        self.listening.clear();
        // /healthz answers 503 from here on, while the admin listener keeps serving.
        self.drain.begin();
        let _ = self.stop.send(true);
        self.acme.shutdown();
        for task in self.accept_tasks {
            let _ = task.await;
        }
        if let Some(task) = &self.cert_watch.lock().unwrap_or_else(std::sync::PoisonError::into_inner).task {
            task.abort();
        }
        for task in self.background {
            task.abort();
        }
        self.shared.runtime.load().cancel.cancel();
        if tokio::time::timeout(timeout, self.drain.drain()).await.is_err() {
            tracing::warn!(?timeout, "shutdown timeout reached with connections still open");
        }
        if let Some(task) = self.admin_task {
            task.abort();
        }
        // The lines of the last requests, written before the process exits.
        self.access_log.close().await;
    }
}
