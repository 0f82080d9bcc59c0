//! The validated configuration the rest of porter reads (docs/configuration.md).
//!
//! Everything here has already been checked: defaults are applied, paths are
//! resolved against the config file's directory, and cross-references hold.
//! The YAML-facing structs live in `raw.rs`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Largest accepted server weight (HAProxy caps at 256, nginx has no cap; 1000
/// leaves room for percentages while keeping smooth-WRR arithmetic small).
pub(crate) const MAX_WEIGHT: u32 = 1000;

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// Lower-cased "example.com" or "*.example.com"; None matches any host.
    pub host: Option<String>,
    /// Path prefix, starts with '/'.
    pub path: String,
    /// What the route does with a request that passed its policy.
    pub action: RouteAction,
    pub strip_prefix: bool,
    /// The named `policies:` blocks in the order listed, then the route's own fields, merged.
    pub policy: PolicyConfig,
}

impl RouteConfig {
    /// The upstream the route forwards to; `None` for `redirect` and `respond` routes.
    pub fn upstream(&self) -> Option<&str> {
        match &self.action {
            RouteAction::Upstream(name) => Some(name),
            _ => None,
        }
    }
}

/// A route's action (SPEC §9): exactly one of `upstream`, `redirect`, `respond`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAction {
    /// Name of an upstream that exists in `Config::upstreams`.
    Upstream(String),
    Redirect(RedirectConfig),
    Respond(RespondConfig),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectConfig {
    pub to: Template,
    /// 301, 302, 307 or 308.
    pub status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RespondConfig {
    pub status: u16,
    pub body: String,
    /// Valid header names and values, in file order.
    pub headers: Vec<(String, String)>,
}

/// Route policy around the action (SPEC §9). Every field starts absent/empty, so
/// `PolicyConfig::default()` is "no policy".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyConfig {
    pub allow: Vec<super::Cidr>,
    pub deny: Vec<super::Cidr>,
    pub request_headers: HeaderRulesConfig,
    pub rewrite: Option<RewriteConfig>,
    pub response_headers: HeaderRulesConfig,
    /// `rate_limit:`: a token bucket per key; 429 above it (docs/configuration.md, Rate limits).
    pub rate_limit: Option<super::RateLimitConfig>,
    pub basic_auth: Option<super::auth::BasicAuthConfig>,
    pub forward_auth: Option<super::auth::ForwardAuthConfig>,
    /// `compress:` as written: None when absent, `Some(None)` for `compress: false`
    /// (which turns off a compress a named block set).
    pub compress: Option<Option<super::CompressConfig>>,
}

impl PolicyConfig {
    pub fn is_empty(&self) -> bool {
        *self == PolicyConfig::default()
    }

    /// Applies `later` over `self` (SPEC §9): lists are joined, a later `set` of the
    /// same header wins, a later single setting (`rewrite`, ...) replaces an earlier one.
    pub fn merge(&mut self, later: PolicyConfig) {
        self.allow.extend(later.allow);
        self.deny.extend(later.deny);
        self.request_headers.merge(later.request_headers);
        if later.rewrite.is_some() {
            self.rewrite = later.rewrite;
        }
        self.response_headers.merge(later.response_headers);
        if later.compress.is_some() {
            self.compress = later.compress;
        }
        if later.rate_limit.is_some() {
            self.rate_limit = later.rate_limit;
        }
        if later.basic_auth.is_some() {
            self.basic_auth = later.basic_auth;
        }
        if later.forward_auth.is_some() {
            self.forward_auth = later.forward_auth;
        }
    }
}

/// `request_headers` / `response_headers`: names are lower-case and valid, never
/// hop-by-hop in `set`/`add`; values are templates that render to valid header values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderRulesConfig {
    pub set: Vec<(String, Template)>,
    pub add: Vec<(String, Template)>,
    pub remove: Vec<String>,
}

impl HeaderRulesConfig {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    fn merge(&mut self, later: HeaderRulesConfig) {
        for (name, value) in later.set {
            self.set.retain(|(n, _)| *n != name);
            self.set.push((name, value));
        }
        self.add.extend(later.add);
        for name in later.remove {
            if !self.remove.contains(&name) {
                self.remove.push(name);
            }
        }
    }
}

/// `rewrite: {regex, replace}`: `regex` compiles (checked at load).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteConfig {
    pub regex: String,
    pub replace: String,
}

/// A value with placeholders (`https://example.com{uri}`), split at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub parts: Vec<TemplatePart>,
}

impl Template {
    /// The text as written, when it holds no placeholder.
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [TemplatePart::Literal(text)] => Some(text),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Literal(String),
    Var(Placeholder),
}

/// The request facts a template may name (SPEC §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    ClientIp,
    Host,
    Path,
    Query,
    /// path?query
    Uri,
    Scheme,
    RequestId,
}

impl Placeholder {
    pub const ALL: [(&'static str, Placeholder); 7] = [
        ("client_ip", Placeholder::ClientIp),
        ("host", Placeholder::Host),
        ("path", Placeholder::Path),
        ("query", Placeholder::Query),
        ("uri", Placeholder::Uri),
        ("scheme", Placeholder::Scheme),
        ("request_id", Placeholder::RequestId),
    ];
}
