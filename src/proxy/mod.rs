//! The request pipeline, run once per request, top to bottom:
//! host -> (421 check) -> route -> route policy checks -> limits -> the
//! route's action (a local answer, or: rewrite head -> forward -> rewrite
//! response) -> route policy on the answer -> stream back, with the
//! access-log record riding on the response body. HTTP/1.1 and HTTP/2 share it.

pub(crate) mod error;
pub(crate) mod forward;
mod forward_h2;
mod forward_own;
mod head;
pub(crate) mod headers;
mod incoming;
pub(crate) mod request_id;
pub(crate) mod strict;
pub(crate) mod upgrade;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, StatusCode, Version};

use crate::access_log::AccessRecord;
use crate::body::{ClientBody, ClientRequest, RequestBody};
use crate::http1::view::{Name, RawRequest, RequestFields};
use crate::net::boxed::{boxed, pin_in_place};
use crate::policy::{Answer, Vars};
use crate::router::{self, normalize_host, Action};
use crate::runtime::Runtime;
use crate::tls::LoadedCert;
use crate::upstream::ResponseBody;
use error::ProxyError;
use headers::ClientHeaders;
use incoming::{content_length, request_host, request_vars, upstream_uri, Incoming};

/// What the pipeline knows about the connection a request came on.
#[derive(Debug)]
pub(crate) struct ConnContext {
    pub client: SocketAddr,
    pub client_headers: ClientHeaders,
    /// For TLS connections where the client's SNI selected a certificate by name:
    /// that certificate, whose names decide the 421 rule.
    pub sni_cert: Option<Arc<LoadedCert>>,
    /// The negotiated TLS version ("TLSv1.3"), for the access log; `None` on plaintext.
    pub tls_version: Option<&'static str>,
}

/// The pipeline's answer, boxed where it is made: it rises through the pipeline's
/// layers and the connection's, and each would otherwise copy its 392 bytes and keep
/// a slot of that size in its future and its stack frame.
pub(crate) type Reply = Box<Response<ResponseBody>>;

/// Answers a request. `raw`: its fields as the client sent them, when porter's
/// HTTP/1.1 server read it (`request`'s map is then empty); HTTP/2 and HTTP/3
/// requests come with a map.
pub(crate) async fn handle(
    request: ClientRequest,
    raw: Option<RawRequest>,
    conn: &ConnContext,
    runtime: Arc<Runtime>,
) -> Reply {
    let verdict = strict::check(&request, RequestFields::of(request.headers(), raw.as_ref()));
    handle_checked(request, raw, conn, runtime, verdict).await
}

/// [`handle`] for a request that already went through [`strict::check`].
pub(crate) async fn handle_checked(
    request: ClientRequest,
    raw: Option<RawRequest>,
    conn: &ConnContext,
    runtime: Arc<Runtime>,
    verdict: Result<(), ProxyError>,
) -> Reply {
    let start = Instant::now();
    let over_quic = request.version() == Version::HTTP_3;
    runtime.by_protocol.record(request.version());
    let mut incoming = Incoming { request, raw, made_id: None, drop_authorization: false };
    let fields = incoming.fields();
    let host = request_host(&incoming.request, fields);
    // A trusted client's id, else a new one, which replaces any the client sent.
    let kept_id = request_id::kept(fields, conn.client_headers.trusted);
    // The record costs an allocation and a few clones: only when the access log is on.
    let mut record = runtime.access_log.as_ref().map(|log| {
        let mut record = AccessRecord::new(log, start, conn.client, &incoming.request, fields, host.clone());
        record.tls_version = conn.tls_version;
        record
    });
    let request_id = match kept_id {
        Some(id) => id,
        None => incoming.set_id(request_id::generate()),
    };
    if let Some(record) = &mut record {
        record.request_id = Some(request_id);
    }
    let mut pending = Abandoned { route: None, record: record.take(), unrouted: &runtime.unrouted, start, armed: true };
    // Boxed: only routes with policy or a local action fill it, and a plain route's
    // future stays as small as it was.
    let mut vars: Option<Box<Vars>> = None;
    let result = match verdict {
        Ok(()) => proxy(&mut incoming, host, conn, &runtime, &mut pending.route, &mut pending.record, &mut vars).await,
        Err(e) => Err(e),
    };
    let (route, record) = pending.answered();
    let mut response = match result {
        Ok(response) => response,
        Err(error) => boxed(|| error.to_response()),
    };
    // The route's response phases, on its every answer (porter's own 403, 502, ... too).
    if let (Some(policy), Some(vars)) = (route.and_then(|r| r.policy.as_deref()), vars.as_deref()) {
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            policy.respond(&mut response, vars);
        }
    }
    // Metrics: counted once the head is ready, on slots the route already holds.
    match route {
        Some(route) => route.record(response.status().as_u16(), start.elapsed()),
        None => runtime.unrouted.record(response.status().as_u16()),
    }
    if conn.client_headers.https {
        if let Some(hsts) = &runtime.hsts {
            response.headers_mut().insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
        // HTTP/3 offered to clients on TCP (docs/configuration.md, `listen.http3`).
        if let (Some(alt_svc), false) = (&runtime.alt_svc, over_quic) {
            response.headers_mut().insert(header::ALT_SVC, alt_svc.clone());
        }
    }
    if let Some(mut record) = record {
        record.status = response.status().as_u16();
        response.body_mut().set_record(record);
    }
    response
}

