//! Header rules for a forwarded request and its response (docs/configuration.md, Forwarding).
//!
//! Hop-by-hop headers describe one connection and stop here; the forwarding
//! headers tell the server who the client really is. Values that are the
//! same for a whole connection (the client address) are made once per
//! connection, so most requests add headers without formatting anything.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub(crate) static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The fixed hop-by-hop set (RFC 9110 §7.6.1, plus the non-standard ones in use).
pub(crate) fn fixed_hop_by_hop() -> [&'static HeaderName; 7] {
    [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
    ]
}

/// Removes header names with `_` (`limits.underscores_in_headers: false`), for
/// HTTP/2 requests (porter's own HTTP/1.1 parser drops them itself):
/// CGI-style servers (PHP, WSGI) read `X_Real_IP` as `X-Real-IP`, so a client
/// could otherwise forge the forwarding headers porter sets.
pub(crate) fn drop_underscored(headers: &mut HeaderMap) {
    let underscored = |name: &&HeaderName| name.as_str().as_bytes().contains(&b'_');
    if !headers.keys().any(|name| underscored(&name)) {
        return;
    }
    // Allocates only when such a name is present.
    let names: Vec<HeaderName> = headers.keys().filter(underscored).cloned().collect();
    for name in &names {
        headers.remove(name);
    }
}

/// Removes `Connection`, every header it names, and the fixed hop-by-hop set.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names (compared, not hashed) finds the usual case: none present.
    let hop_by_hop = fixed_hop_by_hop();
    if !headers.keys().any(|name| hop_by_hop.contains(&name)) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        // Allocates only when the rare Connection header is present.
        let listed: Vec<HeaderValue> = headers.get_all(header::CONNECTION).iter().cloned().collect();
        for value in &listed {
            for name in value.to_str().unwrap_or("").split(',') {
                let name = name.trim();
                if !name.is_empty() {
                    headers.remove(name);
                }
            }
        }
    }
    for name in fixed_hop_by_hop() {
        if headers.contains_key(name) {
            headers.remove(name);
        }
    }
}

/// The client's `TE` lists `trailers` (gRPC clients send `te: trailers`).
pub(crate) fn asks_for_trailers(headers: &HeaderMap) -> bool {
    headers.get_all(header::TE).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',').any(|t| t.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("trailers"))
        })
    })
}

/// Per-connection facts that become request headers.
#[derive(Debug, Clone)]
pub(crate) struct ClientHeaders {
    /// The client's IP as a header value (also X-Real-IP).
    pub ip: HeaderValue,
    pub https: bool,
    /// X-Forwarded-Port: the port the client connected to. On https, `http.redirect_port`
    /// when set (the port clients use behind a port mapping or an L4 balancer), else
    /// the https listener's; on plaintext, the http listener's.
    pub port: HeaderValue,
    /// The client is in `listen.trusted_proxies`: its forwarding headers are kept and
    /// appended to; from anyone else they are replaced.
    pub trusted: bool,
}

impl ClientHeaders {
    pub(crate) fn new(client: std::net::IpAddr, https: bool, port: u16, trusted: bool) -> ClientHeaders {
        let ip =
            HeaderValue::try_from(client.to_canonical().to_string()).expect("an IP address is a valid header value");
        ClientHeaders { ip, https, port: HeaderValue::from(port), trusted }
    }
}

pub(crate) static VIA_HTTP11: HeaderValue = HeaderValue::from_static("1.1 porter");
pub(crate) static VIA_HTTP2: HeaderValue = HeaderValue::from_static("2.0 porter");
pub(crate) static VIA_HTTP3: HeaderValue = HeaderValue::from_static("3 porter");

