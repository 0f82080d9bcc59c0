//! The request head written to a server from a prepared request, and the
//! server's response head parsed (framing, keep-alive, its fields as bytes).

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::header;
use http::{Method, StatusCode, Version};
use http_body::Body;

use super::SendError;
use crate::body::RequestBody;
use crate::http1::fields::{self, Kind, RawFields};
use crate::http1::request::{has_token, Span, MAX_FIELDS};
use crate::http1::unchecked::Filled;

/// How a request's body is framed on the wire to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length,
    Chunked,
}

/// Writes the request head for `parts` into `dst`, adding the framing header
/// the body needs; returns that framing.
pub(crate) fn write_request_head(dst: &mut BytesMut, parts: &http::request::Parts, body: &RequestBody) -> Framing {
    write_request_line(dst, &parts.method, parts.uri.path_and_query().map_or("/", |pq| pq.as_str()));
    let mut has_length = false;
    for (name, value) in &parts.headers {
        if name == header::CONTENT_LENGTH {
            has_length = true;
        }
        write_field(dst, name.as_str().as_bytes(), value.as_bytes());
    }
    end_head(dst, &parts.method, has_length, body)
}

/// `METHOD target HTTP/1.1`: every request goes upstream as HTTP/1.1.
pub(crate) fn write_request_line(dst: &mut BytesMut, method: &Method, target: &str) {
    dst.extend_from_slice(method.as_str().as_bytes());
    dst.extend_from_slice(b" ");
    dst.extend_from_slice(target.as_bytes());
    dst.extend_from_slice(b" HTTP/1.1\r\n");
}

pub(crate) fn write_field(dst: &mut BytesMut, name: &[u8], value: &[u8]) {
    dst.extend_from_slice(name);
    dst.extend_from_slice(b": ");
    dst.extend_from_slice(value);
    dst.extend_from_slice(b"\r\n");
}

/// Adds the framing field `body` needs (`has_length`: the head has a
/// Content-Length) and the blank line; returns that framing.
pub(crate) fn end_head(dst: &mut BytesMut, method: &Method, has_length: bool, body: &RequestBody) -> Framing {
    let framing = if body.is_end_stream() {
        // POST and PUT say they have no body, as hyper does; GET and the like say nothing.
        if !has_length && matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
            dst.extend_from_slice(b"content-length: 0\r\n");
        }
        Framing::None
    } else if has_length {
        Framing::Length
    } else if let Some(n) = body.size_hint().exact() {
        dst.extend_from_slice(b"content-length: ");
        dst.extend_from_slice(n.to_string().as_bytes());
        dst.extend_from_slice(b"\r\n");
        Framing::Length
    } else {
        dst.extend_from_slice(b"transfer-encoding: chunked\r\n");
        Framing::Chunked
    };
    dst.extend_from_slice(b"\r\n");
    framing
}

/// How a response's body is framed (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyKind {
    Empty,
    Length(u64),
    Chunked,
    /// Read until the server closes.
    Close,
}

/// A response head: its parts, how its body is framed, whether the connection
/// stays open after it, and its fields as bytes when no map was made (then
/// `parts.headers` is empty).
pub(super) struct Parsed {
    pub(super) parts: http::response::Parts,
    pub(super) kind: BodyKind,
    pub(super) keep_alive: bool,
    pub(super) raw: Option<Box<RawFields>>,
}

