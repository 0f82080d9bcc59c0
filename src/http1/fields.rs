//! A server's response header fields kept as the bytes they came in: the head
//! and where each field lies. When the client is on porter's own HTTP/1.1
//! server they are written back from these bytes (`response::write_head`),
//! filtered by name, without building a `HeaderMap`; any other client (HTTP/2,
//! the hyper engine) gets a map made from them by the same rules.
//!
//! Only heads whose hop-by-hop rules need no map are kept this way: at most
//! [`MAX_RAW`] fields, and a `Connection` header naming nothing but `close`
//! or `keep-alive` (one that names other fields goes through a map and
//! `proxy::headers::strip_hop_by_hop`).

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName};

use super::request::Span;

/// Heads with more fields than this are put in a map.
pub(crate) const MAX_RAW: usize = 32;

pub struct RawFields {
    head: Bytes,
    spans: [Span; MAX_RAW],
    len: u8,
    /// Bit i: field i is Content-Length or hop-by-hop, as the parser found
    /// (so writing it back classifies only those few names again).
    special: u32,
    has_date: bool,
    /// Content-Length is not passed on (the body is chunked, RFC 9112 §6.3).
    drop_length: bool,
}

/// What a field's name makes of it when the head is written back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    ContentLength,
    /// `Connection`, `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`,
    /// `Transfer-Encoding`, `Upgrade`: about one connection, never passed on.
    HopByHop,
    Date,
    Other,
}

/// Classifies a field name by bytes (any case), without hashing it.
pub(crate) fn kind(name: &[u8]) -> Kind {
    let is = |other: &[u8]| name.eq_ignore_ascii_case(other);
    match name.len() {
        2 if is(b"te") => Kind::HopByHop,
        4 if is(b"date") => Kind::Date,
        7 if is(b"trailer") || is(b"upgrade") => Kind::HopByHop,
        10 if is(b"connection") || is(b"keep-alive") => Kind::HopByHop,
        14 if is(b"content-length") => Kind::ContentLength,
        16 if is(b"proxy-connection") => Kind::HopByHop,
        17 if is(b"transfer-encoding") => Kind::HopByHop,
        _ => Kind::Other,
    }
}

impl RawFields {
    /// `head` holds the fields at `spans` (as httparse found them; at most [`MAX_RAW`]);
    /// bit i of `special` is set when field i's [`kind`] is `ContentLength` or `HopByHop`.
    pub(crate) fn new(head: Bytes, spans: &[Span], special: u32, has_date: bool, drop_length: bool) -> Box<RawFields> {
        let mut raw = Box::new(RawFields {
            head,
            spans: [Span::of(0, 0, 0, 0); MAX_RAW],
            len: spans.len() as u8,
            special,
            has_date,
            drop_length,
        });
        raw.spans[..spans.len()].copy_from_slice(spans);
        raw
    }

    /// Each field's name and value, in order, and whether it is special (see `new`).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8], bool)> {
        self.spans[..self.len as usize]
            .iter()
            .enumerate()
            .map(|(i, span)| (&self.head[span.name()], &self.head[span.value()], self.special & (1 << i) != 0))
    }

    pub fn has_date(&self) -> bool {
        self.has_date
    }

    /// The fields as a map (see [`to_header_map`]).
    pub fn to_header_map(&self) -> HeaderMap {
        to_header_map(&self.head, &self.spans[..self.len as usize], self.drop_length)
    }
}

/// The fields of `head` at `spans` as a map: one Content-Length, none if
/// `drop_length` (a chunked body). Hop-by-hop fields stay, for
/// `proxy::headers::strip_hop_by_hop`, which also removes what `Connection` names.
pub(crate) fn to_header_map(head: &Bytes, spans: &[Span], drop_length: bool) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(spans.len());
    let mut length_seen = drop_length;
    for span in spans {
        let name = &head[span.name()];
        if kind(name) == Kind::ContentLength && std::mem::replace(&mut length_seen, true) {
            continue;
        }
        // httparse and `http` accept the same token characters; a name one of them
        // refused could not have got here.
        let Ok(name) = HeaderName::from_bytes(name) else { continue };
        map.append(name, super::unchecked::parsed_value(head, span.value()));
    }
    map
}

impl std::fmt::Debug for RawFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawFields").field("fields", &self.len).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &'static [u8], drop_length: bool) -> Box<RawFields> {
        let mut fields = [httparse::EMPTY_HEADER; 16];
        let (_, parsed) = httparse::parse_headers(text, &mut fields).unwrap().unwrap();
        let base = text.as_ptr() as usize;
        let spans: Vec<Span> = parsed
            .iter()
            .map(|f| {
                Span::of(f.name.as_ptr() as usize - base, f.name.len(), f.value.as_ptr() as usize - base, f.value.len())
            })
            .collect();
        let has_date = parsed.iter().any(|f| kind(f.name.as_bytes()) == Kind::Date);
        let special = parsed
            .iter()
            .enumerate()
            .filter(|(_, f)| matches!(kind(f.name.as_bytes()), Kind::ContentLength | Kind::HopByHop))
            .fold(0, |bits, (i, _)| bits | 1 << i);
        RawFields::new(Bytes::from_static(text), &spans, special, has_date, drop_length)
    }

    #[test]
    fn names_are_classified_in_any_case() {
        assert_eq!(kind(b"Content-Length"), Kind::ContentLength);
        assert_eq!(kind(b"TRANSFER-ENCODING"), Kind::HopByHop);
        assert_eq!(kind(b"Keep-Alive"), Kind::HopByHop);
        assert_eq!(kind(b"te"), Kind::HopByHop);
        assert_eq!(kind(b"Date"), Kind::Date);
        assert_eq!(kind(b"content-type"), Kind::Other);
        assert_eq!(kind(b"x-upgrade"), Kind::Other);
    }

    #[test]
    fn the_map_has_one_length_and_none_beside_chunked() {
        let fields = raw(
            b"Server: nginx\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: keep-alive\r\nX-A: 1\r\n\r\n",
            false,
        );
        assert_eq!(fields.iter().count(), 5);
        let map = fields.to_header_map();
        assert_eq!(map.len(), 4);
        assert_eq!(map.get_all("content-length").iter().count(), 1);
        assert_eq!(map["server"], "nginx");
        assert_eq!(map["connection"], "keep-alive", "left for strip_hop_by_hop");
        let chunked = raw(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", true);
        assert_eq!(chunked.to_header_map().keys().collect::<Vec<_>>(), ["transfer-encoding"]);
    }
}
