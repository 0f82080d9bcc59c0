//! The `rate_limit` phase of a route (docs/configuration.md, Rate limits):
//! a token bucket per key, `burst` requests at once and one more every
//! `interval`; above it 429 with `Retry-After`.
//!
//! The key is the client address porter already settled on (after
//! `trusted_proxies` and the PROXY protocol: a client cannot pick its own), a
//! request header's value, or the route. Buckets live in this process
//! ([`local`]) or, with `rate_limit_store`, in Redis ([`redis`]) so that
//! several porter instances share them.

pub(crate) mod local;
pub(crate) mod redis;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::config::{RateLimitConfig, RateLimitKey};
use crate::http1::view::RequestFields;
use crate::upstream::ResponseBody;
pub(crate) use local::Decision;
use local::{LocalLimiter, DEFAULT_MAX_KEYS};
pub(crate) use redis::RedisStore;

/// One route's compiled `rate_limit`.
#[derive(Debug)]
pub struct RateLimit {
    key: RateLimitKey,
    interval: Duration,
    burst: u32,
    buckets: Buckets,
}

#[derive(Debug)]
enum Buckets {
    /// Shared with the same route's limiter in the next configuration when its
    /// settings stay, so a reload does not hand everyone a full bucket.
    Local(Arc<LocalLimiter>),
    /// `prefix` names the route in the Redis keys: `porter:rl:<route>|`.
    Shared { store: Arc<RedisStore>, prefix: Box<[u8]> },
}

impl RateLimit {
    /// `route` is the route's label (`example.com/api/`): instances with the same
    /// configuration name the same Redis keys. `previous` is the same route's limit in
    /// the configuration being replaced: its buckets go on when nothing about them changed.
    pub fn new(
        config: &RateLimitConfig,
        route: &str,
        store: Option<&Arc<RedisStore>>,
        previous: Option<&RateLimit>,
    ) -> RateLimit {
        let kept = previous.and_then(|p| match &p.buckets {
            Buckets::Local(local)
                if p.key == config.key && p.interval == config.interval && p.burst == config.burst =>
            {
                Some(local.clone())
            }
            _ => None,
        });
        let buckets = match store {
            None => Buckets::Local(
                kept.unwrap_or_else(|| Arc::new(LocalLimiter::new(config.interval, config.burst, DEFAULT_MAX_KEYS))),
            ),
            Some(store) => Buckets::Shared {
                store: store.clone(),
                prefix: format!("porter:rl:{route}|").into_bytes().into_boxed_slice(),
            },
        };
        RateLimit { key: config.key.clone(), interval: config.interval, burst: config.burst, buckets }
    }

    /// Takes a token for this request. `client` is the client address after
    /// `trusted_proxies` and the PROXY protocol.
    pub(crate) async fn check<'h>(&self, client: IpAddr, headers: impl Into<RequestFields<'h>>) -> Decision {
        let headers = headers.into();
        match &self.buckets {
            Buckets::Local(local) => self.check_local(local, client, headers),
            Buckets::Shared { store, prefix } => {
                // A Redis key per request: the round trip costs far more than this allocation.
                let mut key = Vec::with_capacity(prefix.len() + 40);
                key.extend_from_slice(prefix);
                match self.key_bytes(client, headers) {
                    KeyBytes::Ip(ip, len) => {
                        key.extend_from_slice(b"ip:");
                        key.extend_from_slice(&ip[..len]);
                    }
                    KeyBytes::Header(value) => {
                        key.extend_from_slice(b"h:");
                        key.extend_from_slice(value);
                    }
                    KeyBytes::Route => key.extend_from_slice(b"route"),
                }
                store.check(&key, self.interval, self.burst).await
            }
        }
    }

    /// The in-process path: a hash and a short lock, no allocation.
    fn check_local(&self, local: &LocalLimiter, client: IpAddr, headers: RequestFields<'_>) -> Decision {
        match self.key_bytes(client, headers) {
            KeyBytes::Route => local.check_single(),
            KeyBytes::Ip(ip, len) => local.check(local.hash(&ip[..len])),
            // A separate domain from addresses: a header value cannot stand for an address's bucket.
            KeyBytes::Header(value) => local.check(local.hash(value) ^ HEADER_DOMAIN),
        }
    }

    fn key_bytes<'h>(&self, client: IpAddr, headers: RequestFields<'h>) -> KeyBytes<'h> {
        match &self.key {
            RateLimitKey::Route => KeyBytes::Route,
            RateLimitKey::Header(name) => match headers.get(name) {
                Some(value) => KeyBytes::Header(value),
                // Without the header, the client's own bucket: leaving it out is no way around the limit.
                None => ip_bytes(client),
            },
            RateLimitKey::ClientIp => ip_bytes(client),
        }
    }
}

