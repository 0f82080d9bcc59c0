//! Parsing a request head from the client's bytes with `httparse` (the parser
//! under hyper), and deciding its framing by RFC 9112 §6.3 and docs/security.md, Request framing:
//!
//! - `Transfer-Encoding` and `Content-Length` together: refused (400 and
//!   close), in either order, where hyper would drop the length;
//! - `Transfer-Encoding` in HTTP/1.0, or whose last coding is not `chunked`
//!   (on any of its lines): 400; one ending in `chunked` after other codings
//!   (`gzip, chunked`, on one line or several): 501, as nginx answers and RFC
//!   9112 §6.1 advises: porter cannot undo them and will not pass them on;
//! - `Expect: 100-continue` counts only in HTTP/1.1 (RFC 9110 §10.1.1);
//! - field names with `_` are dropped unless `keep_underscores`
//!   (`limits.underscores_in_headers`): CGI-style servers read `X_Real_IP` as
//!   `X-Real-IP`, so a client could forge the fields porter sets;
//! - `Content-Length` that is not all digits, or differing duplicates: 400
//!   (equal duplicates are one length, forwarded once);
//! - obs-fold, a space before the colon, control bytes: refused by httparse (400);
//! - a head over `max_header_bytes` or over 100 fields: 431; a target over
//!   65,534 bytes: 414.
//!
//! The fields are kept as the head's bytes (`view::RawRequest`): no map is made,
//! and no value or name copied.

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::{Method, Request, Uri, Version};

use super::unchecked::Filled;
use super::view::{Name, RawRequest};

/// Fields per head, as in hyper.
pub(crate) const MAX_FIELDS: usize = 100;
const MAX_URI_LEN: usize = (u16::MAX - 1) as usize;

/// How the request's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Empty,
    Length(u64),
    Chunked,
}

/// A parsed request head and what the connection needs to know about it.
#[derive(Debug)]
pub(crate) struct Head<B = ()> {
    /// Method, target and version; its header map stays empty: the fields are `fields`.
    /// Boxed where it is made, with the caller's empty body (`parse_with`): the request
    /// travels on through the pipeline's layers as this one pointer.
    pub request: Box<Request<B>>,
    pub fields: RawRequest,
    pub body: BodyKind,
    /// The connection may carry another request after this one.
    pub keep_alive: bool,
    pub expect_continue: bool,
    /// The client accepts trailers on a chunked response (`TE: trailers`).
    pub te_trailers: bool,
}

/// Why a head was refused: each has its status, and the connection closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// Bytes that are not HTTP/1.x: 400.
    Malformed,
    /// Framing that two parsers could read differently: 400.
    Ambiguous,
    /// Over `max_header_bytes` or 100 fields: 431.
    TooLarge,
    /// Request target over 65,534 bytes: 414.
    UriTooLong,
    /// A protocol version other than 1.0 and 1.1: 505.
    Version,
    /// A transfer coding other than a lone `chunked`: 501.
    UnknownCoding,
}

/// [`parse_with`], the request with a `()` body (tests and fuzz targets).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn parse(buf: &mut BytesMut, max_head: usize, keep_underscores: bool) -> Result<Option<Head>, HeadError> {
    parse_with(buf, max_head, keep_underscores)
}

