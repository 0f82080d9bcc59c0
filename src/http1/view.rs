//! A client's request fields kept as the bytes they came in: the head, where
//! each field lies, and what its name is to the pipeline, classified once at
//! parse by a byte match ([`Name::of`], no hashing). Every phase reads them
//! through [`RequestFields`], which is the same small interface over a
//! `HeaderMap` (HTTP/2 and HTTP/3 requests, or a route whose rules need a map:
//! [`RawRequest::to_header_map`]). The pipeline forwards them by writing the
//! kept fields back from these bytes (`proxy::head`), as the response side
//! does with `fields::RawFields`.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::request::Span;

/// What a request field's name is to the pipeline: the fields it reads or
/// rewrites have a name of their own, every other field is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Name {
    Other,
    Host,
    ContentLength,
    Connection,
    KeepAlive,
    ProxyConnection,
    Te,
    Trailer,
    TransferEncoding,
    Upgrade,
    Expect,
    XRequestId,
    XForwardedFor,
    XForwardedProto,
    XForwardedHost,
    XForwardedPort,
    XRealIp,
    Forwarded,
    Via,
    Cookie,
    Authorization,
    AcceptEncoding,
    UserAgent,
    Referer,
}

/// How many names there are (the size of [`RawRequest`]'s index).
const NAMES: usize = Name::Referer as usize + 1;

impl Name {
    /// Classifies a field name by its bytes, in any case (by length first, then
    /// at most a few comparisons).
    pub(crate) fn of(name: &[u8]) -> Name {
        let is = |other: &[u8]| name.eq_ignore_ascii_case(other);
        match name.len() {
            2 if is(b"te") => Name::Te,
            3 if is(b"via") => Name::Via,
            4 if is(b"host") => Name::Host,
            6 if is(b"expect") => Name::Expect,
            6 if is(b"cookie") => Name::Cookie,
            7 if is(b"trailer") => Name::Trailer,
            7 if is(b"upgrade") => Name::Upgrade,
            7 if is(b"referer") => Name::Referer,
            9 if is(b"x-real-ip") => Name::XRealIp,
            9 if is(b"forwarded") => Name::Forwarded,
            10 if is(b"connection") => Name::Connection,
            10 if is(b"keep-alive") => Name::KeepAlive,
            10 if is(b"user-agent") => Name::UserAgent,
            12 if is(b"x-request-id") => Name::XRequestId,
            13 if is(b"authorization") => Name::Authorization,
            14 if is(b"content-length") => Name::ContentLength,
            15 if is(b"x-forwarded-for") => Name::XForwardedFor,
            15 if is(b"accept-encoding") => Name::AcceptEncoding,
            16 if is(b"proxy-connection") => Name::ProxyConnection,
            16 if is(b"x-forwarded-host") => Name::XForwardedHost,
            16 if is(b"x-forwarded-port") => Name::XForwardedPort,
            17 if is(b"transfer-encoding") => Name::TransferEncoding,
            17 if is(b"x-forwarded-proto") => Name::XForwardedProto,
            _ => Name::Other,
        }
    }

    /// A field porter removes, replaces or adds to on the way to a server: the
    /// hop-by-hop ones, X-Request-Id, the forwarding fields and Via.
    pub(crate) fn is_rewritten(self) -> bool {
        self.is_hop_by_hop()
            || matches!(
                self,
                Name::XRequestId
                    | Name::XForwardedFor
                    | Name::XForwardedProto
                    | Name::XForwardedHost
                    | Name::XForwardedPort
                    | Name::XRealIp
                    | Name::Via
            )
    }

    /// About one connection, never passed on (RFC 9110 §7.6.1, and the
    /// non-standard ones in use): `proxy::headers::fixed_hop_by_hop`.
    pub(crate) fn is_hop_by_hop(self) -> bool {
        matches!(
            self,
            Name::Connection
                | Name::KeepAlive
                | Name::ProxyConnection
                | Name::Te
                | Name::Trailer
                | Name::TransferEncoding
                | Name::Upgrade
        )
    }
}

/// One kept field: where it lies in the head and its name's class.
#[derive(Clone, Copy)]
pub(crate) struct Field {
    span: Span,
    pub(crate) name: Name,
}

/// A request's fields as the client sent them, minus those the parser drops
/// (names with `_`, a repeated equal Content-Length), in order.
pub(crate) struct RawRequest {
    head: Bytes,
    fields: Vec<Field>,
    /// Index + 1 of the first field of each [`Name`] (0: none), for `get`.
    first: [u8; NAMES],
}

