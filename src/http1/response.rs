//! Writing a response head for an HTTP/1.x client, and choosing how its body
//! is framed, by the rules hyper's server follows:
//!
//! - 1xx, 204, 304 and a 2xx to CONNECT carry no body and no length;
//! - a response to HEAD keeps the server's Content-Length, and has no body;
//! - a body of known size gets `content-length`; one of unknown size is
//!   chunked for HTTP/1.1 clients and delimited by the close for HTTP/1.0;
//! - `connection: close` when the connection ends after this response, and
//!   `connection: keep-alive` for an HTTP/1.0 client that keeps it;
//! - `date` when the response has none (formatted once a second per thread).
//!
//! A 101 is written as it came: its Connection and Upgrade are the handshake.

use std::cell::RefCell;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use http::header::{self, HeaderMap};
use http::{Method, StatusCode};
use http_body::SizeHint;

use super::fields::{self, RawFields};
use super::request::has_token;

/// How the body after the head is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    /// Nothing follows the head.
    None,
    Length(u64),
    Chunked,
    /// Written until the connection closes (HTTP/1.0 clients, unknown length).
    Close,
}

/// What the head writer needs to know about the request it answers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answering<'a> {
    pub method: &'a Method,
    pub http11: bool,
}

/// Writes the head into `dst`; returns the body's framing. `keep_alive` goes
/// in as what the request allows and comes out as what this response allows.
/// `raw`: a server's fields kept as bytes (see `fields`), written after
/// `headers` (porter's own, which replace a server field of the same name).
pub(crate) fn write_head(
    dst: &mut BytesMut,
    status: StatusCode,
    headers: &HeaderMap,
    raw: Option<&RawFields>,
    body: &SizeHint,
    to: Answering<'_>,
    keep_alive: &mut bool,
) -> BodyFraming {
    status_line(dst, status);
    if status == StatusCode::SWITCHING_PROTOCOLS {
        for (name, value) in headers {
            field(dst, name.as_str().as_bytes(), value.as_bytes());
        }
        date_if_missing(dst, headers.contains_key(header::DATE));
        dst.extend_from_slice(b"\r\n");
        return BodyFraming::None;
    }
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || (*to.method == Method::CONNECT && status.is_success());
    let framing = if bodiless || *to.method == Method::HEAD {
        BodyFraming::None
    } else if let Some(n) = body.exact() {
        BodyFraming::Length(n)
    } else if to.http11 {
        BodyFraming::Chunked
    } else {
        BodyFraming::Close
    };
    if framing == BodyFraming::Close {
        *keep_alive = false;
    }
    // A HEAD answer says how long the body would be; the others are framed below.
    let mut length_wanted = *to.method == Method::HEAD && !bodiless;
    for (name, value) in headers {
        match *name {
            header::CONTENT_LENGTH => {
                if std::mem::take(&mut length_wanted) {
                    field(dst, b"content-length", value.as_bytes());
                }
            }
            header::TRANSFER_ENCODING => {}
            header::CONNECTION => {
                if has_token(value.as_bytes(), b"close") {
                    *keep_alive = false;
                }
            }
            header::TRAILER if framing != BodyFraming::Chunked => {}
            _ => field(dst, name.as_str().as_bytes(), value.as_bytes()),
        }
    }
    if let Some(raw) = raw {
        for (name, value, special) in raw.iter() {
            match if special { fields::kind(name) } else { fields::Kind::Other } {
                fields::Kind::ContentLength => {
                    if std::mem::take(&mut length_wanted) {
                        field(dst, b"content-length", value);
                    }
                    continue;
                }
                fields::Kind::HopByHop => {
                    if name.eq_ignore_ascii_case(b"connection") && has_token(value, b"close") {
                        *keep_alive = false;
                    }
                    continue;
                }
                _ => {}
            }
            // porter's own fields (HSTS) replace a server's of the same name; there are few.
            if headers.keys().any(|own| own.as_str().as_bytes().eq_ignore_ascii_case(name)) {
                continue;
            }
            field(dst, name, value);
        }
    }
    match framing {
        BodyFraming::Length(n) => {
            dst.extend_from_slice(b"content-length: ");
            let mut digits = itoa_buf(n);
            dst.extend_from_slice(digits.as_bytes());
            digits.clear();
            dst.extend_from_slice(b"\r\n");
        }
        BodyFraming::Chunked => dst.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        BodyFraming::None | BodyFraming::Close => {}
    }
    if !*keep_alive {
        dst.extend_from_slice(b"connection: close\r\n");
    } else if !to.http11 {
        dst.extend_from_slice(b"connection: keep-alive\r\n");
    }
    date_if_missing(dst, headers.contains_key(header::DATE) || raw.is_some_and(RawFields::has_date));
    dst.extend_from_slice(b"\r\n");
    framing
}

