//! `forward_auth` (docs/configuration.md, Traffic policy): before a request
//! is forwarded, an auth server (Authelia, authentik, oauth2-proxy...) is asked
//! whether it may pass.
//!
//! The auth request has the original method, the client's headers (no body),
//! and `X-Forwarded-Method`, `-Proto`, `-Host`, `-Uri`, `-For`. It goes over
//! porter's own upstream client: the auth server is a one-server upstream of
//! the policy, so its connections are pooled and kept alive like any server's.
//! - 2xx: the request goes on, with `copy_headers` taken from the answer (a
//!   client's own values of those names are removed first, so a client cannot
//!   claim to be `Remote-User: admin` when the auth server said nothing).
//! - anything else: that answer (status, `Location`, `WWW-Authenticate`,
//!   `Set-Cookie`, body) goes to the client as it is: a browser follows the
//!   redirect to the login page.
//! - the auth server down, failing or slower than `timeout`: 503, never a pass.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use tokio_util::sync::CancellationToken;

use crate::body::{RequestBody, ResponseBody};
use crate::config::{ForwardAuthConfig, PassiveConfig, PoolConfig, ServerConfig, TimeoutsConfig, UpstreamConfig};
use crate::proxy::headers::{self as forwarding, ClientHeaders};
use crate::upstream::Upstream;

static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");

/// A 2xx answer's body is read (and dropped) up to this size so its connection
/// goes back to the pool; a larger one closes the connection instead.
const DRAIN_LIMIT: usize = 64 * 1024;

#[derive(Debug)]
pub struct ForwardAuth {
    upstream: Upstream,
    target: Uri,
    authority: HeaderValue,
    copy_headers: Box<[HeaderName]>,
    timeout: Duration,
}

impl ForwardAuth {
    /// Needs a tokio runtime (a host name is resolved by a task that `cancel` ends).
    pub fn new(cfg: &ForwardAuthConfig, cancel: &CancellationToken) -> ForwardAuth {
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

    /// Asks the auth server about the request whose head is `parts` (before any
    /// rewrite: the URI the client asked for). `host` is the client's Host.
    pub async fn check(
        &self,
        parts: &mut Parts,
        host: &HeaderValue,
        client: &ClientHeaders,
        client_ip: IpAddr,
    ) -> Result<(), Response<ResponseBody>> {
        let request = self.auth_request(parts, host, client);
        let forwarded = match tokio::time::timeout(
            self.timeout,
            crate::proxy::forward::forward(&self.upstream, request, client_ip),
        )
        .await
        {
            Ok(Ok(forwarded)) => forwarded,
            Ok(Err(e)) => {
                tracing::warn!(auth = %self.upstream.name, error = e.error.message().trim_end(), "forward auth failed: 503");
                return Err(unavailable());
            }
            Err(_) => {
                tracing::warn!(auth = %self.upstream.name, timeout = ?self.timeout, "forward auth timed out: 503");
                return Err(unavailable());
            }
        };
        let (mut answer, mut body) = forwarded.response.into_parts();
        if let Some(raw) = body.take_raw_fields() {
            answer.headers = raw.to_header_map();
        }
        let body = ResponseBody::upstream(body, forwarded.lease, self.timeout);
        if answer.status.is_success() {
            for name in self.copy_headers.iter() {
                parts.headers.remove(name);
                for value in answer.headers.get_all(name) {
                    parts.headers.append(name.clone(), value.clone());
                }
            }
            // Read the (small) rest so the connection goes back to the pool.
            drain(body, self.timeout).await;
            return Ok(());
        }
        forwarding::strip_hop_by_hop(&mut answer.headers);
        answer.version = Version::HTTP_11;
        Err(Response::from_parts(answer, body))
    }

    fn auth_request(&self, parts: &Parts, host: &HeaderValue, client: &ClientHeaders) -> Request<RequestBody> {
        let mut request = Request::new(RequestBody::empty());
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = self.target.clone();
        let headers = request.headers_mut();
        headers.clone_from(&parts.headers);
        forwarding::strip_hop_by_hop(headers);
        // No body goes, so none is announced.
        headers.remove(header::CONTENT_LENGTH);
        headers.insert(header::HOST, self.authority.clone());
        headers.insert(X_FORWARDED_METHOD.clone(), method_value(&parts.method));
        let uri = parts.uri.path_and_query().map_or("/", PathAndQuery::as_str);
        if let Ok(uri) = HeaderValue::from_str(uri) {
            headers.insert(X_FORWARDED_URI.clone(), uri);
        }
        let via = if parts.version == Version::HTTP_2 { &forwarding::VIA_HTTP2 } else { &forwarding::VIA_HTTP11 };
        forwarding::add_forwarding(headers, client, host, via);
        request
    }
}

fn method_value(method: &http::Method) -> HeaderValue {
    HeaderValue::from_str(method.as_str()).expect("a method is a token")
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
