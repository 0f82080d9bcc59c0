//! Entry points for the cargo-fuzz targets in `fuzz/` (not a public API:
//! hidden from docs, no stability promise). Each takes raw fuzzer bytes,
//! runs one part of porter on them the way a client or an operator could
//! feed it, and asserts the invariants that part promises; a panic here is
//! a finding.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::Config;
use crate::proxy::{headers, strict};
use crate::router::{normalize_host, Router};

pub mod response;

/// The config loader: any text either loads or is refused with an error
/// that names a place in the file; never a panic.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = Config::from_yaml(text, Path::new("fuzz/porter.yaml")) {
        assert!(!e.to_string().is_empty());
    }
}

// One line per item: a `\` line continuation would eat the indentation YAML needs.
const ROUTES: &str = concat!(
    "upstreams:\n  a:\n    servers: [{url: \"http://127.0.0.1:1\"}]\nroutes:\n",
    "  - {host: example.com, path: /api/, upstream: a, strip_prefix: true}\n",
    "  - {host: example.com, upstream: a}\n",
    "  - {host: \"*.example.com\", path: /x, upstream: a}\n",
    "  - {host: \"*.b.example.com\", upstream: a}\n",
    "  - {path: /static, upstream: a, strip_prefix: true}\n",
    "  - {path: /, upstream: a}\n",
);

fn router() -> &'static Router {
    static ROUTER: OnceLock<Router> = OnceLock::new();
    ROUTER.get_or_init(|| {
        let config = Config::from_yaml(ROUTES, Path::new("fuzz.yaml")).expect("the fuzz routes are valid");
        let cancel = tokio_util::sync::CancellationToken::new();
        let by_name: HashMap<String, Arc<crate::upstream::Upstream>> = config
            .upstreams
            .iter()
            .map(|(name, cfg)| (name.clone(), Arc::new(crate::upstream::Upstream::new(name, cfg, None, &cancel))))
            .collect();
        Router::new(&config.routes, &by_name, None, None, &cancel)
    })
}

/// Host normalisation and routing: `data` is a Host value, a NUL, a path.
pub fn route(data: &[u8]) {
    let (host, path) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"/"[..]),
    };
    let mut buf = [0u8; 256];
    let Some(name) = normalize_host(host, &mut buf) else { return };
    assert!(!name.is_empty() && !name.bytes().any(|b| b.is_ascii_uppercase()), "{name:?}");
    // The port is gone: a colon is left only inside an IPv6 literal's brackets.
    assert!((name.starts_with('[') && name.ends_with(']')) || !name.contains([':', '[', ']']), "{name:?}");
    let mut again = [0u8; 256];
    assert_eq!(normalize_host(name.as_bytes(), &mut again), Some(name), "normalising is idempotent");
    let Ok(path) = std::str::from_utf8(path) else { return };
    if let Some(route) = router().find(name, path) {
        assert!(crate::router::prefix_matches(&route.prefix, path), "{} for {path:?}", route.label);
        if route.strip_prefix && path.starts_with('/') {
            let stripped = crate::router::strip(&route.prefix, path);
            assert!(stripped.starts_with('/'), "{stripped:?}");
        }
    }
}

/// Parses `name: value` lines into a header map (skipping what http refuses).
fn header_map(data: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(line[colon + 1..].trim_ascii()))
        else {
            continue;
        };
        map.append(name, value);
    }
    map
}

/// The request header rewrite: hop-by-hop headers (and what Connection names)
/// gone, forwarding headers present and ending with this client.
pub fn header_rewrite(data: &[u8]) {
    let https = data.first().is_some_and(|b| b & 1 == 1);
    let mut map = header_map(data);
    let named: Vec<HeaderName> = map
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(',').map(str::trim).collect::<Vec<_>>())
        .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        .collect();
    let host = map.get(header::HOST).cloned().unwrap_or(HeaderValue::from_static("fuzz.test"));
    headers::strip_hop_by_hop(&mut map);
    for name in named.iter().chain(headers::fixed_hop_by_hop()) {
        assert!(!map.contains_key(name), "{name} survived");
    }
    let trusted = data.first().is_some_and(|b| b & 2 == 2);
    // What a trusted peer (a proxy in front) already said is kept; anyone else's is replaced.
    let sent_host = map.get("x-forwarded-host").cloned();
    let sent_proto = map.get("x-forwarded-proto").cloned();
    let client = headers::ClientHeaders::new([192, 0, 2, 7].into(), https, 443, trusted);
    headers::add_forwarding(&mut map, &client, &host, &headers::VIA_HTTP11);
    let proto = HeaderValue::from_static(if https { "https" } else { "http" });
    let xff = map.get_all("x-forwarded-for").iter().collect::<Vec<_>>();
    assert_eq!(xff.len(), 1, "one X-Forwarded-For line: {xff:?}");
    if trusted {
        assert!(xff[0] == "192.0.2.7" || xff[0].as_bytes().ends_with(b", 192.0.2.7"), "{xff:?}");
        assert_eq!(map.get("x-forwarded-host"), Some(sent_host.as_ref().unwrap_or(&host)));
        assert_eq!(map.get("x-forwarded-proto"), Some(sent_proto.as_ref().unwrap_or(&proto)));
    } else {
        assert_eq!(xff[0], "192.0.2.7");
        for (name, value) in [("x-forwarded-host", &host), ("x-forwarded-proto", &proto)] {
            assert_eq!(map.get_all(name).iter().collect::<Vec<_>>(), [value], "{name}");
        }
    }
}

