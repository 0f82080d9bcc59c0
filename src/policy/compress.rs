//! The `compress` phase (docs/configuration.md, Compression), last of a route's
//! policy: the response is compressed with the best encoding the client
//! accepts, streamed through an encoder (`body::encode`), never buffered whole.
//!
//! Two halves, because the request is gone by the time the answer comes:
//! [`Compress::negotiate`] reads the request head (method, `Range`,
//! `Accept-Encoding` with its q-values) before it is forwarded, and
//! [`Compress::apply`] decides on the response and wraps its body.
//!
//! Not compressed: HEAD and `Range` requests; 1xx, 204, 206 and 304 answers;
//! a `Content-Encoding` already there; `Cache-Control: no-transform`; a type
//! outside `types` (or none); a `Content-Length` under `min_size` (an unknown
//! length is compressed). A compressed answer gets `Content-Encoding`, loses
//! `Content-Length` and `Accept-Ranges`, and its `ETag` is weakened (`W/`):
//! the bytes differ from the server's. Every answer that could be compressed
//! gets `Vary: Accept-Encoding`, compressed or not, so a cache in front keeps
//! the versions apart.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

use crate::config::{CompressConfig, Encoding};
use crate::http1::view::RequestFields;
use crate::upstream::ResponseBody;

/// One route's compiled `compress:`.
#[derive(Debug)]
pub struct Compress {
    algorithms: Vec<Encoding>,
    min_size: u64,
    types: Vec<TypePattern>,
    levels: [u32; 3],
}

/// What the request allows, decided before it is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiated {
    /// HEAD or a `Range` request: the answer is left exactly as the server sent it.
    Untouched,
    /// The client accepts none of the route's algorithms: sent as is, with `Vary`.
    Identity,
    Encode(Encoding),
}

#[derive(Debug)]
enum TypePattern {
    Exact(Box<[u8]>),
    /// `type/*`: the bytes are `type/`.
    AnySubtype(Box<[u8]>),
    /// `type/*+suffix`: `type/` and `+suffix`.
    Suffix(Box<[u8]>, Box<[u8]>),
}

impl TypePattern {
    fn new(pattern: &str) -> TypePattern {
        match pattern.split_once("/*") {
            Some((kind, "")) => TypePattern::AnySubtype(format!("{kind}/").into_bytes().into()),
            Some((kind, suffix)) => {
                TypePattern::Suffix(format!("{kind}/").into_bytes().into(), suffix.as_bytes().into())
            }
            None => TypePattern::Exact(pattern.as_bytes().into()),
        }
    }

    fn matches(&self, media: &[u8]) -> bool {
        let starts = |p: &[u8]| media.len() >= p.len() && media[..p.len()].eq_ignore_ascii_case(p);
        let ends = |s: &[u8]| media.len() >= s.len() && media[media.len() - s.len()..].eq_ignore_ascii_case(s);
        match self {
            TypePattern::Exact(t) => media.eq_ignore_ascii_case(t),
            TypePattern::AnySubtype(prefix) => starts(prefix) && media.len() > prefix.len(),
            TypePattern::Suffix(prefix, suffix) => {
                media.len() > prefix.len() + suffix.len() && starts(prefix) && ends(suffix)
            }
        }
    }
}

impl Compress {
    pub fn compile(config: &CompressConfig) -> Compress {
        Compress {
            algorithms: config.algorithms.clone(),
            min_size: config.min_size,
            types: config.types.iter().map(|t| TypePattern::new(t)).collect(),
            levels: config.levels,
        }
    }

