//! Upstreams as porter runs them: servers and their addresses, balancing,
//! sticky sessions, health checks, timeouts and connection pools.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Largest accepted server weight (HAProxy caps at 256, nginx has no cap; 1000
/// leaves room for percentages while keeping smooth-WRR arithmetic small).
pub(crate) const MAX_WEIGHT: u32 = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    pub balance: Balance,
    /// Set exactly when `balance` is `ConsistentHash`.
    pub hash_on: Option<HashOn>,
    /// Never empty; all weights 0 means the upstream is drained (503).
    pub servers: Vec<ServerConfig>,
    pub health_check: Option<HealthCheckConfig>,
    pub passive: PassiveConfig,
    pub timeouts: TimeoutsConfig,
    pub retries: u32,
    pub pool: PoolConfig,
    pub http2: bool,
    pub tls: UpstreamTls,
    /// `sticky:`: pin each client to a server with a cookie porter sets.
    pub sticky: Option<StickyConfig>,
}

/// `sticky:` on an upstream (docs: configuration reference, Sticky sessions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyConfig {
    /// The cookie's name, an RFC 6265 token.
    pub cookie: String,
    /// `Max-Age` of the cookie; None: a session cookie (gone when the browser closes).
    pub max_age: Option<std::time::Duration>,
    /// `Secure`, on responses to https requests only (a plaintext client would drop it).
    pub secure: bool,
    pub http_only: bool,
    pub same_site: SameSite,
}

impl Default for StickyConfig {
    fn default() -> StickyConfig {
        StickyConfig {
            cookie: "porter_srv".into(),
            max_age: None,
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Lax,
    Strict,
    None,
}

impl SameSite {
    /// The attribute's value as a `Set-Cookie` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
            SameSite::None => "None",
        }
    }
}

/// How `https://` servers of an upstream are verified.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpstreamTls {
    /// `tls.ca_file`: trust only these certificates, not the public roots.
    pub ca: Option<CaBundle>,
    /// `tls.server_name`: the SNI sent and the name verified, instead of the URL's host.
    pub server_name: Option<String>,
}

/// A PEM bundle read (and checked to hold at least one certificate) when the config was loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaBundle {
    /// Joined to the config file's directory.
    pub path: PathBuf,
    pub certs: std::sync::Arc<[rustls_pki_types::CertificateDer<'static>]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Balance {
    #[default]
    WeightedRoundRobin,
    LeastConnections,
    PowerOfTwo,
    ConsistentHash,
}

impl Balance {
    /// The YAML spelling, also handy for metrics labels and /status.
    pub fn as_str(self) -> &'static str {
        match self {
            Balance::WeightedRoundRobin => "weighted_round_robin",
            Balance::LeastConnections => "least_connections",
            Balance::PowerOfTwo => "power_of_two",
            Balance::ConsistentHash => "consistent_hash",
        }
    }
}

impl fmt::Display for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    ClientIp,
    /// Header name, lower-cased by `http`.
    Header(http::HeaderName),
    /// Cookie name, as written (cookie names are case-sensitive).
    Cookie(String),
}

impl fmt::Display for HashOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashOn::ClientIp => f.write_str("client_ip"),
            HashOn::Header(name) => write!(f, "header:{name}"),
            HashOn::Cookie(name) => write!(f, "cookie:{name}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub url: ServerUrl,
    /// 0..=MAX_WEIGHT; 0 drains the server (no new requests).
    pub weight: u32,
}

/// An upstream server address: `http(s)://host[:port]` and nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerUrl {
    /// As written in the config (for logs, metrics and /status).
    pub original: String,
    pub scheme: Scheme,
    /// Lower-cased; an IPv6 address without brackets; may be a DNS name.
    pub host: String,
    /// Explicit port, or 80/443 by scheme.
    pub port: u16,
}

impl ServerUrl {
    /// "host:port" with IPv6 bracketed, for connecting and for the Host of checks.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.authority())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckConfig {
    /// Starts with '/'.
    pub path: String,
    pub interval: Duration,
    /// Greater than zero and less than `interval`.
    pub timeout: Duration,
    pub unhealthy_after: u32,
    pub healthy_after: u32,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            path: "/healthz".to_string(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            unhealthy_after: 3,
            healthy_after: 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassiveConfig {
    /// Consecutive failures that take a server out; 0 disables passive checks.
    pub max_failures: u32,
    pub cooldown: Duration,
}

impl Default for PassiveConfig {
    fn default() -> Self {
        PassiveConfig { max_failures: 3, cooldown: Duration::from_secs(10) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeoutsConfig {
    pub connect: Duration,
    /// From the request sent whole to the response head.
    pub response_header: Duration,
    /// The longest wait between two reads of a response body (nginx `proxy_read_timeout`).
    pub read: Duration,
    /// The longest wait for the server to take more of a request body (nginx `proxy_send_timeout`).
    pub send: Duration,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        TimeoutsConfig {
            connect: Duration::from_secs(3),
            response_header: Duration::from_secs(60),
            read: Duration::from_secs(60),
            send: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// 0 disables keeping idle connections.
    pub max_idle_per_server: usize,
    pub idle_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig { max_idle_per_server: 128, idle_timeout: Duration::from_secs(90) }
    }
}
