//! `rate_limit:` (a route policy) and `rate_limit_store:` (top level), as the user
//! writes them and as porter runs them (docs/configuration.md, Rate limits).
//!
//! The raw structs sit here rather than in `raw.rs` so the whole setting, its
//! parsing and its error messages read in one file. `rate` is parsed into an
//! emission interval once, so the request path only compares integers.

use std::time::Duration;

use serde::Deserialize;

use super::locate::join;
use super::raw::S;
use super::units::parse_duration;
use super::validate::{Checker, Zero};
use super::ConfigError;

/// `rate_limit: { rate, burst, key }` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateLimit {
    pub rate: S<String>,
    // Wider than the u32 kept, so a huge value gets the range message, not a type error.
    pub burst: Option<S<u64>>,
    pub key: Option<S<String>>,
}

/// `rate_limit_store: { redis, on_error, timeout }` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateLimitStore {
    pub redis: S<String>,
    pub on_error: Option<S<RawOnError>>,
    pub timeout: Option<S<String>>,
}

/// Read as an enum for serde's "unknown variant `x`, expected one of ..." message.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawOnError {
    Allow,
    Deny,
}

/// A route's token bucket: `burst` tokens at most, one back every `interval`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// The `rate` as written ("100/s"), for messages.
    pub rate: String,
    /// Time for one token to come back: the rate's period divided by its count.
    pub interval: Duration,
    /// The bucket's size: requests let through at once after a quiet period.
    pub burst: u32,
    pub key: RateLimitKey,
}

/// What one bucket is kept per.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateLimitKey {
    /// The client address after `trusted_proxies` and the PROXY protocol.
    ClientIp,
    /// A request header's value (an API key, a user id set by an auth layer in
    /// front); requests without it are keyed by client address.
    Header(http::HeaderName),
    /// One bucket for the whole route.
    Route,
}

/// `rate_limit_store:`: buckets kept in Redis, shared by every porter using it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitStoreConfig {
    /// `redis://[user:password@]host[:port][/db]` or `unix:///path/to/redis.sock`.
    pub redis: String,
    pub on_error: OnError,
    /// The longest a request waits for Redis before `on_error` decides.
    pub timeout: Duration,
}

/// What a request gets when Redis cannot answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Let it through (fail open): a Redis outage does not take the site down.
    Allow,
    /// Answer 429 (fail closed).
    Deny,
}

/// Default `rate_limit_store.timeout`: a request never waits longer on Redis.
pub(crate) const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_millis(10);

/// Largest `burst`, and largest count in a `rate`.
const MAX_COUNT: u64 = 1_000_000_000;

/// Parses `rate` ("100/s", "600/m", "10000/h", "1/d", or a duration: "5/10s")
/// into the interval between two tokens.
pub(crate) fn parse_rate(text: &str) -> Result<(u64, Duration), String> {
    let shape = "write COUNT/PERIOD, like \"100/s\", \"600/m\" or \"10000/h\"";
    let Some((count, period)) = text.split_once('/') else {
        return Err(format!("rate \"{text}\" has no period: {shape}"));
    };
    let count = count.trim();
    let count: u64 = match count.parse() {
        Ok(0) => return Err(format!("rate \"{text}\" allows nothing: the count must be at least 1")),
        Ok(n) if n > MAX_COUNT => return Err(format!("rate \"{text}\": the count must be at most {MAX_COUNT}")),
        Ok(n) => n,
        Err(_) => return Err(format!("rate \"{text}\": \"{count}\" is not a whole number; {shape}")),
    };
    let period = period.trim();
    let period = match period {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        "d" => Duration::from_secs(86_400),
        other => match parse_duration(other) {
            Ok(d) if d.is_zero() => return Err(format!("rate \"{text}\": the period must be longer than 0")),
            Ok(d) => d,
            Err(_) => {
                return Err(format!("rate \"{text}\": unknown period \"{other}\"; {shape} (or a duration: \"5/10s\")"))
            }
        },
    };
    let interval = period / count as u32;
    if interval.is_zero() {
        return Err(format!("rate \"{text}\" is faster than one request per nanosecond"));
    }
    Ok((count, interval))
}

/// "client_ip" | "header:NAME" | "route".
pub(crate) fn parse_key(text: &str) -> Result<RateLimitKey, String> {
    match text {
        "client_ip" => Ok(RateLimitKey::ClientIp),
        "route" => Ok(RateLimitKey::Route),
        _ => match text.strip_prefix("header:") {
            Some("") => Err("missing header name after \"header:\"".to_string()),
            Some(name) => http::HeaderName::from_bytes(name.as_bytes())
                .map(RateLimitKey::Header)
                .map_err(|_| format!("\"{name}\" is not a valid header name")),
            None => Err(format!("unknown key \"{text}\": use client_ip, header:NAME or route")),
        },
    }
}

