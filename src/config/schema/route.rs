//! Routes as porter runs them: host and path, the action, the policy around
//! it, and the templates its header rules and redirects render.

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
    pub allow: Vec<crate::config::Cidr>,
    pub deny: Vec<crate::config::Cidr>,
    pub request_headers: HeaderRulesConfig,
    pub rewrite: Option<RewriteConfig>,
    pub response_headers: HeaderRulesConfig,
    /// `rate_limit:`: a token bucket per key; 429 above it (docs/configuration.md, Rate limits).
    pub rate_limit: Option<crate::config::RateLimitConfig>,
    pub basic_auth: Option<crate::config::auth::BasicAuthConfig>,
    pub forward_auth: Option<crate::config::auth::ForwardAuthConfig>,
    /// `compress:` as written: None when absent, `Some(None)` for `compress: false`
    /// (which turns off a compress a named block set).
    pub compress: Option<Option<crate::config::CompressConfig>>,
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