    /// The request's side: the encoding its answer gets, if any. Allocates nothing.
    pub(crate) fn negotiate<'h>(&self, method: &Method, headers: impl Into<RequestFields<'h>>) -> Negotiated {
        let headers = headers.into();
        if *method == Method::HEAD || headers.contains(&header::RANGE) {
            return Negotiated::Untouched;
        }
        // q-values in thousandths, by `Encoding as usize`; `*` stands for any coding not named.
        let mut named: [Option<u16>; 3] = [None; 3];
        let mut star: Option<u16> = None;
        for value in headers.get_all(&header::ACCEPT_ENCODING) {
            for item in value.split(|&b| b == b',') {
                let mut params = item.split(|&b| b == b';');
                let coding = params.next().unwrap_or_default().trim_ascii();
                let mut q = Some(1000);
                for param in params {
                    let param = param.trim_ascii();
                    if param.len() >= 2 && param[..2].eq_ignore_ascii_case(b"q=") {
                        q = parse_q(param[2..].trim_ascii());
                    }
                }
                // A q-value that does not parse: the coding is not taken.
                let q = q.unwrap_or(0);
                let is = |token: &[u8]| coding.eq_ignore_ascii_case(token);
                if is(b"gzip") || is(b"x-gzip") {
                    named[Encoding::Gzip as usize] = Some(q);
                } else if is(b"br") {
                    named[Encoding::Brotli as usize] = Some(q);
                } else if is(b"zstd") {
                    named[Encoding::Zstd as usize] = Some(q);
                } else if is(b"*") {
                    star = Some(q);
                }
            }
        }
        let mut best: Option<(Encoding, u16)> = None;
        // The route's order breaks ties: the first of equal q-values wins.
        for &encoding in &self.algorithms {
            let q = named[encoding as usize].or(star).unwrap_or(0);
            if q > 0 && best.is_none_or(|(_, b)| q > b) {
                best = Some((encoding, q));
            }
        }
        match best {
            Some((encoding, _)) => Negotiated::Encode(encoding),
            None => Negotiated::Identity,
        }
    }

    /// The response's side: `Vary` on answers that could be compressed, and the
    /// encoder on those the client takes compressed. `response`'s fields must be in
    /// its map (not a server's raw fields).
    pub fn apply(&self, negotiated: Negotiated, response: &mut Response<ResponseBody>) {
        if negotiated == Negotiated::Untouched {
            return;
        }
        let status = response.status();
        if status.is_informational()
            || matches!(status, StatusCode::NO_CONTENT | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED)
        {
            return;
        }
        let headers = response.headers();
        let encoded =
            headers.get(header::CONTENT_ENCODING).is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        let no_transform =
            headers.get_all(header::CACHE_CONTROL).iter().any(|v| has_token(v.as_bytes(), b"no-transform"));
        if encoded || no_transform || !self.type_matches(headers) {
            return;
        }
        let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
        if length.is_some_and(|n| n < self.min_size) {
            return;
        }
        add_vary(response.headers_mut());
        let Negotiated::Encode(encoding) = negotiated else { return };
        if !response.body_mut().compress(encoding, self.levels[encoding as usize], length) {
            return;
        }
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding.token()));
        headers.remove(header::CONTENT_LENGTH);
        headers.remove(header::ACCEPT_RANGES);
        if let Some(etag) = headers.get(header::ETAG) {
            if !etag.as_bytes().starts_with(b"W/") {
                let mut weak = Vec::with_capacity(etag.len() + 2);
                weak.extend_from_slice(b"W/");
                weak.extend_from_slice(etag.as_bytes());
                if let Ok(weak) = HeaderValue::from_bytes(&weak) {
                    headers.insert(header::ETAG, weak);
                }
            }
        }
    }

    fn type_matches(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(header::CONTENT_TYPE) else { return false };
        let bytes = value.as_bytes();
        let media = bytes.split(|&b| b == b';').next().unwrap_or_default().trim_ascii();
        self.types.iter().any(|t| t.matches(media))
    }
}

