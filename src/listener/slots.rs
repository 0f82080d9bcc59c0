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
pub(crate) struct Slots {
    pub(super) semaphore: Arc<Semaphore>,
    size: std::sync::Mutex<usize>,
}

impl Slots {
    pub(crate) fn new(size: usize) -> Arc<Slots> {
        let size = size.max(1);
        Arc::new(Slots { semaphore: Arc::new(Semaphore::new(size)), size: std::sync::Mutex::new(size) })
    }

    pub(crate) fn resize(&self, new: usize) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_smaller_size_takes_effect_as_connections_close() {
        let slots = Slots::new(2);
        let first = slots.semaphore.clone().acquire_owned().await.unwrap();
        let second = slots.semaphore.clone().acquire_owned().await.unwrap();
        slots.resize(1);
        // Both slots are busy: the one to retire goes when a connection closes, not before.
        drop(first);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(slots.semaphore.available_permits(), 0, "the freed slot was retired");
        drop(second);
        assert_eq!(slots.semaphore.available_permits(), 1);
        slots.resize(3);
        assert_eq!(slots.semaphore.available_permits(), 3);
        slots.resize(2);
        assert_eq!(slots.semaphore.available_permits(), 2, "free slots retire at once");
    }
}
