//! Record buffers: taken from a small per-thread pool while they hold bytes,
//! given back as soon as they are empty.

use std::cell::RefCell;

/// Largest record on the wire: 16 KiB of plaintext plus header, padding and tag.
pub(super) const MAX_RECORD: usize = 16384 + 256 + 5;
/// A record buffer holds two whole records: up to 32 KiB per read or write call.
pub(super) const BUF_SIZE: usize = 2 * MAX_RECORD;
/// Plaintext encrypted into one record.
pub(super) const MAX_PLAIN: usize = 16384;
/// Room kept per record for header, content type and tag (29 bytes at most in use).
pub(super) const OVERHEAD: usize = 64;
const POOL_PER_THREAD: usize = 32;

thread_local! {
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Bytes `start..end` of a pooled, fully initialised buffer.
pub(super) struct Buf {
    pub(super) data: Vec<u8>,
    pub(super) start: usize,
    pub(super) end: usize,
}

impl Buf {
    pub(super) fn take() -> Buf {
        let data = POOL.with(|p| p.borrow_mut().pop()).unwrap_or_else(|| vec![0; BUF_SIZE]);
        Buf { data, start: 0, end: 0 }
    }

    pub(super) fn give_back(self) {
        if self.data.len() == BUF_SIZE {
            POOL.with(|p| {
                let mut pool = p.borrow_mut();
                if pool.len() < POOL_PER_THREAD {
                    pool.push(self.data);
                }
            });
        }
    }
}

/// Gives a buffer back once nothing is left in it.
pub(super) fn release_if_empty(slot: &mut Option<Buf>) {
    if slot.as_ref().is_some_and(|b| b.start == b.end) {
        slot.take().expect("checked").give_back();
    }
}