/// Checks one `rate_limit:` block; `field` is its path (`routes[0].rate_limit`).
pub(crate) fn rate_limit(check: &Checker, raw: &RawRateLimit, field: &str) -> Result<RateLimitConfig, ConfigError> {
    let (count, interval) = check.value(&raw.rate, &join(field, "rate"), parse_rate)?;
    // Without `burst`, one period's worth may come at once ("100/s": 100), as a window counter allows.
    let burst = match &raw.burst {
        None => count,
        Some(b) if b.value == 0 => {
            return Err(check.err(
                b.referenced,
                &join(field, "burst"),
                "must be at least 1 (0 would refuse everything)",
            ))
        }
        Some(b) if b.value > MAX_COUNT => {
            return Err(check.err(b.referenced, &join(field, "burst"), format!("must be at most {MAX_COUNT}")))
        }
        Some(b) => b.value,
    };
    let key = match &raw.key {
        None => RateLimitKey::ClientIp,
        Some(key) => check.value(key, &join(field, "key"), parse_key)?,
    };
    Ok(RateLimitConfig { rate: raw.rate.value.trim().to_string(), interval, burst: burst as u32, key })
}

/// Checks `rate_limit_store:`.
pub(crate) fn store(check: &Checker, raw: &RawRateLimitStore) -> Result<RateLimitStoreConfig, ConfigError> {
    let field = "rate_limit_store";
    let url = check.value(&raw.redis, &join(field, "redis"), parse_redis_url)?;
    let on_error = match raw.on_error.as_ref().map(|o| o.value) {
        None | Some(RawOnError::Allow) => OnError::Allow,
        Some(RawOnError::Deny) => OnError::Deny,
    };
    let timeout = check.duration(&raw.timeout, &join(field, "timeout"), DEFAULT_STORE_TIMEOUT, Zero::Forbidden)?;
    Ok(RateLimitStoreConfig { redis: url, on_error, timeout })
}

/// `redis://...` or `unix://...`, parsed by the client that will use it, so
/// `porter check` refuses what porter could not connect to.
fn parse_redis_url(text: &str) -> Result<String, String> {
    if text.starts_with("rediss://") || text.starts_with("valkeys://") {
        return Err(
            "TLS to Redis (rediss://) is not supported: use redis:// on a private network or a unix socket".to_string()
        );
    }
    if !(text.starts_with("redis://") || text.starts_with("unix://") || text.starts_with("redis+unix://")) {
        return Err(format!(
            "\"{text}\" is not a Redis URL: write \"redis://host:6379/0\" or \"unix:///run/redis/redis.sock\""
        ));
    }
    // The client's own parser; its message may echo the URL, which can hold a password.
    match redis::Client::open(text) {
        Ok(_) => Ok(text.to_string()),
        Err(_) => Err("not a valid Redis URL (redis://[user:password@]host[:port][/db])".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("100/s"), Ok((100, Duration::from_millis(10))));
        assert_eq!(parse_rate("600/m"), Ok((600, Duration::from_millis(100))));
        assert_eq!(parse_rate("10000/h"), Ok((10000, Duration::from_millis(360))));
        assert_eq!(parse_rate("1/d"), Ok((1, Duration::from_secs(86_400))));
        assert_eq!(parse_rate("5/10s"), Ok((5, Duration::from_secs(2))));
        assert_eq!(parse_rate(" 3 / s "), Ok((3, Duration::from_nanos(333_333_333))));
        assert!(parse_rate("100").unwrap_err().contains("no period"));
        assert!(parse_rate("0/s").unwrap_err().contains("at least 1"));
        assert!(parse_rate("x/s").unwrap_err().contains("not a whole number"));
        assert!(parse_rate("1.5/s").unwrap_err().contains("not a whole number"));
        assert!(parse_rate("-1/s").unwrap_err().contains("not a whole number"));
        assert!(parse_rate("100/sec").unwrap_err().contains("unknown period"));
        assert!(parse_rate("100/0s").unwrap_err().contains("longer than 0"));
        assert!(parse_rate("2000000000/s").unwrap_err().contains("at most"));
    }

    #[test]
    fn keys() {
        assert_eq!(parse_key("client_ip"), Ok(RateLimitKey::ClientIp));
        assert_eq!(parse_key("route"), Ok(RateLimitKey::Route));
        assert_eq!(parse_key("header:X-Api-Key"), Ok(RateLimitKey::Header(http::HeaderName::from_static("x-api-key"))));
        assert!(parse_key("header:").is_err());
        assert!(parse_key("header:bad name").is_err());
        assert!(parse_key("ip").unwrap_err().contains("client_ip, header:NAME or route"));
    }

    #[test]
    fn redis_urls() {
        assert!(parse_redis_url("redis://127.0.0.1:6379/0").is_ok());
        assert!(parse_redis_url("redis://:secret@10.0.0.5/2").is_ok());
        assert!(parse_redis_url("unix:///run/redis/redis.sock").is_ok());
        assert!(parse_redis_url("rediss://x").unwrap_err().contains("not supported"));
        assert!(parse_redis_url("http://x").unwrap_err().contains("not a Redis URL"));
        let e = parse_redis_url("redis://:secret@host:notaport").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
    }
}
