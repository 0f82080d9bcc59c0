//! `X-Request-Id`: kept when a trusted proxy sent one, otherwise made here and
//! passed to the server, so one id follows a request through porter's access
//! log and the server's logs.
//!
//! An id is 32 hex digits: a random 64-bit prefix per worker thread and that
//! thread's counter. No lock, no shared atomic, no system call per request;
//! the only allocation is the header value itself.

use std::cell::Cell;

use http::header::{HeaderMap, HeaderName, HeaderValue};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

thread_local! {
    static NEXT: Cell<(u64, u64)> = Cell::new((fastrand::u64(..), 0));
}

/// The request's id: the incoming one from a trusted client, else a new one, which is
/// set on `headers` (replacing any the client sent).
pub fn ensure(headers: &mut HeaderMap, trusted: bool) -> HeaderValue {
    if trusted {
        if let Some(id) = headers.get(&X_REQUEST_ID) {
            return id.clone();
        }
    }
    let id = generate();
    headers.insert(X_REQUEST_ID.clone(), id.clone());
    id
}

pub fn generate() -> HeaderValue {
    let (prefix, count) = NEXT.with(|next| {
        let (prefix, count) = next.get();
        next.set((prefix, count.wrapping_add(1)));
        (prefix, count)
    });
    let mut text = [0u8; 32];
    hex(prefix, &mut text[..16]);
    hex(count, &mut text[16..]);
    HeaderValue::from_bytes(&text).expect("hex digits are a valid header value")
}

fn hex(mut value: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(value & 0xf) as usize];
        value >>= 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_untrusted_ones_replaced() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        let mut headers = HeaderMap::new();
        headers.insert(&X_REQUEST_ID, HeaderValue::from_static("from-client"));
        assert_eq!(ensure(&mut headers.clone(), true), "from-client");
        let made = ensure(&mut headers, false);
        assert_ne!(made, "from-client");
        assert_eq!(headers.get(&X_REQUEST_ID), Some(&made));
    }
}