/// Parses the head at the start of `buf`. `Ok(None)`: not complete yet (and
/// under `max_head` bytes). On success the head's bytes are split off `buf`.
/// `keep_underscores`: keep field names with `_` (else they are dropped). The
/// request is made with an empty body of the caller's type (`B::default()`).
pub(crate) fn parse_with<B: Default>(
    buf: &mut BytesMut,
    max_head: usize,
    keep_underscores: bool,
) -> Result<Option<Head<B>>, HeadError> {
    let mut fields: [MaybeUninit<httparse::Header<'_>>; MAX_FIELDS] = [const { MaybeUninit::uninit() }; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut req, buf, &mut fields) {
        Ok(httparse::Status::Complete(len)) if len > max_head => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= max_head => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(httparse::Error::Version) => return Err(version_error(buf)),
        Err(_) => return Err(HeadError::Malformed),
    };
    let path = req.path.expect("complete");
    if path.len() > MAX_URI_LEN {
        return Err(HeadError::UriTooLong);
    }
    let method = Method::from_bytes(req.method.expect("complete").as_bytes()).map_err(|_| HeadError::Malformed)?;
    let http11 = req.version == Some(1);
    // Where each piece lies in the head, to slice the shared bytes after the split.
    let base = buf.as_ptr() as usize;
    let offset = |s: &[u8]| s.as_ptr() as usize - base;
    let path_range = offset(path.as_bytes())..offset(path.as_bytes()) + path.len();
    // Left uninitialised past `count`: zeroing 100 spans would cost more than the parse.
    let mut spans: Filled<Span, MAX_FIELDS> = Filled::new();
    let count = req.headers.len();
    for field in req.headers.iter() {
        spans.push(Span::of(offset(field.name.as_bytes()), field.name.len(), offset(field.value), field.value.len()));
    }
    let spans = spans.as_slice();
    let head = buf.split_to(len).freeze();
    let uri = Uri::from_maybe_shared(head.slice(path_range)).map_err(|_| HeadError::Malformed)?;
    // One scan of the fields' bytes (memchr) decides whether any name needs a look
    // for `_`: a head without one anywhere in its fields pays nothing more.
    let fields_start = spans.first().map_or(len, |span| span.name().start);
    let drop_underscores = !keep_underscores && head[fields_start..].contains(&b'_');

    let mut fields = RawRequest::new(head.clone(), count);
    let mut keep_alive = http11;
    let mut saw_close = false;
    let mut expect_continue = false;
    let mut te_trailers = false;
    let mut length: Option<u64> = None;
    let mut codings = Codings::default();
    for span in spans {
        if drop_underscores && head[span.name()].contains(&b'_') {
            continue;
        }
        let name = &head[span.name()];
        // The longest name `http` takes (a map is made of these fields for some routes).
        if name.len() > usize::from(u16::MAX) - 1 {
            return Err(HeadError::Malformed);
        }
        let class = Name::of(name);
        let value = &head[span.value()];
        match class {
            Name::TransferEncoding => {
                if !http11 {
                    return Err(HeadError::Malformed);
                }
                // Every line counts: `TE: gzip` then `TE: chunked` is `gzip, chunked`.
                codings = codings.then(value);
            }
            Name::ContentLength => {
                let n = digits(value).ok_or(HeadError::Malformed)?;
                match length {
                    Some(prev) if prev != n => return Err(HeadError::Malformed),
                    Some(_) => continue,
                    None => length = Some(n),
                }
            }
            Name::Connection => {
                if saw_close || has_token(value, b"close") {
                    saw_close = true;
                    keep_alive = false;
                } else if !http11 {
                    keep_alive = has_token(value, b"keep-alive");
                }
            }
            Name::Expect => expect_continue = http11 && value.eq_ignore_ascii_case(b"100-continue"),
            Name::Te => te_trailers |= has_token(value, b"trailers"),
            _ => {}
        }
        fields.push(*span, class);
    }
    let body = match (codings, length) {
        (Codings { count: 0, .. }, Some(0) | None) => BodyKind::Empty,
        (Codings { count: 0, .. }, Some(n)) => BodyKind::Length(n),
        (_, Some(_)) => return Err(HeadError::Ambiguous),
        // Without `chunked` last the body's end cannot be found (RFC 9112 §6.3).
        (Codings { last_is_chunked: false, .. }, None) => return Err(HeadError::Malformed),
        (Codings { count: 1, .. }, None) => BodyKind::Chunked,
        // `gzip, chunked`, `chunked, chunked`: codings porter does not undo (nginx: 501).
        (_, None) => return Err(HeadError::UnknownCoding),
    };
    let mut request = Box::new(Request::new(B::default()));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = if http11 { Version::HTTP_11 } else { Version::HTTP_10 };
    Ok(Some(Head { request, fields, body, keep_alive, expect_continue, te_trailers }))
}

/// Where a field's name and value lie in a head (a head is far below 4 GiB).
#[derive(Clone, Copy)]
pub(crate) struct Span([u32; 4]);

impl Span {
    pub(crate) fn of(name: usize, name_len: usize, value: usize, value_len: usize) -> Span {
        Span([name as u32, (name + name_len) as u32, value as u32, (value + value_len) as u32])
    }
    pub(crate) fn name(&self) -> std::ops::Range<usize> {
        self.0[0] as usize..self.0[1] as usize
    }
    pub(crate) fn value(&self) -> std::ops::Range<usize> {
        self.0[2] as usize..self.0[3] as usize
    }
}

/// httparse calls any version but 1.0 and 1.1 an error; a well-formed
/// `HTTP/x.y` is answered 505, anything else 400.
fn version_error(buf: &[u8]) -> HeadError {
    let line = buf.split(|&b| b == b'\n').find(|l| !l.is_empty() && *l != b"\r").unwrap_or(b"");
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match line.rsplit(|&b| b == b' ').next() {
        Some([b'H', b'T', b'T', b'P', b'/', major, b'.', minor])
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            HeadError::Version
        }
        _ => HeadError::Malformed,
    }
}

/// A Content-Length value: digits only (no sign, no list), as hyper reads it.
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// The transfer codings of a request, read so far (every `Transfer-Encoding` line in order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Codings {
    count: u32,
    last_is_chunked: bool,
}

impl Codings {
    /// Adds one line's list. An empty element counts as a coding that is not
    /// `chunked`, as hyper reads it (`chunked,` is refused by both).
    fn then(self, value: &[u8]) -> Codings {
        value.split(|&b| b == b',').fold(self, |codings, coding| Codings {
            count: codings.count.saturating_add(1),
            last_is_chunked: coding.trim_ascii().eq_ignore_ascii_case(b"chunked"),
        })
    }
}

