//! A byte-level follower of HTTP/1.1 request framing, fed every byte a client
//! sends before hyper parses it. It finds where each request head starts and
//! ends (for the 408 timer in `guard`) and flags a request that carries both
//! `Content-Length` and `Transfer-Encoding` (SPEC §8: 400 and close), or whose
//! chunked body is malformed in bytes that came with its head (so it is
//! refused before anything is forwarded, not cut off half way upstream).
//!
//! hyper sees such a head too, but silently drops the `Content-Length` and
//! frames the body as chunked, so the service cannot tell it apart from an
//! honest chunked request; hence this follower. It does not validate: where
//! the input is malformed hyper answers 400 and closes the connection, so the
//! follower just stops (`Lost`) instead of guessing. Bodies are skipped by
//! count (Content-Length, chunk sizes), so per-request cost is a scan of the
//! head and of chunk-size lines only.

/// Where in the request stream the follower is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Body(u64),
    ChunkSize {
        digits: u8,
        size: u64,
        ext: bool,
    },
    ChunkData(u64),
    ChunkEnd,
    Trailer {
        line: u32,
    },
    /// Malformed input (hyper closes the connection), an ambiguous head, or a
    /// tunnel: nothing more to follow.
    Lost,
}

const CL: &[u8] = b"content-length";
const TE: &[u8] = b"transfer-encoding";

/// The current head's scan: the line being read and what the head said.
#[derive(Debug, Default, Clone, Copy)]
struct HeadScan {
    /// Bytes of the head so far (leading empty lines included).
    bytes: u32,
    /// Bytes of the current line, CR excluded.
    line: u32,
    request_line_done: bool,
    /// Within a header line: still reading the name (before ':').
    in_name: bool,
    maybe_cl: bool,
    maybe_te: bool,
    /// Which header this line's value belongs to: 1 CL, 2 TE, 0 other.
    field: u8,
    /// Last 8 bytes of a TE value (lowercase, OWS collapsed) to find "chunked".
    tail: u64,
    pending_ws: bool,
    /// The current Content-Length line's value (None: not a number).
    cl_line: Option<u64>,
    cl_digits: u8,
    /// The head's Content-Length (equal duplicates are one value, as in hyper).
    cl: Option<u64>,
    cl_bad: bool,
    te: bool,
    te_chunked: bool,
}

/// Follows one HTTP/1.1 connection's request stream.
#[derive(Debug, Clone)]
pub struct Framing {
    state: State,
    head: HeadScan,
    /// Heads completed so far (the index of the next one).
    heads: u64,
    /// Index of the first request with both Content-Length and Transfer-Encoding
    /// or a malformed chunked body.
    rejected: Option<u64>,
}

impl Default for Framing {
    fn default() -> Self {
        Framing::new()
    }
}

impl Framing {
    pub fn new() -> Framing {
        Framing { state: State::Head, head: HeadScan::default(), heads: 0, rejected: None }
    }

    /// Index (0-based, per connection) of the first request seen to have both
    /// Content-Length and Transfer-Encoding, or a malformed chunked body.
    pub fn rejected(&self) -> Option<u64> {
        self.rejected
    }

    /// Malformed chunked framing of the request whose body is being read.
    fn bad_body(&mut self) -> State {
        self.rejected.get_or_insert(self.heads - 1);
        State::Lost
    }

    /// A head has begun (at least one byte) and is not complete yet.
    pub fn head_in_progress(&self) -> bool {
        self.state == State::Head && self.head.bytes > 0
    }

    /// Whether the follower still knows where it is (false after malformed
    /// input, an ambiguous head, or [`Framing::stop`]).
    pub fn following(&self) -> bool {
        self.state != State::Lost
    }

    /// The connection became a tunnel (101 Switching Protocols): stop.
    pub fn stop(&mut self) {
        self.state = State::Lost;
    }

