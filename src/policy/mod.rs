//! Route policy (docs/configuration.md, Traffic policy): what a route does
//! around its action, compiled once per configuration into an immutable
//! [`RoutePolicy`] that the router hands out with the route.
//!
//! A route without policy holds `None` and pays one branch per request. A
//! route with policy runs only the phases it has, in this fixed order (the
//! same for HTTP/1.1 and HTTP/2, whose pipeline is shared):
//!
//! 1. `allow` / `deny` ([`access`]) — 403
//! 2. `rate_limit` ([`rate_limit`]) — 429 with `Retry-After`
//! 3. `basic_auth` ([`basic_auth`]) / `forward_auth` ([`forward_auth`]) — 401 / the auth server's answer
//! 4. the action: `upstream` (with [`headers`] `request_headers` and [`rewrite`] applied
//!    before forwarding), or a local [`action`]: `redirect` / `respond`
//! 5. `response_headers` ([`headers`]), on every answer for the route, porter's own included
//! 6. `compress` (added by `compress.rs`)
//!
//! Phases 1-3 are [`RoutePolicy::check`]; 5-6 are [`RoutePolicy::respond`]. A
//! phase that answers says which [`Rule`] it is, for `/metrics` and the access log.

pub(crate) mod access;
pub(crate) mod action;
pub(crate) mod basic_auth;
pub(crate) mod client;
pub(crate) mod compress;
pub(crate) mod forward_auth;
pub(crate) mod headers;
pub(crate) mod rate_limit;
pub(crate) mod rewrite;
pub(crate) mod template;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::{HeaderValue, Request, Response, Uri};

use crate::body::ClientBody;
use crate::config::PolicyConfig;
use crate::http1::view::{RawRequest, RequestFields};
use crate::upstream::ResponseBody;

/// One route's compiled policy. Every phase is optional; an absent one costs nothing.
#[derive(Debug)]
pub struct RoutePolicy {
    pub access: Option<access::Access>,
    pub rate_limit: Option<rate_limit::RateLimit>,
    pub basic_auth: Option<basic_auth::BasicAuth>,
    pub forward_auth: Option<forward_auth::ForwardAuth>,
    pub request_headers: Option<headers::HeaderRules>,
    pub rewrite: Option<rewrite::Rewrite>,
    pub response_headers: Option<headers::HeaderRules>,
    pub compress: Option<compress::Compress>,
}

impl RoutePolicy {
    /// `None` for a route without policy, so it pays nothing per request.
    /// `config` has been validated: nothing here can fail.
    pub fn compile(config: &PolicyConfig, context: &Context<'_>) -> Option<RoutePolicy> {
        if config.is_empty() {
            return None;
        }
        let previous = context.previous;
        Some(RoutePolicy {
            access: access::Access::compile(&config.allow, &config.deny),
            rate_limit: config.rate_limit.as_ref().map(|limit| {
                let before = previous.and_then(|p| p.rate_limit.as_ref());
                rate_limit::RateLimit::new(limit, context.label, context.rate_limit_store, before)
            }),
            request_headers: headers::HeaderRules::compile(&config.request_headers),
            rewrite: config.rewrite.as_ref().map(rewrite::Rewrite::compile),
            response_headers: headers::HeaderRules::compile(&config.response_headers),
            basic_auth: config.basic_auth.as_ref().map(basic_auth::BasicAuth::new),
            forward_auth: config.forward_auth.as_ref().map(|f| forward_auth::ForwardAuth::new(f, context.cancel)),
            compress: config.compress.as_ref().and_then(Option::as_ref).map(compress::Compress::compile),
        })
    }

    /// Whether the request phases change the request's fields beyond taking
    /// `Authorization` out (`request_headers`, `forward_auth`): then they need a map.
    pub fn edits_fields(&self) -> bool {
        self.request_headers.is_some() || self.forward_auth.is_some()
    }