/// A comma-separated list contains `token` (case-insensitive).
pub(crate) fn has_token(value: &[u8], token: &[u8]) -> bool {
    value.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(raw: &[u8]) -> Result<Option<Head>, HeadError> {
        parse(&mut BytesMut::from(raw), 8192, false)
    }

    #[test]
    fn a_simple_head_and_what_follows_it() {
        let mut buf = BytesMut::from(&b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Two: 2\r\n\r\nNEXT"[..]);
        let head = parse(&mut buf, 8192, false).unwrap().unwrap();
        assert_eq!(head.request.uri(), "/a?b=1");
        let map = head.fields.to_header_map();
        assert_eq!(map["host"], "x");
        assert_eq!(map["x-two"], "2");
        assert_eq!(head.body, BodyKind::Empty);
        assert!(head.keep_alive);
        assert_eq!(&buf[..], b"NEXT");
        assert!(parsed(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
    }

    #[test]
    fn framing_rules() {
        let kind = |raw: &[u8]| parsed(raw).map(|h| h.unwrap().body);
        assert_eq!(kind(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"), Ok(BodyKind::Length(5)));
        assert_eq!(kind(b"POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n"), Ok(BodyKind::Length(5)));
        assert_eq!(kind(b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n"), Ok(BodyKind::Chunked));
        assert_eq!(kind(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), Err(HeadError::UnknownCoding));
        assert_eq!(
            kind(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(HeadError::UnknownCoding)
        );
        assert_eq!(
            kind(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
            Err(HeadError::UnknownCoding)
        );
        assert_eq!(kind(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked,\r\n\r\n"), Err(HeadError::Malformed));
        assert_eq!(kind(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"), Err(HeadError::Malformed));
        assert_eq!(kind(b"POST / HTTP/1.1\r\nTransfer-Encoding: \r\n\r\n"), Err(HeadError::Malformed));
        assert_eq!(
            kind(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            Err(HeadError::Malformed)
        );
        assert_eq!(kind(b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n"), Err(HeadError::Malformed));
        assert_eq!(kind(b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n"), Err(HeadError::Malformed));
        assert_eq!(
            kind(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(HeadError::Ambiguous)
        );
        assert_eq!(
            kind(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
            Err(HeadError::Ambiguous)
        );
        assert_eq!(kind(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"), Err(HeadError::Malformed));
        assert_eq!(kind(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), Err(HeadError::Malformed));
        assert_eq!(kind(b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"), Err(HeadError::Malformed));
        assert_eq!(kind(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"), Err(HeadError::Malformed));
        assert_eq!(kind(b"GET / HTTP/2.0\r\n\r\n"), Err(HeadError::Version));
        assert_eq!(kind(b"GET / FTP/1.1\r\n\r\n"), Err(HeadError::Malformed));
    }

    #[test]
    fn keep_alive_rules() {
        let keep = |raw: &[u8]| parsed(raw).unwrap().unwrap().keep_alive;
        assert!(keep(b"GET / HTTP/1.1\r\n\r\n"));
        assert!(!keep(b"GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n"));
        assert!(!keep(b"GET / HTTP/1.1\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n"));
        assert!(!keep(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(keep(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    }

    #[test]
    fn limits() {
        assert_eq!(
            parse(&mut BytesMut::from(&b"GET / HTTP/1.1\r\nX: 0123456789\r\n"[..]), 16, false).unwrap_err(),
            HeadError::TooLarge
        );
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_FIELDS {
            many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&mut BytesMut::from(&many[..]), 1 << 20, false).unwrap_err(), HeadError::TooLarge);
    }

    #[test]
    fn underscored_names_are_dropped_unless_kept() {
        let raw =
            b"GET /a_b HTTP/1.1\r\nHost: x\r\nX_Real_IP: 1.2.3.4\r\nX-Ok: a_b\r\nX_Forwarded_For: 5.6.7.8\r\n\r\n";
        let head = parse(&mut BytesMut::from(&raw[..]), 8192, false).unwrap().unwrap();
        let names: Vec<_> = head.fields.fields().map(|(_, n, _)| n).collect();
        assert_eq!(names, [&b"Host"[..], b"X-Ok"]);
        let head = parse(&mut BytesMut::from(&raw[..]), 8192, true).unwrap().unwrap();
        assert_eq!(head.fields.to_header_map()["x_real_ip"], "1.2.3.4");
        assert_eq!(head.fields.fields().count(), 4);
    }

    #[test]
    fn expect_continue_only_in_http11() {
        let expect = |raw: &[u8]| parsed(raw).unwrap().unwrap().expect_continue;
        assert!(expect(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"));
        assert!(!expect(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"));
    }
}
