//! The YAML shape of the file (docs/configuration.md), as serde sees it.
//!
//! Every struct denies unknown fields so typos fail. Values that need checking
//! are `Spanned` so `validate.rs` can point at them; durations, sizes,
//! addresses and URLs are read as strings and parsed there, where the
//! position and field path are at hand (a plain `75` reads as the string "75"
//! and gets a "has no unit" message rather than a type error).

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;

pub(crate) type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub listen: Option<S<RawListen>>,
    pub tls: Option<RawTls>,
    pub http: Option<RawHttp>,
    pub limits: Option<RawLimits>,
    pub acme: Option<S<RawAcme>>,
    pub shutdown_timeout: Option<S<String>>,
    pub access_log: Option<RawAccessLog>,
    /// Named blocks of route policy (SPEC §9), used by routes' `policies: [name]`.
    pub policies: Option<S<SpannedMap<S<RawPolicy>>>>,
    pub rate_limit_store: Option<super::rate_limit::RawRateLimitStore>,
    // Absent = no upstreams; each route then reports the missing name.
    pub upstreams: Option<S<SpannedMap<S<RawUpstream>>>>,
    pub routes: S<Vec<S<RawRoute>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListen {
    pub https: Option<S<String>>,
    pub http: Option<S<String>>,
    pub admin: Option<S<String>>,
    pub proxy_protocol: Option<bool>,
    pub trusted_proxies: Option<Vec<S<String>>>,
    pub http3: Option<S<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub certs: Option<S<String>>,
    pub min_version: Option<S<String>>,
    pub hsts: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp {
    pub redirect: Option<S<bool>>,
    // Wider than u16, so 70000 gets the range message rather than a type error.
    pub redirect_port: Option<S<u64>>,
    pub acme_webroot: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAcme {
    pub email: Option<S<String>>,
    pub directory: Option<S<String>>,
    pub challenge: Option<S<String>>,
    pub domains: Option<S<Vec<S<String>>>>,
    pub renew_before: Option<S<String>>,
    pub ca_file: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub max_header_bytes: Option<S<String>>,
    pub max_body_bytes: Option<S<String>>,
    pub header_read_timeout: Option<S<String>>,
    pub idle_timeout: Option<S<String>>,
    pub body_timeout: Option<S<String>>,
    pub max_connections: Option<S<usize>>,
    pub underscores_in_headers: Option<S<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAccessLog {
    pub format: Option<RawAccessLogFormat>,
    pub path: Option<S<String>>,
    pub enabled: Option<bool>,
}

/// Read as an enum for serde's "unknown variant `x`, expected one of ..." message.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawAccessLogFormat {
    Text,
    Json,
    Combined,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstream {
    pub balance: Option<S<RawBalance>>,
    pub hash_on: Option<S<String>>,
    pub servers: S<Vec<S<RawServer>>>,
    pub health_check: Option<S<RawHealthCheck>>,
    pub passive: Option<RawPassive>,
    pub timeouts: Option<RawTimeouts>,
    pub retries: Option<u32>,
    pub pool: Option<RawPool>,
    pub http2: Option<bool>,
    pub tls: Option<S<RawUpstreamTls>>,
    pub sticky: Option<S<RawSticky>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSticky {
    pub cookie: Option<S<String>>,
    pub max_age: Option<S<String>>,
    pub secure: Option<bool>,
    pub http_only: Option<bool>,
    pub same_site: Option<S<RawSameSite>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawSameSite {
    Lax,
    Strict,
    None,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstreamTls {
    pub ca_file: Option<S<String>>,
    pub server_name: Option<S<String>>,
}

/// Serde's own enum error ("unknown variant `x`, expected one of ...") is
/// already the message we want, so this one is not read as a string.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawBalance {
    WeightedRoundRobin,
    LeastConnections,
    PowerOfTwo,
    ConsistentHash,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub url: S<String>,
    // Wider than the u32 we keep, so 5000000000 gets the "at most 1000" message.
    pub weight: Option<S<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealthCheck {
    pub path: Option<S<String>>,
    pub interval: Option<S<String>>,
    pub timeout: Option<S<String>>,
    pub unhealthy_after: Option<S<u32>>,
    pub healthy_after: Option<S<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPassive {
    pub max_failures: Option<u32>,
    pub cooldown: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTimeouts {
    pub connect: Option<S<String>>,
    pub response_header: Option<S<String>>,
    pub read: Option<S<String>>,
    pub send: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPool {
    pub max_idle_per_server: Option<usize>,
    pub idle_timeout: Option<S<String>>,
}

/// Every per-route policy field of SPEC §9, listed once: a named `policies:`
/// block (`RawPolicy`) and a route's inline fields (`RawRoute`) both hold them.
/// A new policy is one line here (an `Option`, so "absent" is the default),
/// then its validation in `policy.rs` and its phase in `src/policy/`.
macro_rules! with_policy_fields {
    ($callback:ident) => {
        $callback! {
            allow: Option<S<Vec<S<String>>>>,
            deny: Option<S<Vec<S<String>>>>,
            request_headers: Option<S<RawHeaderRules>>,
            rewrite: Option<S<RawRewrite>>,
            response_headers: Option<S<RawHeaderRules>>,
            rate_limit: Option<super::rate_limit::RawRateLimit>,
            basic_auth: Option<S<super::auth::RawBasicAuth>>,
            forward_auth: Option<S<super::auth::RawForwardAuth>>,
            // compress: added by src/policy/compress.rs
        }
    };
}

macro_rules! policy_structs {
    ($($field:ident : $ty:ty,)*) => {
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(crate) struct RawPolicy {
            $(pub $field: $ty,)*
        }

        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(crate) struct RawRoute {
            pub host: Option<S<String>>,
            pub path: Option<S<String>>,
            // The action: exactly one of these three (checked in `policy.rs`, with a position).
            pub upstream: Option<S<String>>,
            pub redirect: Option<S<RawRedirect>>,
            pub respond: Option<S<RawRespond>>,
            pub strip_prefix: Option<bool>,
            pub policies: Option<S<Vec<S<String>>>>,
            $(pub $field: $ty,)*
        }

        impl RawRoute {
            /// The route's own policy fields, moved out as a block like the named ones.
            pub(crate) fn take_policy(&mut self) -> RawPolicy {
                RawPolicy { $($field: self.$field.take(),)* }
            }
        }
    };
}

with_policy_fields!(policy_structs);

/// `set` / `add`: header name -> value (placeholders allowed); `remove`: names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeaderRules {
    pub set: Option<SpannedMap<S<String>>>,
    pub add: Option<SpannedMap<S<String>>>,
    pub remove: Option<Vec<S<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRewrite {
    pub regex: S<String>,
    pub replace: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRedirect {
    pub to: S<String>,
    // Wider than u16, so 70000 gets the "one of" message rather than a type error.
    pub status: Option<S<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRespond {
    pub status: Option<S<u64>>,
    pub body: Option<String>,
    pub headers: Option<SpannedMap<S<String>>>,
}

/// A string-keyed mapping that keeps each key's position (a `BTreeMap` would
/// drop it) and the document order. Duplicate keys are already rejected by
/// serde-saphyr's default `DuplicateKeyPolicy::Error`.
#[derive(Debug)]
pub(crate) struct SpannedMap<V>(pub Vec<(S<String>, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for SpannedMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(std::marker::PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = SpannedMap<V>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<S<String>>()? {
                    entries.push((key, map.next_value()?));
                }
                Ok(SpannedMap(entries))
            }
        }

        deserializer.deserialize_map(MapVisitor(std::marker::PhantomData))
    }
}