/// The same client bytes through hyper's HTTP/1.1 server and porter's own parser
/// and body decoder (`http1::differential`): any disagreement on where a message
/// ends, or on a request's method, target or body, fails.
pub fn h1_differential(data: &[u8]) {
    if let Err(disagreement) = crate::http1::differential::compare(data) {
        panic!("porter and hyper read {:?} differently: {disagreement}", String::from_utf8_lossy(data));
    }
}

/// The same server bytes through porter's own upstream HTTP/1.1 client and
/// hyper's client (`fuzzing::response`): any disagreement on where a response
/// ends (status, body, whether the connection can carry the next request)
/// beyond the differences porter makes by design fails.
pub fn h1_response_differential(data: &[u8]) {
    if let Err(disagreement) = response::compare(data) {
        panic!("porter and hyper read the response {:?} differently: {disagreement}", String::from_utf8_lossy(data));
    }
}

/// The request head as porter's HTTP/1.1 server receives it: its parser
/// (`http1::request`) reads a head the same whether the bytes came at once or
/// the connection loop parsed a prefix first; a head with both framings is
/// never accepted; then the Host rules and the router on the accepted head.
pub fn request_head(data: &[u8]) {
    request_head_split(data, data.first().map_or(0, |&b| usize::from(b) % (data.len() + 1)));
}

fn request_head_split(data: &[u8], split: usize) {
    use crate::http1::request::{parse, BodyKind};
    const MAX_HEAD: usize = 16 * 1024;
    let whole = parse(&mut bytes::BytesMut::from(data), MAX_HEAD, false);
    match parse(&mut bytes::BytesMut::from(&data[..split]), MAX_HEAD, false) {
        Ok(None) => {}
        // A head complete in the prefix is the same head in the whole.
        Ok(Some(first)) => {
            let Ok(Some(again)) = &whole else { panic!("split at {split}: prefix read a head, whole {whole:?}") };
            assert_eq!(format!("{:?}", first.request), format!("{:?}", again.request), "split at {split}");
            let (first_fields, fields) = (first.fields.to_header_map(), again.fields.to_header_map());
            assert_eq!(format!("{first_fields:?}"), format!("{fields:?}"), "split at {split}");
            assert_eq!((first.body, first.keep_alive), (again.body, again.keep_alive), "split at {split}");
        }
        // Refused on a prefix: refused with more bytes too (431 and 400 may trade places).
        Err(e) => assert!(whole.is_err(), "split at {split}: prefix refused ({e:?}), whole {whole:?}"),
    }

    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut slots);
    if let Ok(httparse::Status::Complete(_)) = parsed.parse(data) {
        let names = |n: &str| parsed.headers.iter().filter(|h| h.name.eq_ignore_ascii_case(n)).count();
        if names("content-length") > 0 && names("transfer-encoding") > 0 {
            assert!(whole.is_err(), "CL+TE accepted: {whole:?}");
        }
    }
    let Ok(Some(head)) = whole else { return };
    let request = &head.request;
    let fields = crate::http1::view::RequestFields::Raw(&head.fields);
    let names = |n: &str| fields.iter().filter(|(name, _)| name.eq_ignore_ascii_case(n.as_bytes())).count();
    match head.body {
        BodyKind::Chunked => assert!(names("transfer-encoding") > 0 && names("content-length") == 0),
        BodyKind::Length(n) => assert!(n > 0 && names("content-length") > 0 && names("transfer-encoding") == 0),
        BodyKind::Empty => assert_eq!(names("transfer-encoding"), 0),
    }
    if strict::check(request, fields).is_ok() {
        assert!(names("host") <= 1);
    } else {
        return;
    }
    let host = request.uri().authority().map(|a| a.as_str().as_bytes()).or(fields.get(&http::header::HOST));
    if let Some(host) = host {
        let mut buf = [0u8; 256];
        if let Some(name) = normalize_host(host, &mut buf) {
            let _ = router().find(name, request.uri().path());
        }
    }
}

#[cfg(test)]
mod tests {
    /// The request_head invariants at every split of heads on the framing rules' edges.
    #[test]
    fn request_head_holds_at_every_split() {
        let cases: [&[u8]; 7] = [
            b"GET http://a.test/x HTTP/1.1\r\nHost: a.test\r\n\r\nGET /next HTTP/1.1\r\n\r\n",
            b"POST /api/x HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\n\r\nabc",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nX: a\r\n b\r\n\r\n",
            b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        ];
        for case in cases {
            for split in 0..=case.len() {
                super::request_head_split(case, split);
            }
        }
    }

    /// Runs every input under `dir`/<target>/ through its target; returns how many ran.
    fn replay(dir: &str) -> usize {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        type Target = fn(&[u8]);
        let targets: [(&str, Target); 6] = [
            ("config", super::config),
            ("route", super::route),
            ("header_rewrite", super::header_rewrite),
            ("request_head", super::request_head),
            ("h1_differential", super::h1_differential),
            ("h1_response_differential", super::h1_response_differential),
        ];
        let mut replayed = 0;
        for (name, target) in targets {
            let Ok(entries) = std::fs::read_dir(dir.join(name)) else { continue };
            for entry in entries {
                let path = entry.unwrap().path();
                eprintln!("{name}: {}", path.display());
                target(&std::fs::read(&path).unwrap());
                replayed += 1;
            }
        }
        replayed
    }

    /// Every input the fuzzers found a bug with, kept in `fuzz/regressions/<target>/`,
    /// runs through its target again on each test run (stable Rust, no libFuzzer).
    #[test]
    fn saved_crash_inputs_pass() {
        assert!(replay("fuzz/regressions") > 0, "no inputs under fuzz/regressions");
    }
}