    /// Takes in the next bytes the client sent.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.state {
                State::Lost => return,
                State::Body(left) => {
                    let n = left.min(data.len() as u64);
                    data = &data[n as usize..];
                    self.state = if n == left { State::Head } else { State::Body(left - n) };
                }
                State::ChunkData(left) => {
                    let n = left.min(data.len() as u64);
                    data = &data[n as usize..];
                    self.state = if n == left { State::ChunkEnd } else { State::ChunkData(left - n) };
                }
                _ => {
                    self.byte(data[0]);
                    data = &data[1..];
                }
            }
        }
    }

    fn byte(&mut self, b: u8) {
        match self.state {
            State::Head => self.head_byte(b),
            State::ChunkSize { digits, size, ext } => {
                self.state = match b {
                    b'\n' if digits == 0 => self.bad_body(),
                    b'\n' if size == 0 => State::Trailer { line: 0 },
                    b'\n' => State::ChunkData(size),
                    b'\r' => self.state,
                    _ if ext => self.state,
                    b';' => State::ChunkSize { digits, size, ext: true },
                    b' ' | b'\t' if digits > 0 => self.state,
                    _ => match (b as char).to_digit(16) {
                        // 15 hex digits keep the size far from overflow; hyper refuses more.
                        Some(d) if digits < 15 => {
                            State::ChunkSize { digits: digits + 1, size: size * 16 + u64::from(d), ext }
                        }
                        _ => self.bad_body(),
                    },
                };
            }
            State::ChunkEnd => {
                self.state = match b {
                    b'\r' => State::ChunkEnd,
                    b'\n' => State::ChunkSize { digits: 0, size: 0, ext: false },
                    _ => self.bad_body(),
                }
            }
            State::Trailer { line } => {
                self.state = match b {
                    b'\n' if line == 0 => self.next_head(),
                    b'\n' => State::Trailer { line: 0 },
                    b'\r' => self.state,
                    _ => State::Trailer { line: line.saturating_add(1) },
                }
            }
            State::Body(_) | State::ChunkData(_) | State::Lost => {}
        }
    }

    fn next_head(&mut self) -> State {
        self.head = HeadScan::default();
        State::Head
    }

    fn head_byte(&mut self, b: u8) {
        let h = &mut self.head;
        h.bytes = h.bytes.saturating_add(1);
        match b {
            b'\r' => {}
            b'\n' if h.line == 0 && !h.request_line_done => {} // leading empty lines: hyper skips them
            b'\n' if h.line == 0 => self.end_of_head(),
            b'\n' => {
                if h.request_line_done && h.field == 1 {
                    match (h.cl_line, h.cl) {
                        (Some(v), None) if h.cl_digits > 0 => h.cl = Some(v),
                        (Some(v), Some(prev)) if h.cl_digits > 0 && v == prev => {}
                        _ => h.cl_bad = true, // hyper answers 400 and closes
                    }
                }
                if h.request_line_done && h.field == 2 {
                    // Only the last Transfer-Encoding line counts, as in hyper.
                    h.te_chunked = h.tail & 0xFF_FFFF_FFFF_FFFF == u64::from_be_bytes(*b"\0chunked")
                        && matches!((h.tail >> 56) as u8, 0 | b' ' | b',');
                }
                h.request_line_done = true;
                h.line = 0;
                h.in_name = true;
                h.maybe_cl = true;
                h.maybe_te = true;
                h.field = 0;
            }
            _ => {
                h.line = h.line.saturating_add(1);
                if !h.request_line_done {
                    return;
                }
                if h.in_name {
                    if b == b':' {
                        h.in_name = false;
                        let len = h.line as usize - 1;
                        h.field = if h.maybe_cl && len == CL.len() {
                            1
                        } else if h.maybe_te && len == TE.len() {
                            h.te = true;
                            h.tail = 0;
                            h.pending_ws = false;
                            2
                        } else {
                            0
                        };
                        if h.field == 1 {
                            h.cl_line = Some(0);
                            h.cl_digits = 0;
                        }
                        return;
                    }
                    let at = h.line as usize - 1;
                    let lower = b.to_ascii_lowercase();
                    h.maybe_cl &= CL.get(at) == Some(&lower);
                    h.maybe_te &= TE.get(at) == Some(&lower);
                    return;
                }
                match h.field {
                    1 => match (b, h.cl_line) {
                        (b' ' | b'\t', _) => {}
                        (b'0'..=b'9', Some(n)) => {
                            h.cl_line = n.checked_mul(10).and_then(|n| n.checked_add(u64::from(b - b'0')));
                            h.cl_digits = h.cl_digits.saturating_add(1);
                        }
                        _ => h.cl_line = None,
                    },
                    2 => {
                        if b == b' ' || b == b'\t' {
                            h.pending_ws = true;
                        } else {
                            if h.pending_ws && b != b',' {
                                h.tail = (h.tail << 8) | u64::from(b' ');
                            }
                            h.pending_ws = false;
                            h.tail = (h.tail << 8) | u64::from(b.to_ascii_lowercase());
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    fn end_of_head(&mut self) {
        let h = self.head;
        let index = self.heads;
        self.heads += 1;
        self.state = if h.te && (h.cl.is_some() || h.cl_bad) {
            self.rejected.get_or_insert(index);
            State::Lost
        } else if h.te {
            if h.te_chunked {
                State::ChunkSize { digits: 0, size: 0, ext: false }
            } else {
                State::Lost
            }
        } else if h.cl_bad {
            State::Lost
        } else {
            match h.cl {
                Some(n) if n > 0 => State::Body(n),
                _ => State::Head,
            }
        };
        self.head = HeadScan::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fed(parts: &[&[u8]]) -> Framing {
        let mut f = Framing::new();
        for p in parts {
            f.feed(p);
        }
        f
    }

    #[test]
    fn both_orders_of_cl_and_te_are_ambiguous() {
        let a = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        let b = b"POST / HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\ncontent-length:5\r\n\r\n";
        assert_eq!(fed(&[a]).rejected(), Some(0));
        assert_eq!(fed(&[b]).rejected(), Some(0));
        // Split at every byte: the same verdict.
        let mut f = Framing::new();
        for byte in a.chunks(1) {
            f.feed(byte);
        }
        assert_eq!(f.rejected(), Some(0));
    }

    #[test]
    fn pipelined_requests_are_followed_through_bodies() {
        let stream: &[u8] = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\n\r\nContent-Lengt\
            POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
            5;ext=1\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n\
            \r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n\
            GET /d HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(fed(&[stream]).rejected(), Some(3));
        for split in 1..stream.len() {
            let (a, b) = stream.split_at(split);
            assert_eq!(fed(&[a, b]).rejected(), Some(3), "split at {split}");
        }
    }

    #[test]
    fn names_must_match_whole() {
        let f = fed(&[b"GET / HTTP/1.1\r\nX-Content-Length: 1\r\nTransfer-Encodings: chunked\r\n\r\n"]);
        assert_eq!(f.rejected(), None);
        assert!(f.following() && !f.head_in_progress());
    }

    #[test]
    fn head_progress_and_lost_states() {
        let mut f = Framing::new();
        assert!(!f.head_in_progress());
        f.feed(b"GET / HTTP/1.1\r\nHost:");
        assert!(f.head_in_progress());
        f.feed(b" x\r\n\r\n");
        assert!(!f.head_in_progress());
        // Transfer-Encoding without chunked last: hyper refuses it; stop following.
        f.feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
        assert!(!f.following());
        let mut f = Framing::new();
        f.feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n");
        assert!(!f.following());
        let mut f = Framing::new();
        f.feed(b"GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
        assert!(!f.following(), "bad chunk size");
        assert_eq!(f.rejected(), Some(1));
        let mut f = Framing::new();
        f.feed(b"POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n");
        assert!(!f.following(), "bad content-length");
        let mut f = Framing::new();
        f.feed(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
        assert!(!f.following(), "differing content-lengths");
        // Equal duplicates are one length (hyper agrees) and following goes on.
        let mut f = Framing::new();
        f.feed(b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nabGET / HTTP/1.1\r\n");
        assert!(f.following() && f.head_in_progress());
    }
}
