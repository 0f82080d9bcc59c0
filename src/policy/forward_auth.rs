//! `forward_auth` (docs/configuration.md, Authentication): before a request
//! is forwarded, an auth server (Authelia, authentik, oauth2-proxy...) is asked
//! whether it may pass.
//!
//! The auth request has the original method, the client's headers (no body),
//! and `X-Forwarded-Method`, `-Proto`, `-Host`, `-Uri`, `-For` set by porter
//! (a client's own values are replaced: `-For` is the client after
//! `trusted_proxies` and the PROXY protocol). It goes over porter's upstream
//! client: the auth server is a one-server upstream of the policy, whose
//! connections are pooled and kept alive like any server's.
//! - 2xx: the request goes on, with `copy_headers` taken from the answer (a
//!   client's own values of those names are removed first, so a client cannot
//!   claim to be `Remote-User: admin` when the auth server said nothing).
//! - anything else: that answer (status, `Location`, `WWW-Authenticate`,
//!   `Set-Cookie`, body) goes to the client as it is: a browser follows the
//!   redirect to the login page.
//! - the auth server down, failing or slower than `timeout`: 503, never a pass.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use tokio_util::sync::CancellationToken;

use super::Vars;
use crate::body::RequestBody;
use crate::config::{ForwardAuthConfig, PassiveConfig, PoolConfig, ServerConfig, TimeoutsConfig, UpstreamConfig};
use crate::http1::fields::{kind, Kind};
use crate::upstream::connect::{connect_http1, UpstreamSender};
use crate::upstream::server::{InFlight, Server};
use crate::upstream::{Lease, ResponseBody, ServerBody, Upstream};

static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// A 2xx answer's body is read (and dropped) up to this size so its connection
/// goes back to the pool; a larger one closes the connection instead.
const DRAIN_LIMIT: usize = 64 * 1024;

#[derive(Debug)]
pub(crate) struct ForwardAuth {
    /// Owns the server and its DNS task (a host name is re-resolved like any server's).
    upstream: Upstream,
    target: Uri,
    authority: HeaderValue,
    copy_headers: Box<[HeaderName]>,
    timeout: Duration,
}

impl ForwardAuth {
    /// Needs a tokio runtime (a host name is resolved by a task that `cancel` ends).
    pub(crate) fn new(cfg: &ForwardAuthConfig, cancel: &CancellationToken) -> ForwardAuth {
        let upstream_cfg = UpstreamConfig {
            balance: Default::default(),
            hash_on: None,
            servers: vec![ServerConfig { url: cfg.server.clone(), weight: 1 }],
            health_check: None,
            // Fail closed per request, and pass again as soon as the server answers:
            // no ejection window of 503s after it comes back.
            passive: PassiveConfig { max_failures: 0, ..Default::default() },
            timeouts: TimeoutsConfig {
                connect: cfg.timeout,
                response_header: cfg.timeout,
                read: cfg.timeout,
                send: cfg.timeout,
            },
            retries: 0,
            pool: PoolConfig::default(),
            http2: false,
            tls: Default::default(),
            sticky: None,
        };
        let name = format!("forward_auth {}", cfg.server);
        let target = Uri::from_maybe_shared(Bytes::from(cfg.path.clone())).expect("the path was checked");
        let authority = HeaderValue::try_from(authority_of(&cfg.server)).expect("a host and port");
        ForwardAuth {
            upstream: Upstream::new(&name, &upstream_cfg, None, cancel),
            target,
            authority,
            copy_headers: cfg.copy_headers.clone().into(),
            timeout: cfg.timeout,
        }
    }

    /// Asks the auth server about `request` (its head as the client sent it).
    /// `Ok`: it goes on, with `copy_headers` set from the answer. `Err`: the answer.
    pub(crate) async fn check<B>(&self, request: &mut Request<B>, vars: &Vars) -> Result<(), Response<ResponseBody>> {
        let auth_request = self.auth_request(request, vars);
        let answer = match tokio::time::timeout(self.timeout, self.send(auth_request)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => {
                tracing::warn!(auth = %self.upstream.name, error, "forward auth failed: 503");
                return Err(unavailable());
            }
            Err(_) => {
                tracing::warn!(auth = %self.upstream.name, timeout = ?self.timeout, "forward auth timed out: 503");
                return Err(unavailable());
            }
        };
        let (mut answer, body) = answer.into_parts();
        if answer.status.is_success() {
            let headers = request.headers_mut();
            for name in self.copy_headers.iter() {
                headers.remove(name);
                for value in answer.headers.get_all(name) {
                    headers.append(name.clone(), value.clone());
                }
            }
            // Read the (small) rest so the connection goes back to the pool.
            drain(body, self.timeout).await;
            return Ok(());
        }
        strip_hop_by_hop(&mut answer.headers);
        answer.version = Version::HTTP_11;
        Err(Response::from_parts(answer, body))
    }

