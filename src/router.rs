//! Host and path to route: the first decision for every request.
//!
//! Built once per configuration into plain tables, so matching is a hash
//! lookup plus a short scan of prefixes, with no allocation. Precedence
//! (docs/configuration.md, Routing): exact host, then the longest matching wildcard, then host-less
//! routes; within a host the longest segment-boundary prefix wins. A host
//! whose prefixes do not match the path falls through to the next tier, so a
//! host-less `/` route works as a catch-all behind host-specific ones.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{RouteAction, RouteConfig};
use crate::policy::action::{Redirect, Respond};
use crate::policy::rate_limit::RedisStore;
use crate::policy::{Context, RoutePolicy, RuleCounts};
use crate::stats::StatusCounts;
use crate::upstream::Upstream;

/// One compiled route: where its requests go, how the path is rewritten, and its policy.
#[derive(Debug)]
pub(crate) struct Route {
    /// The route as the user wrote it, for logs and metrics ("example.com/api/").
    pub label: Arc<str>,
    pub prefix: Box<str>,
    pub strip_prefix: bool,
    pub action: Action,
    /// `None` when the route has no policy: a plain route pays one branch for it.
    pub policy: Option<Arc<RoutePolicy>>,
    /// Responses by status class; carried over a reload while the route and its upstream stay.
    pub responses: Arc<StatusCounts>,
    /// Requests answered by a policy rule or a local action, carried over a reload like `responses`.
    pub answers: Arc<RuleCounts>,
}

/// What a route does with a request its policy let through (docs/configuration.md, Traffic policy).
#[derive(Debug)]
pub(crate) enum Action {
    Upstream(Arc<Upstream>),
    Redirect(Redirect),
    Respond(Respond),
}

impl Route {
    /// Counts one answered request: its status on the route, its latency on the upstream.
    #[inline]
    pub(crate) fn record(&self, status: u16, elapsed: std::time::Duration) {
        self.responses.record(status);
        if let Action::Upstream(upstream) = &self.action {
            upstream.stats.latency.record(elapsed);
        }
    }

    /// The upstream the route forwards to; `None` for `redirect` and `respond` routes.
    #[inline]
    pub(crate) fn upstream(&self) -> Option<&Arc<Upstream>> {
        match &self.action {
            Action::Upstream(upstream) => Some(upstream),
            Action::Redirect(_) | Action::Respond(_) => None,
        }
    }

    /// The upstream's name for labels, "none" for a local action.
    pub(crate) fn upstream_name(&self) -> &str {
        self.upstream().map_or("none", |u| &u.name)
    }
}

/// Path prefixes of one host tier, longest first.
#[derive(Debug, Default)]
struct PathTable {
    routes: Vec<Arc<Route>>,
}

impl PathTable {
    fn insert(&mut self, route: Arc<Route>) {
        self.routes.push(route);
        self.routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
    }

    fn find(&self, path: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| prefix_matches(&r.prefix, path))
    }
}

/// `/api` matches `/api`, `/api/` and `/api/x`, not `/apix`; `/api/` matches `/api/x` and `/api`.
pub(crate) fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    let prefix_trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    match path.strip_prefix(prefix_trimmed) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'),
        None => false,
    }
}

#[derive(Debug, Default)]
pub(crate) struct Router {
    exact: HashMap<Box<str>, PathTable>,
    /// Wildcard suffixes (".example.com" for "*.example.com"), longest first.
    wildcard: Vec<(Box<str>, PathTable)>,
    any_host: PathTable,
}

impl Router {
    /// `previous` is the router being replaced on reload, whose counters carry over.
    pub(crate) fn new(
        routes: &[RouteConfig],
        upstream_by_name: &HashMap<String, Arc<Upstream>>,
        previous: Option<&Router>,
        rate_limit_store: Option<&Arc<RedisStore>>,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Router {
        let mut router = Router::default();
        for cfg in routes {
            let action = match &cfg.action {
                RouteAction::Upstream(name) => Action::Upstream(
                    upstream_by_name
                        .get(name)
                        .expect("config validation guarantees every route names an upstream")
                        .clone(),
                ),
                RouteAction::Redirect(redirect) => Action::Redirect(Redirect::compile(redirect)),
                RouteAction::Respond(respond) => Action::Respond(Respond::compile(respond)),
            };
            let label = format!("{}{}", cfg.host.as_deref().unwrap_or("*"), cfg.path);
            let upstream_name = cfg.upstream().unwrap_or("none");
            let before =
                previous.and_then(|p| p.routes().find(|r| *r.label == *label && r.upstream_name() == upstream_name));
            let context = Context {
                label: &label,
                rate_limit_store,
                cancel,
                // By label alone: a route's policy state does not depend on its upstream.
                previous: previous
                    .and_then(|p| p.routes().find(|r| *r.label == *label))
                    .and_then(|r| r.policy.as_deref()),
            };
            let route = Arc::new(Route {
                label: label.as_str().into(),
                prefix: cfg.path.clone().into(),
                strip_prefix: cfg.strip_prefix,
                action,
                policy: RoutePolicy::compile(&cfg.policy, &context).map(Arc::new),
                responses: before.map(|r| r.responses.clone()).unwrap_or_default(),
                answers: before.map(|r| r.answers.clone()).unwrap_or_default(),
            });
            match cfg.host.as_deref() {
                None => router.any_host.insert(route),
                Some(host) => match host.strip_prefix('*') {
                    Some(suffix) => {
                        let table = match router.wildcard.iter_mut().find(|(s, _)| **s == *suffix) {
                            Some((_, table)) => table,
                            None => {
                                router.wildcard.push((suffix.into(), PathTable::default()));
                                &mut router.wildcard.last_mut().unwrap().1
                            }
                        };
                        table.insert(route);
                    }
                    None => router.exact.entry(host.into()).or_default().insert(route),
                },
            }
        }
        router.wildcard.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        router
    }

    /// `host` must already be lower-case without a port (see [`normalize_host`]).
    pub(crate) fn find(&self, host: &str, path: &str) -> Option<&Arc<Route>> {
        if let Some(route) = self.exact.get(host).and_then(|t| t.find(path)) {
            return Some(route);
        }
        for (suffix, table) in &self.wildcard {
            // "*.example.com" matches any depth of subdomain (as nginx does), never the bare domain.
            if host.len() > suffix.len() && host.ends_with(&**suffix) {
                if let Some(route) = table.find(path) {
                    return Some(route);
                }
            }
        }
        self.any_host.find(path)
    }

    pub(crate) fn routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.exact
            .values()
            .chain(self.wildcard.iter().map(|(_, t)| t))
            .chain(std::iter::once(&self.any_host))
            .flat_map(|t| t.routes.iter())
    }
}