impl RawRequest {
    /// `head` holds the fields; `capacity`: how many fields the head has.
    pub(crate) fn new(head: Bytes, capacity: usize) -> RawRequest {
        RawRequest { head, fields: Vec::with_capacity(capacity), first: [0; NAMES] }
    }

    /// Adds the field at `span`, whose name is `name` (at most `MAX_FIELDS` in all).
    pub(crate) fn push(&mut self, span: Span, name: Name) {
        let slot = &mut self.first[name as usize];
        if *slot == 0 {
            *slot = (self.fields.len() + 1) as u8;
        }
        self.fields.push(Field { span, name });
    }

    /// Each field: its class, name and value bytes, in order.
    pub(crate) fn fields(&self) -> impl Iterator<Item = (Name, &[u8], &[u8])> {
        self.fields.iter().map(|f| (f.name, &self.head[f.span.name()], &self.head[f.span.value()]))
    }

    /// The first field of a known name's value.
    pub(crate) fn first(&self, name: Name) -> Option<&[u8]> {
        match self.first[name as usize] {
            0 => None,
            i => Some(&self.head[self.fields[i as usize - 1].span.value()]),
        }
    }

    /// Whether any field has the class `name`.
    pub(crate) fn has(&self, name: Name) -> bool {
        self.first[name as usize] != 0
    }

    /// A value as a `HeaderValue` sharing the head's bytes (no copy).
    pub(crate) fn shared(&self, value: &[u8]) -> HeaderValue {
        let start = value.as_ptr() as usize - self.head.as_ptr() as usize;
        // Every value is a slice of `head` that httparse accepted as a field value.
        super::unchecked::parsed_value(&self.head, start..start + value.len())
    }

    /// The fields as a map, exactly as the parser made one before it kept bytes:
    /// for the routes and clients whose rules work on a map.
    pub(crate) fn to_header_map(&self) -> HeaderMap {
        // Room for what the pipeline adds (X-Forwarded-*, X-Real-IP, Via, X-Request-Id)
        // without growing the map.
        let mut map = HeaderMap::with_capacity(self.fields.len() + 7);
        for (_, name, value) in self.fields() {
            // The parser refused any name `http` would refuse.
            let Ok(name) = HeaderName::from_bytes(name) else { continue };
            map.append(name, self.shared(value));
        }
        map
    }
}

impl std::fmt::Debug for RawRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawRequest").field("fields", &self.fields.len()).finish()
    }
}

/// A request's fields, however they came: the one interface every phase reads.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RequestFields<'a> {
    Raw(&'a RawRequest),
    Map(&'a HeaderMap),
}

impl<'a> RequestFields<'a> {
    /// The raw fields when there are some, else the map.
    pub(crate) fn of(map: &'a HeaderMap, raw: Option<&'a RawRequest>) -> RequestFields<'a> {
        match raw {
            Some(raw) => RequestFields::Raw(raw),
            None => RequestFields::Map(map),
        }
    }

    /// The first value of `name`.
    pub(crate) fn get(self, name: &HeaderName) -> Option<&'a [u8]> {
        match self {
            RequestFields::Map(map) => map.get(name).map(HeaderValue::as_bytes),
            RequestFields::Raw(raw) => match Name::of(name.as_str().as_bytes()) {
                Name::Other => {
                    raw.fields().find(|(_, n, _)| n.eq_ignore_ascii_case(name.as_str().as_bytes())).map(|(_, _, v)| v)
                }
                known => raw.first(known),
            },
        }
    }

    /// The first value of `name` as a `HeaderValue` (shared bytes, no copy).
    pub(crate) fn value(self, name: &HeaderName) -> Option<HeaderValue> {
        match self {
            RequestFields::Map(map) => map.get(name).cloned(),
            RequestFields::Raw(raw) => self.get(name).map(|v| raw.shared(v)),
        }
    }

    pub(crate) fn contains(self, name: &HeaderName) -> bool {
        match self {
            RequestFields::Map(map) => map.contains_key(name),
            RequestFields::Raw(raw) => match Name::of(name.as_str().as_bytes()) {
                Name::Other => self.get(name).is_some(),
                known => raw.has(known),
            },
        }
    }

    /// Every value of `name`, in order.
    pub(crate) fn get_all<'n>(self, name: &'n HeaderName) -> Values<'a, 'n> {
        match self {
            RequestFields::Map(map) => Values::Map(map.get_all(name).iter()),
            RequestFields::Raw(raw) => {
                let class = Name::of(name.as_str().as_bytes());
                if class != Name::Other && !raw.has(class) {
                    return Values::Raw { raw, class, name: b"", next: raw.fields.len() };
                }
                // Starts at the first field of a known name: most have one.
                let next = match class {
                    Name::Other => 0,
                    known => raw.first[known as usize] as usize - 1,
                };
                Values::Raw { raw, class, name: name.as_str().as_bytes(), next }
            }
        }
    }

    /// Every field's name and value, in order. The fuzz target reads it; it is
    /// here for phases that look at every field (header rules) to share the view.
    #[cfg_attr(not(any(test, feature = "fuzzing")), allow(dead_code))]
    pub(crate) fn iter(self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        let (raw, map) = match self {
            RequestFields::Raw(raw) => (Some(raw), None),
            RequestFields::Map(map) => (None, Some(map)),
        };
        let raw = raw.into_iter().flat_map(|raw| raw.fields().map(|(_, n, v)| (n, v)));
        let map = map.into_iter().flat_map(|map| map.iter().map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())));
        raw.chain(map)
    }

    /// The Host field (the one the strict checks allow).
    pub(crate) fn host(self) -> Option<HeaderValue> {
        self.value(&header::HOST)
    }
}

