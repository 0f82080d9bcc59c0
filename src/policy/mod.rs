//! Route policy (docs/configuration.md, Authentication): what a route checks
//! around its action.

pub mod basic_auth;
pub mod forward_auth;

use std::net::IpAddr;

use http::{HeaderValue, Uri};

/// The request facts that phases read, taken once per request on routes that have policy.
#[derive(Debug, Clone)]
pub struct Vars {
    /// The client after `trusted_proxies` and the PROXY protocol.
    pub client_ip: IpAddr,
    /// The same address as a header value.
    pub client_ip_value: HeaderValue,
    pub host: HeaderValue,
    /// The target as the client sent it (before `strip_prefix`).
    pub uri: Uri,
    pub https: bool,
}