/// A fixed response porter writes itself when a head is refused (the
/// connection closes after it).
pub(crate) fn write_refusal(dst: &mut BytesMut, status: StatusCode, message: &str, hsts: Option<&http::HeaderValue>) {
    status_line(dst, status);
    dst.extend_from_slice(b"content-type: text/plain; charset=utf-8\r\ncontent-length: ");
    dst.extend_from_slice(itoa_buf(message.len() as u64).as_bytes());
    dst.extend_from_slice(b"\r\nconnection: close\r\n");
    if let Some(hsts) = hsts {
        dst.extend_from_slice(b"strict-transport-security: ");
        dst.extend_from_slice(hsts.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
    date_if_missing(dst, false);
    dst.extend_from_slice(b"\r\n");
    dst.extend_from_slice(message.as_bytes());
}

fn status_line(dst: &mut BytesMut, status: StatusCode) {
    if status == StatusCode::OK {
        dst.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        return;
    }
    dst.extend_from_slice(b"HTTP/1.1 ");
    dst.extend_from_slice(status.as_str().as_bytes());
    dst.extend_from_slice(b" ");
    dst.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
    dst.extend_from_slice(b"\r\n");
}

/// The last chunk of a chunked body (`0`), its trailer fields, and the blank line.
pub(crate) fn write_last_chunk(dst: &mut BytesMut, trailers: Option<&HeaderMap>) {
    dst.extend_from_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flatten() {
        field(dst, name.as_str().as_bytes(), value.as_bytes());
    }
    dst.extend_from_slice(b"\r\n");
}

fn field(dst: &mut BytesMut, name: &[u8], value: &[u8]) {
    dst.extend_from_slice(name);
    dst.extend_from_slice(b": ");
    dst.extend_from_slice(value);
    dst.extend_from_slice(b"\r\n");
}

fn date_if_missing(dst: &mut BytesMut, has_date: bool) {
    if has_date {
        return;
    }
    dst.extend_from_slice(b"date: ");
    DATE.with(|cached| {
        let mut cached = cached.borrow_mut();
        let now = SystemTime::now();
        let second = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        if cached.0 != second {
            let mut text = [0u8; 29];
            let _ = write!(&mut text[..], "{}", httpdate::HttpDate::from(now));
            *cached = (second, text);
        }
        dst.extend_from_slice(&cached.1);
    });
    dst.extend_from_slice(b"\r\n");
}

thread_local! {
    static DATE: RefCell<(u64, [u8; 29])> = const { RefCell::new((0, [0; 29])) };
}

/// Decimal digits of `n` without allocating.
fn itoa_buf(n: u64) -> Digits {
    let mut digits = Digits { buf: [0; 20], start: 20 };
    let mut n = n;
    loop {
        digits.start -= 1;
        digits.buf[digits.start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return digits;
        }
    }
}

struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
    fn clear(&mut self) {
        self.start = 20;
    }
}

/// The size line of a chunk: hex digits and CRLF.
pub(crate) fn chunk_size_line(len: usize) -> ([u8; 18], usize) {
    let mut line = [0u8; 18];
    let hex = format_hex(len, &mut line);
    (line, hex)
}

fn format_hex(mut n: usize, out: &mut [u8; 18]) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut tmp = [0u8; 16];
    let mut i = 16;
    loop {
        i -= 1;
        tmp[i] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    let len = 16 - i;
    out[..len].copy_from_slice(&tmp[i..]);
    out[len] = b'\r';
    out[len + 1] = b'\n';
    len + 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn head(
        status: u16,
        headers: &[(&'static str, &'static str)],
        hint: SizeHint,
        method: Method,
        http11: bool,
    ) -> (String, BodyFraming, bool) {
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.append(*n, HeaderValue::from_static(v));
        }
        let mut dst = BytesMut::new();
        let mut keep = true;
        let framing = write_head(
            &mut dst,
            StatusCode::from_u16(status).unwrap(),
            &map,
            None,
            &hint,
            Answering { method: &method, http11 },
            &mut keep,
        );
        (String::from_utf8(dst.to_vec()).unwrap(), framing, keep)
    }

    #[test]
    fn framing_choices() {
        let (text, framing, keep) =
            head(200, &[("content-length", "5"), ("x-a", "1")], SizeHint::with_exact(5), Method::GET, true);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("content-length: 5\r\n") && text.contains("x-a: 1\r\n") && text.contains("date: "));
        assert_eq!(text.matches("content-length").count(), 1);
        assert_eq!((framing, keep), (BodyFraming::Length(5), true));

        let (text, framing, _) = head(200, &[], SizeHint::new(), Method::GET, true);
        assert!(text.contains("transfer-encoding: chunked\r\n"));
        assert_eq!(framing, BodyFraming::Chunked);

        let (text, framing, keep) = head(200, &[], SizeHint::new(), Method::GET, false);
        assert!(text.contains("connection: close\r\n") && !text.contains("chunked"));
        assert_eq!((framing, keep), (BodyFraming::Close, false));

        let (text, framing, _) = head(200, &[("content-length", "99")], SizeHint::with_exact(0), Method::HEAD, true);
        assert!(text.contains("content-length: 99\r\n"));
        assert_eq!(framing, BodyFraming::None);

        let (text, framing, _) =
            head(304, &[("content-length", "99"), ("etag", "\"x\"")], SizeHint::with_exact(0), Method::GET, true);
        assert!(!text.contains("content-length") && text.contains("etag"));
        assert_eq!(framing, BodyFraming::None);

        let (text, _, keep) = head(400, &[("connection", "close")], SizeHint::with_exact(3), Method::GET, true);
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n") && text.contains("connection: close\r\n"));
        assert!(!keep);

        let (text, _, _) = head(200, &[], SizeHint::with_exact(0), Method::GET, false);
        assert!(text.contains("connection: keep-alive\r\ncontent") || text.contains("connection: keep-alive\r\n"));
        assert!(text.contains("content-length: 0\r\n"));
    }

    #[test]
    fn chunk_lines() {
        let (line, len) = chunk_size_line(0x1a2b);
        assert_eq!(&line[..len], b"1a2b\r\n");
        let (line, len) = chunk_size_line(0);
        assert_eq!(&line[..len], b"0\r\n");
    }
}
