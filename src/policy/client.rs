//! The client address that policy sees: the connection's peer (already the
//! PROXY protocol's source when `listen.proxy_protocol` is on), or, when that
//! peer is in `listen.trusted_proxies`, the address the proxies in front
//! recorded: the right-most `X-Forwarded-For` entry that is not itself a
//! trusted proxy (entries to its left could be forged by the client).

use std::net::IpAddr;

use http::HeaderValue;

use http::HeaderName;

use crate::config::Cidr;
use crate::http1::view::{as_text, RequestFields};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// The connection's peer as the listener saw it (after the PROXY protocol).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer<'a> {
    pub ip: IpAddr,
    /// The same address as a header value, made once per connection.
    pub value: &'a HeaderValue,
    /// The peer is in `listen.trusted_proxies`.
    pub trusted: bool,
}

/// The client's address and the same as a header value. Allocates only when a
/// trusted proxy named a client.
pub(crate) fn client_ip<'h>(
    peer: Peer<'_>,
    headers: impl Into<RequestFields<'h>>,
    trusted: &[Cidr],
) -> (IpAddr, HeaderValue) {
    let headers = headers.into();
    let (trusted_peer, peer_value) = (peer.trusted, peer.value);
    let peer = peer.ip.to_canonical();
    if !trusted_peer {
        return (peer, peer_value.clone());
    }
    let is_trusted = |ip: IpAddr| trusted.iter().any(|range| range.contains(ip));
    let mut leftmost = None;
    // Header lines in order, entries right to left: the last line holds the nearest hops.
    let lines: Vec<&[u8]> = headers.get_all(&X_FORWARDED_FOR).collect();
    for line in lines.iter().rev() {
        let Some(text) = as_text(line) else { continue };
        for entry in text.rsplit(',') {
            let Some(ip) = parse_entry(entry) else { continue };
            if !is_trusted(ip) {
                return (ip, value_of(ip));
            }
            leftmost = Some(ip);
        }
    }
    if leftmost.is_none() {
        if let Some(ip) = headers.get(&X_REAL_IP).and_then(as_text).and_then(parse_entry) {
            return (ip, value_of(ip));
        }
    }
    match leftmost {
        // Every hop is a trusted proxy: the first one is as far as the chain goes.
        Some(ip) => (ip, value_of(ip)),
        None => (peer, peer_value.clone()),
    }
}

/// "192.0.2.1", "2001:db8::1", "[2001:db8::1]:443" or "192.0.2.1:80" (some proxies add ports).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    entry.parse::<std::net::SocketAddr>().ok().map(|a| a.ip().to_canonical())
}

fn value_of(ip: IpAddr) -> HeaderValue {
    HeaderValue::try_from(ip.to_string()).expect("an IP address is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    fn conn(peer: &str, trusted: bool) -> Peer<'static> {
        let ip: IpAddr = peer.parse().unwrap();
        let value = Box::leak(Box::new(HeaderValue::from_str(peer).unwrap()));
        Peer { ip, value, trusted }
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        let mut headers = HeaderMap::new();
        headers.append(&X_FORWARDED_FOR, HeaderValue::from_static("1.1.1.1, 203.0.113.9"));
        headers.append(&X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.2"));
        let (ip, value) = client_ip(conn("10.0.0.1", true), &headers, &trusted);
        assert_eq!(ip, "203.0.113.9".parse::<IpAddr>().unwrap(), "right-most untrusted entry");
        assert_eq!(value, "203.0.113.9");
        let (ip, _) = client_ip(conn("198.51.100.7", false), &headers, &trusted);
        assert_eq!(ip, "198.51.100.7".parse::<IpAddr>().unwrap(), "an untrusted peer cannot pick its address");
        let (ip, _) = client_ip(conn("10.0.0.1", true), &HeaderMap::new(), &trusted);
        assert_eq!(ip, "10.0.0.1".parse::<IpAddr>().unwrap());
    }
}