pub(super) fn parse_response(buf: &mut BytesMut, method: &Method) -> Result<Option<Parsed>, SendError> {
    let mut fields: [MaybeUninit<httparse::Header<'_>>; MAX_FIELDS] = [const { MaybeUninit::uninit() }; MAX_FIELDS];
    let mut res = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut res, buf, &mut fields) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(SendError::BadResponse),
    };
    let status = StatusCode::from_u16(res.code.unwrap_or(0)).map_err(|_| SendError::BadResponse)?;
    let http11 = res.version == Some(1);
    let base = buf.as_ptr() as usize;
    let count = res.headers.len();
    let mut spans: Filled<Span, MAX_FIELDS> = Filled::new();
    let mut keep_alive = http11;
    let mut closing = false;
    let mut length: Option<u64> = None;
    let mut chunked: Option<bool> = None;
    let mut has_date = false;
    let mut special = 0u32;
    // A Connection header naming other fields: those are stripped from a map.
    let mut names_fields = false;
    for (i, field) in res.headers.iter().enumerate() {
        let name = field.name.as_ptr() as usize - base;
        let value = field.value.as_ptr() as usize - base;
        spans.push(Span::of(name, field.name.len(), value, field.value.len()));
        let name = field.name.as_bytes();
        let kind = fields::kind(name);
        if matches!(kind, Kind::ContentLength | Kind::HopByHop) && i < fields::MAX_RAW {
            special |= 1 << i;
        }
        match kind {
            Kind::ContentLength => {
                // Digits only: `+2` parses as a u64 but is no length (RFC 9110 §8.6).
                let digits = field.value.trim_ascii();
                if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                    return Err(SendError::BadResponse);
                }
                let n = std::str::from_utf8(digits)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or(SendError::BadResponse)?;
                if length.replace(n).is_some_and(|prev| prev != n) {
                    return Err(SendError::BadResponse);
                }
            }
            Kind::HopByHop if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                // Codings are tokens: a value with bytes outside visible ASCII cannot
                // be read as a list, and hyper reads such a body to close. Refuse it
                // rather than guess at its framing.
                if !field.value.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)) {
                    return Err(SendError::BadResponse);
                }
                let last = field.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
                chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            }
            Kind::HopByHop if name.eq_ignore_ascii_case(b"connection") => {
                // A close anywhere wins: a later keep-alive must not undo it.
                if has_token(field.value, b"close") {
                    keep_alive = false;
                    closing = true;
                } else if !http11 && !closing && has_token(field.value, b"keep-alive") {
                    keep_alive = true;
                }
                names_fields |= field.value.split(|&b| b == b',').any(|t| {
                    let t = t.trim_ascii();
                    !t.is_empty() && !t.eq_ignore_ascii_case(b"close") && !t.eq_ignore_ascii_case(b"keep-alive")
                });
            }
            Kind::Date => has_date = true,
            _ => {}
        }
    }
    let spans = spans.as_slice();
    let head = buf.split_to(len).freeze();
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = status;
    parts.version = if http11 { Version::HTTP_11 } else { Version::HTTP_10 };
    if status.is_informational() {
        // 100 Continue and the like: the real answer follows.
        return Ok(Some(Parsed { parts, kind: BodyKind::Empty, keep_alive: true, raw: None }));
    }
    let bodiless = *method == Method::HEAD || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    // A length beside chunked framing is a response porter cannot frame safely
    // (RFC 9112 §6.3 calls it a smuggling sign): 502, the connection closed.
    if chunked.is_some() && length.is_some() {
        return Err(SendError::BadResponse);
    }
    let kind = match (chunked, length) {
        _ if bodiless => BodyKind::Empty,
        (Some(true), _) => BodyKind::Chunked,
        (Some(false), _) => {
            keep_alive = false;
            BodyKind::Close
        }
        (None, Some(0)) => BodyKind::Empty,
        (None, Some(n)) => BodyKind::Length(n),
        (None, None) => {
            keep_alive = false;
            BodyKind::Close
        }
    };
    // HTTP/1.0 with Transfer-Encoding: faulty framing, the connection is not reused (RFC 9112 §6.1).
    keep_alive &= http11 || chunked.is_none();
    if count > fields::MAX_RAW || names_fields {
        parts.headers = fields::to_header_map(&head, spans, false);
        return Ok(Some(Parsed { parts, kind, keep_alive, raw: None }));
    }
    let raw = RawFields::new(head, spans, special, has_date, false);
    Ok(Some(Parsed { parts, kind, keep_alive, raw: Some(raw) }))
}
