//! The request as the pipeline takes it ([`Incoming`]: its fields as the
//! client's bytes or in a map) and the facts the phases read from it: host,
//! length, the policy's variables, the target sent upstream.

use http::header::{self, HeaderMap, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::Request;

use super::{request_id, ConnContext, ProxyError};
use crate::body::{ClientBody, ClientRequest};
use crate::http1::view::{RawRequest, RequestFields};
use crate::policy::{self, Vars};
use crate::router;
use crate::runtime::Runtime;

/// A request as the pipeline takes it: its fields as the client's bytes
/// (HTTP/1.1) or in the request's map (HTTP/2, HTTP/3, or once a rule needs a map).
pub(super) struct Incoming {
    pub(super) request: ClientRequest,
    pub(super) raw: Option<RawRequest>,
    /// The request id porter made, while the fields are still the client's bytes.
    pub(super) made_id: Option<HeaderValue>,
    /// `basic_auth` took the raw fields' `Authorization` out (it is not sent on).
    pub(super) drop_authorization: bool,
}

impl Incoming {
    pub(super) fn fields(&self) -> RequestFields<'_> {
        RequestFields::of(self.request.headers(), self.raw.as_ref())
    }

    /// Sets the id porter made for the request (replacing any the client sent); returns it.
    pub(super) fn set_id(&mut self, id: HeaderValue) -> HeaderValue {
        match self.raw {
            Some(_) => self.made_id = Some(id.clone()),
            None => {
                self.request.headers_mut().insert(request_id::X_REQUEST_ID.clone(), id.clone());
            }
        }
        id
    }

    /// The fields put in the request's map, for the rules that work on one: the
    /// same map porter's HTTP/1.1 server made before it kept the bytes.
    pub(super) fn mapped(&mut self) -> &mut Request<ClientBody> {
        if let Some(raw) = self.raw.take() {
            *self.request.headers_mut() = self.map_of(&raw);
        }
        &mut self.request
    }

    /// `raw`'s fields as a map, with what the pipeline did to them so far.
    pub(super) fn map_of(&mut self, raw: &RawRequest) -> HeaderMap {
        let mut map = raw.to_header_map();
        if let Some(id) = self.made_id.take() {
            map.insert(request_id::X_REQUEST_ID.clone(), id);
        }
        if std::mem::take(&mut self.drop_authorization) {
            map.remove(header::AUTHORIZATION);
        }
        map
    }
}

/// What the route's policy and templates read, taken once (cheap clones).
pub(super) fn request_vars(
    incoming: &Incoming,
    host: &HeaderValue,
    host_name: &str,
    conn: &ConnContext,
    runtime: &Runtime,
    compress: Option<&policy::compress::Compress>,
) -> Vars {
    let peer = policy::client::Peer {
        ip: conn.client.ip(),
        value: &conn.client_headers.ip,
        trusted: conn.client_headers.trusted,
    };
    let (request, fields) = (&incoming.request, incoming.fields());
    let (client_ip, client_ip_value) = policy::client::client_ip(peer, fields, &runtime.trusted_proxies);
    Vars {
        client_ip,
        client_ip_value,
        // `{host}` is the name without a port, as nginx's $host and Caddy's {host}: a copy
        // only when the client wrote a port or capitals.
        host: if host.as_bytes() == host_name.as_bytes() {
            host.clone()
        } else {
            HeaderValue::from_str(host_name).unwrap_or_else(|_| host.clone())
        },
        uri: request.uri().clone(),
        https: conn.client_headers.https,
        // The id porter made, or the one it kept.
        request_id: (incoming.made_id.clone())
            .or_else(|| fields.value(&request_id::X_REQUEST_ID))
            .unwrap_or(HeaderValue::from_static("")),
        // From the request before it is gone: method, Range, Accept-Encoding.
        compress: match compress {
            Some(compress) => compress.negotiate(request.method(), fields),
            None => policy::compress::Negotiated::Untouched,
        },
    }
}

/// Host from `:authority` (HTTP/2, or an absolute-form HTTP/1.1 target), else the Host header.
pub(super) fn request_host<B>(request: &Request<B>, fields: RequestFields<'_>) -> Option<HeaderValue> {
    if let Some(authority) = request.uri().authority() {
        return HeaderValue::from_str(authority.as_str()).ok();
    }
    fields.host()
}

pub(super) fn content_length(fields: RequestFields<'_>) -> Option<u64> {
    std::str::from_utf8(fields.get(&header::CONTENT_LENGTH)?).ok()?.trim().parse().ok()
}

/// The origin-form target sent upstream, with the route's prefix stripped if asked.
pub(super) fn upstream_uri(uri: &Uri, route: &router::Route) -> Result<Uri, ProxyError> {
    let path_and_query = uri.path_and_query().map(PathAndQuery::as_str).unwrap_or("/");
    if route.strip_prefix {
        let stripped = router::strip(&route.prefix, path_and_query);
        return Uri::try_from(stripped).map_err(|_| ProxyError::InvalidHost);
    }
    if uri.scheme().is_none() && uri.authority().is_none() {
        return Ok(uri.clone());
    }
    match uri.path_and_query() {
        Some(pq) => Ok(Uri::from(pq.clone())),
        None => Ok(Uri::from_static("/")),
    }
}