/// A request on its way: if its future is dropped before an answer (an HTTP/2
/// client reset the stream or went away), it is logged and counted as nginx's
/// 499 (client closed request), apart from 5xx and never against a server.
struct Abandoned<'r> {
    route: Option<&'r router::Route>,
    record: Option<Box<AccessRecord>>,
    unrouted: &'r crate::stats::StatusCounts,
    start: Instant,
    armed: bool,
}

impl<'r> Abandoned<'r> {
    /// The request was answered: its answer is counted and logged as usual.
    fn answered(mut self) -> (Option<&'r router::Route>, Option<Box<AccessRecord>>) {
        self.armed = false;
        (self.route.take(), self.record.take())
    }
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let status = ProxyError::ClientClosed.status().as_u16();
        match self.route {
            Some(route) => route.record(status, self.start.elapsed()),
            None => self.unrouted.record(status),
        }
        if let Some(mut record) = self.record.take() {
            record.status = status;
            record.write(0);
        }
    }
}

async fn proxy<'r>(
    incoming: &mut Incoming,
    host: Option<HeaderValue>,
    conn: &ConnContext,
    runtime: &'r Runtime,
    matched: &mut Option<&'r router::Route>,
    record: &mut Option<Box<AccessRecord>>,
    vars_out: &mut Option<Box<Vars>>,
) -> Result<Reply, ProxyError> {
    let host = host.ok_or(ProxyError::MissingHost)?;
    let mut host_buf = [0u8; 256];
    let host_name = normalize_host(host.as_bytes(), &mut host_buf).ok_or(ProxyError::InvalidHost)?;

    if let Some(cert) = &conn.sni_cert {
        // 421 only when another certificate could serve this host: then a client
        // retrying on a new connection with the right SNI will succeed.
        if !cert.covers(host_name) && runtime.certs.store().by_sni(host_name).is_some() {
            return Err(ProxyError::Misdirected);
        }
    }

    let route = runtime.router.find(host_name, incoming.request.uri().path()).ok_or(ProxyError::NoRoute)?;
    *matched = Some(route.as_ref());
    if let Some(record) = record {
        record.route = Some(route.label.clone());
    }

    // Route policy (docs/configuration.md, Traffic policy): a plain route skips all of it.
    let upstream = match (&route.action, &route.policy) {
        (Action::Upstream(upstream), None) => upstream,
        (action, policy) => {
            // Rules that edit the fields (`request_headers`, `forward_auth`) work on a map;
            // the others read the fields as they are.
            if policy.as_ref().is_some_and(|p| p.edits_fields()) {
                incoming.mapped();
            }
            let compress = policy.as_ref().and_then(|p| p.compress.as_ref());
            let vars = request_vars(incoming, &host, host_name, conn, runtime, compress);
            let vars = &**vars_out.insert(Box::new(vars));
            if let Some(policy) = policy {
                let Incoming { request, raw, drop_authorization, .. } = &mut *incoming;
                // Boxed: rate limits, auth and forward auth make a future of several KiB,
                // which inline would be part of (and copied with) every request's future,
                // plain routes' too.
                if let Some(answer) =
                    pin_in_place(|| policy.check(request, raw.as_ref(), drop_authorization, vars)).await
                {
                    return Ok(answered(route, answer, record));
                }
            }
            match action {
                Action::Upstream(upstream) => upstream,
                Action::Redirect(redirect) => return Ok(answered(route, redirect.answer(vars), record)),
                Action::Respond(respond) => return Ok(answered(route, respond.answer(), record)),
            }
        }
    };

    let limit = runtime.limits.max_body_bytes;
    let fields = incoming.fields();
    if let Some(length) = content_length(fields) {
        if length > limit {
            return Err(ProxyError::BodyTooLarge);
        }
    }

    // Bodies of requests read by porter's own HTTP/1.1 server (HTTP/2's are `Hyper`).
    let http1_client = matches!(incoming.request.body(), ClientBody::Empty | ClientBody::Http1(_));

    // The protocol asked for; the HTTP/1.1 server takes the tunnel from the 101 (`PendingTunnel`).
    let upgrade = (incoming.request.version() == Version::HTTP_11 && upgrade::is_upgrade_request(fields))
        .then(|| fields.value(&header::UPGRADE));

    // Taken out of `incoming`, which stays in the caller's future: moved in as an
    // argument it would be copied, and held twice.
    let request = std::mem::replace(&mut *incoming.request, Request::new(ClientBody::Empty));
    let (raw, made_id, drop_authorization) =
        (incoming.raw.take(), incoming.made_id.take(), incoming.drop_authorization);
    let (mut parts, body) = request.into_parts();
    let mut body = RequestBody::new(body, limit, runtime.limits.body_timeout);
    if let Some(record) = record.as_mut().filter(|_| !http_body::Body::is_end_stream(&body)) {
        body = body.counting(record.count_request_body());
    }
    // The client's bytes go to the server as they came, rewritten (`head`), when the
    // server is on porter's own HTTP/1.1 client; hyper's clients (HTTP/2, upgrades,
    // large bodies) take a map.
    // A `consistent_hash` on a field porter rewrites hashes the value sent on, in a map.
    let hashes_rewritten = upstream.hash_header().is_some_and(|name| Name::of(name.as_str().as_bytes()).is_rewritten());
    let raw = match raw {
        Some(raw)
            if !upstream.http2
                && upgrade.is_none()
                && !hashes_rewritten
                && crate::upstream::http1::takes_body(&body) =>
        {
            Some(raw)
        }
        Some(raw) => {
            parts.headers = raw.to_header_map();
            if let Some(id) = &made_id {
                parts.headers.insert(request_id::X_REQUEST_ID.clone(), id.clone());
            }
            if drop_authorization {
                parts.headers.remove(header::AUTHORIZATION);
            }
            None
        }
        None => None,
    };
    // HTTP/1.1 heads were filtered by the parser; HTTP/2 heads are filtered here.
    if !http1_client && !runtime.limits.underscores_in_headers {
        headers::drop_underscored(&mut parts.headers);
    }
    let downstream_version = parts.version;
    parts.uri = upstream_uri(&parts.uri, route)?;
    if let Some(rewrite) = route.policy.as_ref().and_then(|p| p.rewrite.as_ref()) {
        let target = parts.uri.path_and_query().map_or("/", PathAndQuery::as_str);
        if let std::borrow::Cow::Owned(rewritten) = rewrite.apply(target) {
            parts.uri = Uri::try_from(rewritten).map_err(|_| ProxyError::RewriteFailed)?;
        }
    }
    parts.version = Version::HTTP_11;
    let via = match downstream_version {
        Version::HTTP_2 => &headers::VIA_HTTP2,
        Version::HTTP_3 => &headers::VIA_HTTP3,
        _ => &headers::VIA_HTTP11,
    };
    // The head written once from the client's bytes, sent as is to each server tried.
    let own_head = raw.as_ref().map(|raw| {
        let mut head = crate::net::io::take_buffer();
        let target = parts.uri.path_and_query().map_or("/", PathAndQuery::as_str);
        let client = &conn.client_headers;
        let added = head::Added { host: &host, request_id: made_id.as_ref(), drop_authorization, client, via };
        let framing = head::write(&mut head, &parts.method, target, raw, &added, &body);
        (head, framing)
    });
    if raw.is_none() {
        let te_trailers = upstream.http2 && headers::asks_for_trailers(&parts.headers);
        headers::strip_hop_by_hop(&mut parts.headers);
        if te_trailers {
            // gRPC needs it, and on HTTP/2 `TE: trailers` is the one TE allowed (RFC 9113 §8.2.2).
            parts.headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
        let multiplexed = downstream_version >= Version::HTTP_2;
        if multiplexed || !parts.headers.contains_key(header::HOST) {
            parts.headers.insert(header::HOST, host.clone());
        }
        headers::add_forwarding(&mut parts.headers, &conn.client_headers, &host, via);
        if let (Some(rules), Some(vars)) =
            (route.policy.as_ref().and_then(|p| p.request_headers.as_ref()), vars_out.as_deref())
        {
            rules.apply(&mut parts.headers, vars);
        }
        if let Some(Some(protocol)) = &upgrade {
            parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(header::UPGRADE, protocol.clone());
        }
    }
    let upstream_request = Box::new(Request::from_parts(parts, body));
    let own = match (&own_head, &raw) {
        (Some((head, framing)), Some(raw)) => {
            Some(forward::OwnHead { head, framing: *framing, fields: RequestFields::Raw(raw) })
        }
        _ => None,
    };

    // In line: the request's future is made in its box by the connection (HTTP/1.1) or the
    // service (HTTP/2, HTTP/3) and never moves, so the forwarding state costs no box of its own.
    let forwarded = forward::forward(upstream, upstream_request, own, conn.client.ip(), record.is_some()).await;
    if let Some((head, _)) = own_head {
        crate::net::io::give_back(head);
    }
    let forwarded = match forwarded {
        Ok(forwarded) => forwarded,
        Err(e) => {
            if let Some(record) = record {
                record.upstream = e.server.map(|server| server.label.clone());
            }
            return Err(e.error);
        }
    };
    let forward::Forwarded { mut response, connect, first_byte, repin } = forwarded;
    if let Some(record) = record {
        record.upstream = response.body().lease().map(|lease| lease.server().label.clone());
        record.upstream_status = Some(response.status().as_u16());
        record.upstream_connect = Some(connect);
        record.upstream_first_byte = Some(first_byte);
    }
    // A cookie porter adds must not replace the server's own `Set-Cookie` (porter's fields
    // win over raw ones by name): a response that gets one is put in a map first.
    if !http1_client || repin.is_some() {
        // Only porter's own HTTP/1.1 server writes a server's fields from their bytes.
        if let Some(raw) = response.body_mut().take_raw_fields() {
            *response.headers_mut() = raw.to_header_map();
        }
    }
    // An HTTP/2 server's answer: the client's connection decides the version written.
    *response.version_mut() = Version::HTTP_11;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        // Its connection leaves with the lease: never pooled.
        let Some(lease) = response.body_mut().take_lease() else { return Err(ProxyError::BadResponse) };
        if upgrade.is_some() {
            let server_upgrade = hyper::upgrade::on(&mut *response);
            *response.body_mut() = ResponseBody::empty();
            response.extensions_mut().insert(upgrade::PendingTunnel::new(server_upgrade, lease.into_in_flight()));
            return Ok(response);
        }
        // A switch nobody asked for: the server is out of step, and the client must not
        // see a bare 101.
        let server = lease.server();
        tracing::debug!(server = %server.label, "101 to a request that asked for no upgrade: 502");
        server.record_failure("101 to a request that asked for no upgrade");
        return Err(ProxyError::BadResponse);
    }
    headers::strip_hop_by_hop(response.headers_mut());
    if let (Some(index), Some(sticky)) = (repin, &upstream.sticky) {
        let cookie = sticky.set_cookie(index, conn.client_headers.https).clone();
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// A policy rule or a local action answered: counted on the route and named in the access log.
fn answered(route: &router::Route, answer: Answer, record: &mut Option<Box<AccessRecord>>) -> Reply {
    route.answers.record(answer.rule);
    if let Some(record) = record {
        record.policy = Some(answer.rule.as_str());
    }
    Box::new(answer.response)
}
