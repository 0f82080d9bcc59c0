//! `X-Request-Id`: kept when a trusted proxy sent one, otherwise made here and
//! passed to the server, so one id follows a request through porter's access
//! log and the server's logs.
//!
//! An id is 32 hex digits, all random: 128 bits from a per-thread wyrand
//! generator seeded once from the OS's entropy (through std's `RandomState`).
//! Nothing in an id counts, so a server that echoes ids reveals no request
//! counts. No lock, no shared atomic, no system call per request; the only
//! allocation is the header value itself.

use std::cell::Cell;
use std::hash::BuildHasher;

use http::header::{HeaderName, HeaderValue};

use crate::http1::view::RequestFields;

pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

thread_local! {
    /// The thread's wyrand state. std's `RandomState` takes its keys from the OS
    /// (getrandom) once per thread: hashing anything with them is an unpredictable seed.
    static STATE: Cell<u64> = Cell::new(std::collections::hash_map::RandomState::new().hash_one(0x706f72746572u64));
}

/// One wyrand step (the generator fastrand uses; fast, passes PractRand/BigCrush).
fn wyrand(state: &Cell<u64>) -> u64 {
    let s = state.get().wrapping_add(0xa076_1d64_78bd_642f);
    state.set(s);
    let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
    (t as u64) ^ ((t >> 64) as u64)
}

/// The client's X-Request-Id when it is kept (from a trusted proxy); `None`:
/// porter makes one ([`generate`]) and it replaces any the client sent.
pub(crate) fn kept(fields: RequestFields<'_>, trusted: bool) -> Option<HeaderValue> {
    if trusted {
        fields.value(&X_REQUEST_ID)
    } else {
        None
    }
}

pub(crate) fn generate() -> HeaderValue {
    let (high, low) = STATE.with(|state| (wyrand(state), wyrand(state)));
    let mut text = [0u8; 32];
    hex(high, &mut text[..16]);
    hex(low, &mut text[16..]);
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
    use http::HeaderMap;

    #[test]
    fn ids_are_distinct_and_untrusted_ones_replaced() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        let mut headers = HeaderMap::new();
        headers.insert(&X_REQUEST_ID, HeaderValue::from_static("from-client"));
        assert_eq!(kept(RequestFields::Map(&headers), true).unwrap(), "from-client");
        assert_eq!(kept(RequestFields::Map(&headers), false), None, "an untrusted client's id is replaced");
    }

    /// No half of an id repeats or counts: a thread's ids share nothing visible.
    #[test]
    fn ids_have_no_shared_half_and_no_counter() {
        let ids: Vec<_> = (0..10_000).map(|_| generate().to_str().unwrap().to_owned()).collect();
        let highs: std::collections::HashSet<_> = ids.iter().map(|id| &id[..16]).collect();
        let lows: std::collections::HashSet<_> = ids.iter().map(|id| &id[16..]).collect();
        assert_eq!((highs.len(), lows.len()), (ids.len(), ids.len()));
        let step = |id: &str| u64::from_str_radix(&id[16..], 16).unwrap();
        let counting = ids.windows(2).filter(|w| step(&w[1]).wrapping_sub(step(&w[0])) == 1).count();
        assert_eq!(counting, 0);
        assert!(!ids.iter().any(|id| id.ends_with("0000000000000000")));
    }
}
