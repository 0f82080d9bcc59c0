//! Rules on the request head (docs/security.md, Request framing and Host), checked before anything
//! else looks at the request (router, 421 check, upstream): more than one idea of the host is 400,
//! so the router and the server behind can never see different hosts.
//!
//! Framing is refused before the pipeline runs, with 400 and close: on
//! HTTP/1.1 by porter's own parser (`http1::request`: Content-Length with
//! Transfer-Encoding, differing lengths, a last coding other than chunked,
//! obs-fold, bytes not allowed in names or values) and chunk decoder; on
//! HTTP/2 by the h2 crate (malformed pseudo-headers, a Content-Length that
//! disagrees with the DATA frames).
//!
//! Methods and targets (RFC 9112 §3.2): `CONNECT` is 405, porter is not a
//! forward proxy (its HTTP/2 server does not enable extended CONNECT, so every
//! CONNECT asks for a tunnel). On HTTP/1.x an authority-form target (`GET a:80`)
//! and `*` on anything but OPTIONS are 400, and an absolute-form target needs a
//! Host header beside it, as every HTTP/1.1 request does (400).

use http::header;
use http::{Method, Request, Version};

use super::error::ProxyError;
use crate::http1::view::RequestFields;
use crate::router::normalize_host;

/// Checks one request: its method, its target's form, then the Host rules.
pub(crate) fn check<B>(request: &Request<B>, fields: RequestFields<'_>) -> Result<(), ProxyError> {
    if request.method() == Method::CONNECT {
        return Err(ProxyError::MethodNotAllowed);
    }
    if request.version() <= Version::HTTP_11 {
        check_target(request, fields)?;
    }
    check_hosts(request, fields)
}

/// The HTTP/1.x target forms each method may use (CONNECT is refused before).
fn check_target<B>(request: &Request<B>, fields: RequestFields<'_>) -> Result<(), ProxyError> {
    let uri = request.uri();
    if uri.scheme().is_some() {
        // Absolute-form: the Host header must be there too (and agree, `check_hosts`).
        return match fields.contains(&header::HOST) {
            true => Ok(()),
            false => Err(ProxyError::MissingHost),
        };
    }
    if uri.authority().is_some() {
        return Err(ProxyError::BadTarget);
    }
    match uri.path().as_bytes() {
        [b'/', ..] => Ok(()),
        b"*" if request.method() == Method::OPTIONS => Ok(()),
        _ => Err(ProxyError::BadTarget),
    }
}

/// The Host rules: one Host at most, and equal to the target's authority.
fn check_hosts<B>(request: &Request<B>, fields: RequestFields<'_>) -> Result<(), ProxyError> {
    let mut hosts = fields.get_all(&header::HOST);
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(ProxyError::ConflictingHost);
    }
    // An absolute-form target (HTTP/1.1) or :authority (HTTP/2) is the host the
    // router uses; a Host header beside it must name the same one.
    if let (Some(authority), Some(host)) = (request.uri().authority(), host) {
        let default_port = if request.uri().scheme_str() == Some("https") { 443 } else { 80 };
        if !same_host(authority.as_str().as_bytes(), host, default_port) {
            return Err(ProxyError::ConflictingHost);
        }
    }
    Ok(())
}

/// Whether an authority and a Host value name the same host and port
/// (case-insensitively; a missing port is the scheme's default).
pub(crate) fn same_host(authority: &[u8], host: &[u8], default_port: u16) -> bool {
    let (mut a, mut b) = ([0u8; 256], [0u8; 256]);
    match (normalize_host(authority, &mut a), normalize_host(host, &mut b)) {
        (Some(x), Some(y)) if x == y => port_of(authority, default_port) == port_of(host, default_port),
        _ => false,
    }
}

fn port_of(raw: &[u8], default_port: u16) -> Option<u16> {
    let after_host = match raw.iter().position(|&b| b == b']') {
        Some(end) => &raw[end + 1..],
        None => raw,
    };
    match after_host.iter().rposition(|&b| b == b':') {
        Some(colon) => std::str::from_utf8(&after_host[colon + 1..]).ok()?.parse().ok(),
        None => Some(default_port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_comparison() {
        let h = |s: &'static str| s.as_bytes();
        assert!(same_host(b"Example.COM", h("example.com"), 80));
        assert!(same_host(b"example.com:80", h("example.com"), 80));
        assert!(same_host(b"example.com", h("example.com:443"), 443));
        assert!(same_host(b"[::1]:8080", h("[::1]:8080"), 80));
        assert!(!same_host(b"example.com", h("example.com:8080"), 80));
        assert!(!same_host(b"a.example.com", h("b.example.com"), 80));
        assert!(!same_host(b"example.com:", h("example.com"), 80));
        assert!(!same_host(b"example.com", h("exa mple.com"), 80));
    }
}