/// Adds the forwarding headers. `host` is the client's Host (or :authority) value.
/// From a trusted client, incoming X-Forwarded-For is appended to and incoming
/// X-Forwarded-Proto, X-Forwarded-Host, X-Forwarded-Port and X-Real-IP are kept; from
/// anyone else all five are replaced, so a client cannot forge its address to the servers.
pub(crate) fn add_forwarding(headers: &mut HeaderMap, client: &ClientHeaders, host: &HeaderValue, via: &HeaderValue) {
    if !client.trusted {
        headers.insert(X_FORWARDED_FOR.clone(), client.ip.clone());
        let proto = if client.https { HeaderValue::from_static("https") } else { HeaderValue::from_static("http") };
        headers.insert(X_FORWARDED_PROTO.clone(), proto);
        headers.insert(X_FORWARDED_HOST.clone(), host.clone());
        headers.insert(X_FORWARDED_PORT.clone(), client.port.clone());
        headers.insert(X_REAL_IP.clone(), client.ip.clone());
        headers.append(header::VIA, via.clone());
        return;
    }
    match headers.get(&X_FORWARDED_FOR) {
        None => {
            headers.insert(X_FORWARDED_FOR.clone(), client.ip.clone());
        }
        Some(_) => {
            // Several incoming X-Forwarded-For lines are one list; join them, then append us.
            let mut joined = Vec::with_capacity(64);
            for value in headers.get_all(&X_FORWARDED_FOR) {
                if !joined.is_empty() {
                    joined.extend_from_slice(b", ");
                }
                joined.extend_from_slice(value.as_bytes());
            }
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(client.ip.as_bytes());
            if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(joined)) {
                headers.insert(X_FORWARDED_FOR.clone(), value);
            }
        }
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        let proto = if client.https { HeaderValue::from_static("https") } else { HeaderValue::from_static("http") };
        headers.insert(X_FORWARDED_PROTO.clone(), proto);
    }
    if !headers.contains_key(&X_FORWARDED_HOST) {
        headers.insert(X_FORWARDED_HOST.clone(), host.clone());
    }
    if !headers.contains_key(&X_FORWARDED_PORT) {
        headers.insert(X_FORWARDED_PORT.clone(), client.port.clone());
    }
    if !headers.contains_key(&X_REAL_IP) {
        headers.insert(X_REAL_IP.clone(), client.ip.clone());
    }
    headers.append(header::VIA, via.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_named_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, X-Secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn forwarded_for_is_appended() {
        let mut h = HeaderMap::new();
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("1.1.1.1"));
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("2.2.2.2"));
        h.insert(&X_REAL_IP, HeaderValue::from_static("1.1.1.1"));
        h.insert(&X_FORWARDED_PORT, HeaderValue::from_static("8443"));
        let client = ClientHeaders::new("10.0.0.1".parse().unwrap(), true, 443, true);
        add_forwarding(&mut h, &client, &HeaderValue::from_static("example.com"), &VIA_HTTP11);
        assert_eq!(h.get(&X_FORWARDED_FOR).unwrap(), "1.1.1.1, 2.2.2.2, 10.0.0.1");
        assert_eq!(h.get(&X_FORWARDED_PORT).unwrap(), "8443", "a trusted proxy's X-Forwarded-Port is kept");
        assert_eq!(h.get(&X_FORWARDED_PROTO).unwrap(), "https");
        assert_eq!(h.get(&X_REAL_IP).unwrap(), "1.1.1.1", "a trusted proxy's X-Real-IP is kept");
        assert_eq!(h.get(header::VIA).unwrap(), "1.1 porter");
    }

    #[test]
    fn untrusted_forwarding_headers_are_replaced() {
        let mut h = HeaderMap::new();
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("1.1.1.1"));
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("2.2.2.2"));
        h.insert(&X_REAL_IP, HeaderValue::from_static("1.1.1.1"));
        h.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        h.insert(&X_FORWARDED_PORT, HeaderValue::from_static("1"));
        let client = ClientHeaders::new("10.0.0.1".parse().unwrap(), false, 8080, false);
        add_forwarding(&mut h, &client, &HeaderValue::from_static("example.com"), &VIA_HTTP11);
        assert_eq!(h.get_all(&X_FORWARDED_PORT).iter().collect::<Vec<_>>(), ["8080"]);
        assert_eq!(h.get_all(&X_FORWARDED_FOR).iter().collect::<Vec<_>>(), ["10.0.0.1"]);
        assert_eq!(h.get(&X_REAL_IP).unwrap(), "10.0.0.1");
        assert_eq!(h.get(&X_FORWARDED_PROTO).unwrap(), "http");
    }
}
