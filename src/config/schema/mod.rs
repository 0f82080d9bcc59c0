//! The validated configuration the rest of porter reads (docs/configuration.md).
//!
//! Everything here has already been checked: defaults are applied, paths are
//! resolved against the config file's directory, and cross-references hold.
//! The YAML-facing structs live in `raw.rs`.
//!
//! - `upstream`: upstreams and their servers, balancing, health, timeouts and pools;
//! - `route`: routes, their actions, policy and the templates header rules render.

mod route;
mod upstream;

pub(crate) use route::{
    HeaderRulesConfig, Placeholder, PolicyConfig, RedirectConfig, RespondConfig, RewriteConfig, RouteConfig, Template,
};
pub use route::{RouteAction, TemplatePart};
pub(crate) use upstream::MAX_WEIGHT;
pub(crate) use upstream::{
    Balance, CaBundle, HashOn, HealthCheckConfig, PassiveConfig, PoolConfig, SameSite, Scheme, ServerConfig, ServerUrl,
    StickyConfig, TimeoutsConfig, UpstreamConfig, UpstreamTls,
};

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub https: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub proxy_protocol: bool,
    /// Peers whose X-Forwarded-*, X-Real-IP and X-Request-Id headers are kept.
    pub trusted_proxies: Vec<super::Cidr>,
    /// HTTP/3 over QUIC on the https address's UDP port too.
    pub http3: bool,
}

impl Default for Listen {
    /// What an absent `listen:` section means: 443 and 80 on every address, IPv6 and
    /// IPv4 (`[::]` is bound dual-stack; see `listener::dual_stack`).
    fn default() -> Self {
        Listen {
            https: Some(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 443))),
            http: Some(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 80))),
            admin: None,
            proxy_protocol: false,
            trusted_proxies: Vec::new(),
            http3: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Certificate folder, already joined to the config file's directory.
    pub certs: PathBuf,
    pub min_version: TlsVersion,
    /// Value of the Strict-Transport-Security header; a valid header value.
    pub hsts: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::V1_2 => "1.2",
            TlsVersion::V1_3 => "1.3",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Redirect plaintext requests to https. Defaults to true when an https
    /// listener exists and to false otherwise (there would be nothing to
    /// redirect to); `true` without an https listener is a config error.
    pub redirect: bool,
    /// The https port clients use, when it is not the listener's own (Docker's
    /// `-p 443:8443`, an L4 balancer). `None`: the https listener's port.
    pub redirect_port: Option<u16>,
    /// ACME HTTP-01 webroot, already joined to the config file's directory.
    pub acme_webroot: Option<PathBuf>,
}

/// `access_log:` (docs/configuration.md, Access log): one line per request, on stderr or in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    pub enabled: bool,
    pub format: AccessLogFormat,
    /// A file (already joined to the config file's directory), reopened on SIGUSR1;
    /// `None` (absent or `""`): stderr.
    pub path: Option<PathBuf>,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        AccessLogConfig { enabled: true, format: AccessLogFormat::Text, path: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// `key=value` pairs after a timestamp (logfmt quoting).
    Text,
    /// One JSON object per line, the field names of docs/configuration.md, Access log.
    Json,
    /// Apache/nginx "combined", as GoAccess, fail2ban and Filebeat read it.
    Combined,
}

impl fmt::Display for AccessLogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccessLogFormat::Text => "text",
            AccessLogFormat::Json => "json",
            AccessLogFormat::Combined => "combined",
        })
    }
}

/// `acme:` (docs/deploy.md, Automatic HTTPS): porter orders and renews its own certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeConfig {
    /// Contact for the account; empty = none (Let's Encrypt no longer mails).
    pub email: String,
    /// RFC 8555 directory URL.
    pub directory: String,
    pub challenge: AcmeChallenge,
    /// Lower-cased exact names, sorted, no duplicates, never empty: `acme.domains`,
    /// or every exact host of the routes.
    pub domains: Vec<String>,
    /// Route hosts left out of the default domain list, with why (wildcards need DNS-01).
    pub not_managed: Vec<(String, &'static str)>,
    pub renew_before: Duration,
    /// PEM bundle trusted for the ACME server instead of the public roots.
    pub ca_file: Option<PathBuf>,
    /// First retry delay after a failed attempt; doubles up to `retry_max`. Not
    /// settable from YAML (1 minute, as the CA expects); tests shorten it.
    pub retry_min: Duration,
    pub retry_max: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AcmeChallenge {
    Http01,
    TlsAlpn01,
}

impl AcmeChallenge {
    pub fn as_str(self) -> &'static str {
        match self {
            AcmeChallenge::Http01 => "http-01",
            AcmeChallenge::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_header_bytes: u64,
    pub max_body_bytes: u64,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// The longest wait for the client between two reads of its body or two
    /// writes of the response (nginx `client_body_timeout` / `send_timeout`).
    pub body_timeout: Duration,
    pub max_connections: usize,
    /// Pass request header names containing `_` on (nginx's `underscores_in_headers`);
    /// off, they are dropped: CGI-style servers read `X_Real_IP` as `X-Real-IP`.
    pub underscores_in_headers: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 64 * 1024,
            max_body_bytes: 100_000_000,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            body_timeout: Duration::from_secs(60),
            max_connections: 20_000,
            underscores_in_headers: false,
        }
    }
}
