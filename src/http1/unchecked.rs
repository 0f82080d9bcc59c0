//! The two unchecked steps of the HTTP/1.1 byte path, each with its SAFETY
//! reasoning once: header values made from bytes httparse already validated
//! (a second scan per field is what porter saves), and the fields' spans kept
//! on the stack without zeroing the slots no field uses.

use std::mem::MaybeUninit;
use std::ops::Range;

use bytes::Bytes;
use http::HeaderValue;

/// The field value at `range` of `head`, sharing its bytes: no copy, no scan.
///
/// `range` is a field value httparse accepted in `head` (every caller takes it
/// from a `request::Span` made from httparse's fields). Debug builds check the
/// bytes again (`http` does, inside `from_maybe_shared_unchecked`).
pub(crate) fn parsed_value(head: &Bytes, range: Range<usize>) -> HeaderValue {
    // SAFETY: httparse accepts a field value of visible ASCII, obs-text
    // (0x80-0xff), space and tab only: the bytes `HeaderValue` allows.
    unsafe { HeaderValue::from_maybe_shared_unchecked(head.slice(range)) }
}

/// Up to `N` values on the stack, written one after the other and read as a
/// slice. The slots past the last one written stay uninitialised: zeroing a
/// head's worth of spans would cost more than parsing it.
pub(crate) struct Filled<T: Copy, const N: usize> {
    slots: [MaybeUninit<T>; N],
    len: usize,
}

impl<T: Copy, const N: usize> Filled<T, N> {
    pub(crate) const fn new() -> Self {
        Filled { slots: [const { MaybeUninit::uninit() }; N], len: 0 }
    }

    /// Adds `value` after the others. Panics past `N` (callers push at most one
    /// value per field, and httparse refuses more fields than that).
    #[inline]
    pub(crate) fn push(&mut self, value: T) {
        self.slots[self.len].write(value);
        self.len += 1;
    }

    #[inline]
    pub(crate) fn as_slice(&self) -> &[T] {
        // SAFETY: `push` wrote the first `len` slots (and only it changes `len`);
        // `MaybeUninit<T>` has `T`'s layout, and `T: Copy` needs no drop.
        unsafe { std::slice::from_raw_parts(self.slots.as_ptr().cast::<T>(), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_reads_back_what_was_pushed_and_no_more() {
        let mut spans: Filled<(u32, u32), 4> = Filled::new();
        assert!(spans.as_slice().is_empty());
        spans.push((1, 2));
        spans.push((3, 4));
        assert_eq!(spans.as_slice(), &[(1, 2), (3, 4)]);
        spans.push((5, 6));
        spans.push((7, 8));
        assert_eq!(spans.as_slice().len(), 4);
    }

    #[test]
    #[should_panic]
    fn filled_refuses_one_past_its_room() {
        let mut spans: Filled<u8, 1> = Filled::new();
        spans.push(1);
        spans.push(2);
    }

    #[test]
    fn a_parsed_value_shares_the_head_and_keeps_obs_text() {
        let head = Bytes::from_static(b"X-A: caf\xc3\xa9 \tok\r\n\r\n");
        let mut fields = [httparse::EMPTY_HEADER; 1];
        let (_, parsed) = httparse::parse_headers(&head, &mut fields).unwrap().unwrap();
        let start = parsed[0].value.as_ptr() as usize - head.as_ptr() as usize;
        let value = parsed_value(&head, start..start + parsed[0].value.len());
        assert_eq!(value.as_bytes(), b"caf\xc3\xa9 \tok");
        assert_eq!(value.as_bytes().as_ptr(), parsed[0].value.as_ptr(), "shared, not copied");
    }
}