/// `Vary: Accept-Encoding`, unless the response already varies on it (or on everything).
fn add_vary(headers: &mut HeaderMap) {
    let covered = headers
        .get_all(header::VARY)
        .iter()
        .any(|v| has_token(v.as_bytes(), b"accept-encoding") || has_token(v.as_bytes(), b"*"));
    if !covered {
        headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// A comma-separated list holds `token` (any case); parameters after `=` or `;` are skipped.
fn has_token(list: &[u8], token: &[u8]) -> bool {
    list.split(|&b| b == b',').any(|item| {
        let name = item.split(|&b| b == b'=' || b == b';').next().unwrap_or_default().trim_ascii();
        name.eq_ignore_ascii_case(token)
    })
}

/// An RFC 9110 qvalue in thousandths: `0`, `0.5`, `1`, `1.000`; None when malformed.
fn parse_q(text: &[u8]) -> Option<u16> {
    let (whole, fraction) = match text.iter().position(|&b| b == b'.') {
        Some(dot) => (&text[..dot], &text[dot + 1..]),
        None => (text, &b""[..]),
    };
    if fraction.len() > 3 || !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for i in 0..3 {
        thousandths = thousandths * 10 + fraction.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match whole {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negotiate(accept: &str) -> Negotiated {
        let compress = Compress::compile(&CompressConfig::default());
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(accept).unwrap());
        compress.negotiate(&Method::GET, &headers)
    }

    #[test]
    fn q_values_pick_the_encoding() {
        use Encoding::*;
        use Negotiated::*;
        assert_eq!(negotiate("gzip, deflate, br, zstd"), Encode(Zstd), "equal q: the route's order");
        assert_eq!(negotiate("gzip, deflate, br"), Encode(Brotli));
        assert_eq!(negotiate("gzip"), Encode(Gzip));
        assert_eq!(negotiate("x-gzip"), Encode(Gzip));
        assert_eq!(negotiate("br;q=0.5, gzip;q=0.8"), Encode(Gzip), "higher q wins over preference");
        assert_eq!(negotiate("zstd;q=0, br;q=0, gzip"), Encode(Gzip));
        assert_eq!(negotiate("gzip;q=0"), Identity, "q=0 excludes");
        assert_eq!(negotiate("GZIP;Q=1.000"), Encode(Gzip));
        assert_eq!(negotiate("*"), Encode(Zstd), "* stands for every coding");
        assert_eq!(negotiate("*;q=0.1, br;q=0"), Encode(Zstd));
        assert_eq!(negotiate("zstd;q=0, *;q=0.1, br;q=0"), Encode(Gzip));
        assert_eq!(negotiate("identity"), Identity);
        assert_eq!(negotiate("*;q=0"), Identity);
        assert_eq!(negotiate("gzip;q=2"), Identity, "a malformed q is not taken");
        assert_eq!(negotiate("deflate, gzip;q=0.001"), Encode(Gzip));
        assert_eq!(negotiate(""), Identity);
    }

    #[test]
    fn head_and_range_are_left_alone() {
        let compress = Compress::compile(&CompressConfig::default());
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        assert_eq!(compress.negotiate(&Method::HEAD, &headers), Negotiated::Untouched);
        headers.insert(header::RANGE, HeaderValue::from_static("bytes=0-10"));
        assert_eq!(compress.negotiate(&Method::GET, &headers), Negotiated::Untouched);
    }

    #[test]
    fn type_patterns() {
        let compress = Compress::compile(&CompressConfig::default());
        let matches = |ct: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            compress.type_matches(&headers)
        };
        for yes in [
            "text/html; charset=utf-8",
            "TEXT/CSS",
            "application/json",
            "application/ld+json",
            "application/javascript",
            "application/rss+xml",
            "image/svg+xml",
            "application/wasm",
        ] {
            assert!(matches(yes), "{yes}");
        }
        for no in
            ["image/png", "application/octet-stream", "video/mp4", "application/zip", "text/", "application/+json"]
        {
            assert!(!matches(no), "{no}");
        }
    }

    #[test]
    fn qvalues_parse() {
        assert_eq!(parse_q(b"0"), Some(0));
        assert_eq!(parse_q(b"0.5"), Some(500));
        assert_eq!(parse_q(b"0.125"), Some(125));
        assert_eq!(parse_q(b"1"), Some(1000));
        assert_eq!(parse_q(b"1.0"), Some(1000));
        assert_eq!(parse_q(b"1.5"), None);
        assert_eq!(parse_q(b"0.1234"), None);
        assert_eq!(parse_q(b"abc"), None);
    }
}
