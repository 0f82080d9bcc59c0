//! The request key that `consistent_hash` hashes (`hash_on`), and the hash.
//!
//! The hash is FNV-1a over the bytes followed by a 64-bit finalizer
//! (MurmurHash3's `fmix64`), so that keys differing in one character land
//! far apart on the ring. It is fixed — unlike std's `DefaultHasher`, whose
//! algorithm may change between Rust releases — so every porter build and
//! every instance behind the same L4 balancer sends a key to the same server.
//! Finding the key allocates nothing: the header or cookie value is hashed
//! where it lies.

use std::net::IpAddr;

use http::header::COOKIE;

use crate::config::HashOn;
use crate::http1::view::RequestFields;

/// 64-bit hash of `bytes`: FNV-1a, then fmix64 for avalanche.
#[inline]
pub(crate) fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    fmix64(h)
}

#[inline]
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

pub(crate) fn hash_ip(ip: IpAddr) -> u64 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => hash_bytes(&v4.octets()),
        IpAddr::V6(v6) => hash_bytes(&v6.octets()),
    }
}

/// The hash of what `hash_on` names in this request. A request without the
/// header or cookie (or with an empty one) falls back to the client's IP.
pub(crate) fn request_key(hash_on: &HashOn, headers: RequestFields<'_>, client: IpAddr) -> u64 {
    let value = match hash_on {
        HashOn::ClientIp => None,
        HashOn::Header(name) => headers.get(name),
        HashOn::Cookie(name) => cookie(headers, name.as_bytes()),
    };
    match value {
        Some(v) if !v.is_empty() => hash_bytes(v),
        _ => hash_ip(client),
    }
}

/// The value of cookie `name` in the request's `Cookie` header(s), if any
/// (RFC 6265 §5.4: `name=value` pairs separated by `;`; HTTP/2 clients may
/// send several `cookie` fields).
pub(crate) fn cookie<'a>(headers: RequestFields<'a>, name: &[u8]) -> Option<&'a [u8]> {
    for field in headers.get_all(&COOKIE) {
        for pair in field.split(|&b| b == b';') {
            let pair = pair.trim_ascii();
            if let Some(rest) = pair.strip_prefix(name) {
                if let Some(value) = rest.strip_prefix(b"=") {
                    let value = value.trim_ascii();
                    // A quoted value means the same as the bare one.
                    let value = value.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).unwrap_or(value);
                    return Some(value);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use http::HeaderValue;

    #[test]
    fn cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("theme=dark; session=abc123; sessionx=no"));
        assert_eq!(cookie(RequestFields::Map(&h), b"session"), Some(&b"abc123"[..]));
        assert_eq!(cookie(RequestFields::Map(&h), b"theme"), Some(&b"dark"[..]));
        assert_eq!(cookie(RequestFields::Map(&h), b"sess"), None);
        assert_eq!(cookie(RequestFields::Map(&h), b"missing"), None);
    }

    #[test]
    fn cookie_in_a_second_field_and_quoted() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1"));
        h.append(COOKIE, HeaderValue::from_static("sid=\"q\""));
        assert_eq!(cookie(RequestFields::Map(&h), b"sid"), Some(&b"q"[..]));
    }

    #[test]
    fn missing_header_or_cookie_falls_back_to_the_client_ip() {
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let empty = HeaderMap::new();
        let by_ip = request_key(&HashOn::ClientIp, RequestFields::Map(&empty), ip);
        assert_eq!(request_key(&HashOn::Header("x-user".parse().unwrap()), RequestFields::Map(&empty), ip), by_ip);
        assert_eq!(request_key(&HashOn::Cookie("sid".into()), RequestFields::Map(&empty), ip), by_ip);
        let mut h = HeaderMap::new();
        h.insert("x-user", HeaderValue::from_static("alice"));
        assert_eq!(
            request_key(&HashOn::Header("x-user".parse().unwrap()), RequestFields::Map(&h), ip),
            hash_bytes(b"alice")
        );
    }

    #[test]
    fn mapped_v4_hashes_like_v4() {
        assert_eq!(hash_ip("::ffff:10.0.0.1".parse().unwrap()), hash_ip("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn nearby_keys_spread() {
        // One-character differences must not cluster: the top bits of 1000 keys fill 16 buckets evenly.
        let mut buckets = [0u32; 16];
        for i in 0..1000 {
            buckets[(hash_bytes(format!("user{i}").as_bytes()) >> 60) as usize] += 1;
        }
        assert!(buckets.iter().all(|&n| (30..=95).contains(&n)), "{buckets:?}");
    }
}