/// Mixed into header-value hashes so they never land on an address's entry.
const HEADER_DOMAIN: u64 = 0x6865_6164_6572_3a00;

enum KeyBytes<'h> {
    /// The address's octets (4 for IPv4, 16 for IPv6).
    Ip([u8; 16], usize),
    Header(&'h [u8]),
    Route,
}

/// An IPv4 client is the same key whether it came on an IPv4 or a dual-stack socket.
fn ip_bytes<'h>(client: IpAddr) -> KeyBytes<'h> {
    let mut bytes = [0u8; 16];
    match client.to_canonical() {
        IpAddr::V4(v4) => {
            bytes[..4].copy_from_slice(&v4.octets());
            KeyBytes::Ip(bytes, 4)
        }
        IpAddr::V6(v6) => {
            bytes.copy_from_slice(&v6.octets());
            KeyBytes::Ip(bytes, 16)
        }
    }
}

/// Whole seconds until a token is back, rounded up (never 0: "retry now" would be
/// refused again).
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_nanos().div_ceil(1_000_000_000).max(1) as u64
}

/// The 429 answer: `Retry-After` in whole seconds.
pub(crate) fn too_many_requests(wait: Duration) -> Response<ResponseBody> {
    let mut response =
        Response::new(ResponseBody::full(Bytes::from_static(b"429 Too Many Requests: rate limit exceeded\n")));
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs(wait)));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_rate, RateLimitConfig};
    use http::HeaderMap;

    fn config(rate: &str, burst: u32, key: RateLimitKey) -> RateLimitConfig {
        let (_, interval) = parse_rate(rate).unwrap();
        RateLimitConfig { rate: rate.into(), interval, burst, key }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    }

    #[test]
    fn by_client_address() {
        let limit = RateLimit::new(&config("1/m", 2, RateLimitKey::ClientIp), "r/", None, None);
        let headers = HeaderMap::new();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let a_mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        block_on(async {
            assert_eq!(limit.check(a, &headers).await, Decision::Allow);
            assert_eq!(limit.check(a_mapped, &headers).await, Decision::Allow, "the same client");
            let Decision::Limited(wait) = limit.check(a, &headers).await else { panic!("not limited") };
            assert_eq!(retry_after_secs(wait), 60, "one token a minute");
            assert_eq!(limit.check(b, &headers).await, Decision::Allow);
        });
    }

    #[test]
    fn by_header_falls_back_to_address() {
        let name = http::HeaderName::from_static("x-api-key");
        let limit = RateLimit::new(&config("1/h", 1, RateLimitKey::Header(name.clone())), "r/", None, None);
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        let mut one = HeaderMap::new();
        one.insert(name.clone(), HeaderValue::from_static("one"));
        let mut two = HeaderMap::new();
        two.insert(name, HeaderValue::from_static("two"));
        block_on(async {
            assert_eq!(limit.check(ip, &one).await, Decision::Allow);
            assert!(matches!(limit.check(ip, &one).await, Decision::Limited(_)));
            assert_eq!(limit.check(ip, &two).await, Decision::Allow, "another key, same address");
            assert_eq!(limit.check(ip, &HeaderMap::new()).await, Decision::Allow);
            assert!(matches!(limit.check(ip, &HeaderMap::new()).await, Decision::Limited(_)));
        });
    }

    #[test]
    fn by_route() {
        let limit = RateLimit::new(&config("10/s", 1, RateLimitKey::Route), "r/", None, None);
        let headers = HeaderMap::new();
        block_on(async {
            assert_eq!(limit.check("192.0.2.1".parse().unwrap(), &headers).await, Decision::Allow);
            assert!(matches!(limit.check("192.0.2.2".parse().unwrap(), &headers).await, Decision::Limited(_)));
        });
    }

    #[test]
    fn a_reload_keeps_the_buckets_unless_the_limit_changed() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let headers = HeaderMap::new();
        let before = RateLimit::new(&config("1/h", 1, RateLimitKey::ClientIp), "r/", None, None);
        let same = RateLimit::new(&config("1/h", 1, RateLimitKey::ClientIp), "r/", None, Some(&before));
        let changed = RateLimit::new(&config("1/h", 2, RateLimitKey::ClientIp), "r/", None, Some(&before));
        block_on(async {
            assert_eq!(before.check(ip, &headers).await, Decision::Allow);
            assert!(matches!(same.check(ip, &headers).await, Decision::Limited(_)), "the bucket went on");
            assert_eq!(changed.check(ip, &headers).await, Decision::Allow, "a new limit starts afresh");
        });
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        let response = too_many_requests(Duration::from_millis(2500));
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
    }
}