    /// The phases before the action, in order; `Some` is the answer of the rule that
    /// stopped the request. `request` may be changed (auth headers taken out); its
    /// fields are `raw` when there are some (no `forward_auth` then: [`edits_fields`](Self::edits_fields)),
    /// and `drop_authorization` is set when the raw fields' `Authorization` must not go on.
    pub(crate) async fn check(
        &self,
        request: &mut Request<ClientBody>,
        raw: Option<&RawRequest>,
        drop_authorization: &mut bool,
        vars: &Vars,
    ) -> Option<Answer> {
        if let Some(answer) = self.access.as_ref().and_then(|access| access.check(vars.client_ip)) {
            return Some(answer);
        }
        let fields = RequestFields::of(request.headers(), raw);
        if let Some(limit) = &self.rate_limit {
            if let rate_limit::Decision::Limited(wait) = limit.check(vars.client_ip, fields).await {
                return Some(Answer { rule: Rule::RateLimit, response: rate_limit::too_many_requests(wait) });
            }
        }
        if let Some(auth) = &self.basic_auth {
            if let Err(response) = auth.check(fields).await {
                return Some(Answer { rule: Rule::BasicAuth, response });
            }
            if !auth.forwards_credentials() {
                match raw {
                    Some(_) => *drop_authorization = true,
                    None => _ = request.headers_mut().remove(http::header::AUTHORIZATION),
                }
            }
        }
        if let Some(auth) = &self.forward_auth {
            if let Err(response) = auth.check(request, vars).await {
                return Some(Answer { rule: Rule::ForwardAuth, response });
            }
        }
        None
    }

    /// The phases after the action, on every answer for the route (the server's and
    /// porter's own): `response_headers`, then `compress`.
    pub fn respond(&self, response: &mut Response<ResponseBody>, vars: &Vars) {
        if let Some(rules) = &self.response_headers {
            headers::own_fields(response);
            rules.apply(response.headers_mut(), vars);
        }
        if let Some(compress) = &self.compress {
            if vars.compress != compress::Negotiated::Untouched {
                // Its rules read the server's fields: they must be in the map.
                headers::own_fields(response);
                compress.apply(vars.compress, response);
            }
        }
    }

    /// Whether [`RoutePolicy::respond`] has anything to do.
    pub fn has_response_phase(&self) -> bool {
        self.response_headers.is_some() || self.compress.is_some()
    }
}

/// What compiling a route's policy needs besides its configuration.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The route's label (`example.com/api/`): names its buckets in Redis.
    pub label: &'a str,
    /// `rate_limit_store`: the Redis connection of this configuration.
    pub rate_limit_store: Option<&'a Arc<rate_limit::RedisStore>>,
    /// The same route's policy in the configuration being replaced (state that carries over).
    pub previous: Option<&'a RoutePolicy>,
    /// The snapshot's token: ends the background work a phase starts (forward auth's DNS refresh).
    pub cancel: &'a tokio_util::sync::CancellationToken,
}

/// The request facts that templates (`{host}`, ...) and phases read, taken once
/// per request on routes that have policy or a local action. Cheap clones: no
/// allocation unless a trusted proxy named the client.
#[derive(Debug, Clone)]
pub struct Vars {
    /// The client after `trusted_proxies` and the PROXY protocol (see [`client`]).
    pub client_ip: IpAddr,
    /// The same address as a header value.
    pub client_ip_value: HeaderValue,
    /// The host name, lower-case, without a port.
    pub host: HeaderValue,
    /// The target as the client sent it (before `strip_prefix` and `rewrite`).
    pub uri: Uri,
    pub https: bool,
    pub request_id: HeaderValue,
    /// What `compress` may do with the answer, from the request (see [`compress::Compress::negotiate`]).
    pub compress: compress::Negotiated,
}

/// The rule that answered a request instead of its upstream. A closed set, so
/// the `rule` label of `/metrics` stays bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Deny,
    RateLimit,
    BasicAuth,
    ForwardAuth,
    Redirect,
    Respond,
}

impl Rule {
    pub const ALL: [Rule; 6] =
        [Rule::Deny, Rule::RateLimit, Rule::BasicAuth, Rule::ForwardAuth, Rule::Redirect, Rule::Respond];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Deny => "deny",
            Rule::RateLimit => "rate_limit",
            Rule::BasicAuth => "basic_auth",
            Rule::ForwardAuth => "forward_auth",
            Rule::Redirect => "redirect",
            Rule::Respond => "respond",
        }
    }
}

/// A phase's answer in place of the upstream's.
#[derive(Debug)]
pub struct Answer {
    pub rule: Rule,
    pub response: Response<ResponseBody>,
}

/// Requests answered by each [`Rule`] on one route; carried over a reload with the route.
#[derive(Debug, Default)]
pub struct RuleCounts([AtomicU64; 6]);

impl RuleCounts {
    #[inline]
    pub fn record(&self, rule: Rule) {
        self.0[rule as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> impl Iterator<Item = (Rule, u64)> + '_ {
        Rule::ALL.into_iter().map(|rule| (rule, self.0[rule as usize].load(Ordering::Relaxed)))
    }
}