    fn auth_request<B>(&self, request: &Request<B>, vars: &Vars) -> Request<RequestBody> {
        let mut auth = Request::new(RequestBody::empty());
        *auth.method_mut() = request.method().clone();
        *auth.uri_mut() = self.target.clone();
        let headers = auth.headers_mut();
        headers.clone_from(request.headers());
        strip_hop_by_hop(headers);
        // No body goes, so none is announced.
        headers.remove(header::CONTENT_LENGTH);
        headers.insert(header::HOST, self.authority.clone());
        let method = HeaderValue::from_str(request.method().as_str()).expect("a method is a token");
        headers.insert(X_FORWARDED_METHOD.clone(), method);
        let proto = HeaderValue::from_static(if vars.https { "https" } else { "http" });
        headers.insert(X_FORWARDED_PROTO.clone(), proto);
        // The Host as the client sent it, port included (a login page redirects back to it).
        let host = match request.uri().authority() {
            Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
            None => request.headers().get(header::HOST).cloned(),
        };
        headers.insert(X_FORWARDED_HOST.clone(), host.unwrap_or_else(|| vars.host.clone()));
        let uri = vars.uri.path_and_query().map_or("/", PathAndQuery::as_str);
        match HeaderValue::from_str(uri) {
            Ok(uri) => headers.insert(X_FORWARDED_URI.clone(), uri),
            Err(_) => headers.remove(&X_FORWARDED_URI),
        };
        headers.insert(X_FORWARDED_FOR.clone(), vars.client_ip_value.clone());
        headers.insert(X_REAL_IP.clone(), vars.client_ip_value.clone());
        auth
    }

    /// One exchange on a pooled connection to the auth server (a fresh one when none
    /// is idle, or when an idle one turns out closed before the request went out).
    async fn send(&self, request: Request<RequestBody>) -> Result<Response<ResponseBody>, &'static str> {
        let server = &self.upstream.servers[0];
        let in_flight = InFlight::new(server.clone());
        let mut request = request;
        let mut fresh_only = false;
        loop {
            let (mut sender, reused) = match checkout(server, fresh_only).await {
                Some(sender) => (sender, true),
                None => (connect_http1(server, self.timeout).await.map_err(|_| "cannot connect")?, false),
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let lease = Lease::http1(sender, in_flight, None);
                    return Ok(
                        response.map(|body| ResponseBody::upstream(ServerBody::Hyper(body), lease, self.timeout))
                    );
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => {
                        request = unsent;
                        fresh_only = true;
                    }
                    _ => return Err("the connection failed"),
                },
            }
        }
    }
}

async fn checkout(server: &Server, fresh_only: bool) -> Option<UpstreamSender> {
    if fresh_only {
        return None;
    }
    while let Some(mut sender) = server.pool.checkout_hyper() {
        // DNS no longer lists the address, or the connection closed while idle.
        if server.is_current(sender.addr) && sender.ready().await.is_ok() {
            return Some(sender);
        }
    }
    None
}

/// Removes `Connection`, the names it lists, and the fixed hop-by-hop fields.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in &listed {
        headers.remove(name);
    }
    let fixed: Vec<HeaderName> =
        headers.keys().filter(|name| kind(name.as_str().as_bytes()) == Kind::HopByHop).cloned().collect();
    for name in &fixed {
        headers.remove(name);
    }
}

fn authority_of(server: &crate::config::ServerUrl) -> String {
    let default = server.port == server.scheme.default_port();
    match (server.host.contains(':'), default) {
        (true, true) => format!("[{}]", server.host),
        (false, true) => server.host.clone(),
        _ => server.authority(),
    }
}

async fn drain(mut body: ResponseBody, timeout: Duration) {
    let mut read = 0;
    let _ = tokio::time::timeout(timeout, async {
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, Bytes::len);
            if read > DRAIN_LIMIT {
                break;
            }
        }
    })
    .await;
}

fn unavailable() -> Response<ResponseBody> {
    let body = "503 Service Unavailable: the authentication server did not answer\n";
    let mut response = Response::new(ResponseBody::full(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}