/// Lower-cases `raw` and drops a port into `buf`, returning the host; `None` if it is not a
/// plausible host: empty (or an empty label: `.`, `a..b`), too long, with bytes a host name
/// cannot hold, an IPv6 literal that does not parse, or a port part that is not `:` and digits.
/// The result normalises to itself. Uses a caller buffer so the hot path does not allocate.
pub(crate) fn normalize_host<'a>(raw: &[u8], buf: &'a mut [u8; 256]) -> Option<&'a str> {
    // Split "host[:port]". Only an IPv6 literal may hold colons, inside its brackets;
    // elsewhere the first colon starts the port (so "a:b:80" is refused, not "a:b").
    let (host, port) = if raw.first() == Some(&b'[') {
        let end = raw.iter().position(|&b| b == b']')?;
        raw.split_at(end + 1)
    } else {
        raw.split_at(raw.iter().position(|&b| b == b':').unwrap_or(raw.len()))
    };
    match port {
        [] => {}
        [b':', digits @ ..] if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) => {}
        _ => return None,
    }
    if host.is_empty() || host.len() > buf.len() {
        return None;
    }
    let name = &mut buf[..host.len()];
    for (dst, &src) in name.iter_mut().zip(host) {
        *dst = src.to_ascii_lowercase();
    }
    let name = std::str::from_utf8(name).ok()?;
    let plausible = match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Some(literal) => literal.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
                && !name.starts_with('.')
                && !name.contains("..")
        }
    };
    plausible.then_some(name)
}

/// The path handed to the upstream when the route strips its prefix: `/api/users` -> `/users`.
pub(crate) fn strip(prefix: &str, path: &str) -> String {
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    let rest = path.strip_prefix(trimmed).unwrap_or(path);
    if rest.is_empty() || rest.starts_with('?') {
        format!("/{rest}")
    } else {
        rest.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_boundaries() {
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/x"));
        assert!(prefix_matches("/api/", "/api/x"));
        assert!(prefix_matches("/api/", "/api"));
        assert!(!prefix_matches("/api", "/apix"));
        assert!(!prefix_matches("/api/", "/apix"));
        assert!(prefix_matches("/", "/anything"));
    }

    #[test]
    fn host_normalization() {
        let mut buf = [0u8; 256];
        assert_eq!(normalize_host(b"Example.COM:8443", &mut buf), Some("example.com"));
        assert_eq!(normalize_host(b"[::1]:443", &mut buf), Some("[::1]"));
        assert_eq!(normalize_host(b"a b", &mut buf), None);
        assert_eq!(normalize_host(b"", &mut buf), None);
        assert_eq!(normalize_host(b"host:x", &mut buf), None);
        assert_eq!(normalize_host(b"[::FFFF:192.0.2.1]", &mut buf), Some("[::ffff:192.0.2.1]"));
        assert_eq!(normalize_host(b"example.com.", &mut buf), Some("example.com."));
    }

    /// What the `route` fuzz target found: "::" normalised to ":" (the last colon taken as
    /// an empty port, the rest kept because ':' was allowed anywhere), and ":" to None.
    /// Each input here is refused now; every accepted host normalises to itself.
    #[test]
    fn host_normalization_refuses_empty_parts() {
        let mut buf = [0u8; 256];
        for raw in [
            &b"::"[..], // the fuzzer's input (fuzz/regressions/route/)
            b":",
            b":80",
            b"example.com:", // an empty port part
            b"a:b:80",       // a colon outside brackets
            b"a::80",
            b"[]",
            b"[]:80",
            b"[::1]:",
            b"[::1]x",
            b"[::1]:80:80",
            b"[not-v6]",
            b"[::1",
            b"a[::1]",
            b"a]",
            b".",
            b".example.com",
            b"a..b",
        ] {
            assert_eq!(normalize_host(raw, &mut buf), None, "{:?}", String::from_utf8_lossy(raw));
        }
        let mut again = [0u8; 256];
        for raw in [&b"Example.COM:8443"[..], b"[::1]:443", b"[::ABCD]", b"a_b-c.d", b"x.", b"1.2.3.4:0"] {
            let once = normalize_host(raw, &mut buf).expect("plausible").to_owned();
            assert_eq!(normalize_host(once.as_bytes(), &mut again), Some(&*once));
        }
    }

    #[test]
    fn strip_prefix_paths() {
        assert_eq!(strip("/api/", "/api/users"), "/users");
        assert_eq!(strip("/api", "/api/users?x=1"), "/users?x=1");
        assert_eq!(strip("/api", "/api"), "/");
        assert_eq!(strip("/api", "/api?q"), "/?q");
    }
}