impl<'a> From<&'a HeaderMap> for RequestFields<'a> {
    fn from(map: &'a HeaderMap) -> RequestFields<'a> {
        RequestFields::Map(map)
    }
}

/// A value as text, as `HeaderValue::to_str` reads it: visible ASCII, space and tab only.
pub(crate) fn as_text(value: &[u8]) -> Option<&str> {
    if value.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)) {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

/// The values of one name ([`RequestFields::get_all`]).
pub(crate) enum Values<'a, 'n> {
    Raw { raw: &'a RawRequest, class: Name, name: &'n [u8], next: usize },
    Map(header::ValueIter<'a, HeaderValue>),
}

impl<'a> Iterator for Values<'a, '_> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        match self {
            Values::Map(values) => values.next().map(HeaderValue::as_bytes),
            Values::Raw { raw, class, name, next } => {
                while let Some(field) = raw.fields.get(*next) {
                    *next += 1;
                    let matches = match *class {
                        Name::Other => raw.head[field.span.name()].eq_ignore_ascii_case(name),
                        known => field.name == known,
                    };
                    if matches {
                        return Some(&raw.head[field.span.value()]);
                    }
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::request::parse;
    use bytes::BytesMut;

    fn head(raw: &[u8]) -> RawRequest {
        parse(&mut BytesMut::from(raw), 8192, false).unwrap().unwrap().fields
    }

    #[test]
    fn names_are_classified_in_any_case() {
        assert_eq!(Name::of(b"Host"), Name::Host);
        assert_eq!(Name::of(b"X-FORWARDED-FOR"), Name::XForwardedFor);
        assert_eq!(Name::of(b"x-forwarded-proto"), Name::XForwardedProto);
        assert_eq!(Name::of(b"te"), Name::Te);
        assert_eq!(Name::of(b"x-host"), Name::Other);
        assert!(Name::of(b"Transfer-Encoding").is_hop_by_hop());
        assert!(!Name::of(b"Via").is_hop_by_hop());
    }

    #[test]
    fn raw_and_map_views_read_the_same() {
        let raw = head(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nCookie: c=1\r\nx-a: 2\r\nCOOKIE: d=2\r\n\r\n");
        let map = raw.to_header_map();
        let x_a = HeaderName::from_static("x-a");
        let missing = HeaderName::from_static("x-missing");
        for fields in [RequestFields::Raw(&raw), RequestFields::Map(&map)] {
            assert_eq!(fields.get(&header::HOST), Some(&b"a"[..]));
            assert_eq!(fields.host().unwrap(), "a");
            assert_eq!(fields.get(&x_a), Some(&b"1"[..]));
            assert_eq!(fields.get_all(&x_a).collect::<Vec<_>>(), [b"1", b"2"]);
            assert_eq!(fields.get_all(&header::COOKIE).collect::<Vec<_>>(), [&b"c=1"[..], b"d=2"]);
            assert_eq!(fields.get_all(&header::VIA).count(), 0);
            assert_eq!(fields.get_all(&missing).count(), 0);
            assert!(fields.contains(&header::COOKIE) && !fields.contains(&missing) && !fields.contains(&header::VIA));
            assert_eq!(fields.iter().count(), 5);
        }
        // The map groups a name's values and lower-cases names, as hyper's server did.
        assert_eq!(map.keys().map(|n| n.as_str()).collect::<Vec<_>>(), ["host", "x-a", "cookie"]);
    }
}
