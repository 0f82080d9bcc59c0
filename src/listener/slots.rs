//! Connection slots: how many connections one listener holds open at once
//! (`limits.max_connections`, per listener). Beyond it new connections wait in
//! the kernel backlog. A reload resizes the slots: more take effect at once,
//! fewer as connections close.

use std::sync::Arc;

use tokio::sync::Semaphore;

/// One listener's connection slots (`limits.max_connections`), resized by a reload. A
/// smaller size takes effect as connections close: the surplus slots are retired as
/// they come free, before any new connection gets one.
#[derive(Debug)]
pub struct Slots {
    pub(super) semaphore: Arc<Semaphore>,
    size: std::sync::Mutex<usize>,
}

impl Slots {
    pub fn new(size: usize) -> Arc<Slots> {
        let size = size.max(1);
        Arc::new(Slots { semaphore: Arc::new(Semaphore::new(size)), size: std::sync::Mutex::new(size) })
    }

    pub fn resize(&self, new: usize) {
        let new = new.max(1);
        let mut size = self.size.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if new > *size {
            self.semaphore.add_permits(new - *size);
        } else if new < *size {
            let surplus = *size - new;
            let pending = surplus - self.semaphore.forget_permits(surplus);
            if pending > 0 {
                let semaphore = self.semaphore.clone();
                tokio::spawn(async move {
                    if let Ok(permits) = semaphore.acquire_many_owned(pending as u32).await {
                        permits.forget();
                    }
                });
            }
        }
        *size = new;
    }
}
