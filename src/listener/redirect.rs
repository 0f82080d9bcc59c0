//! Port 80's answer when redirecting: 301 for GET/HEAD, 308 for other
//! methods (so a POST stays a POST), to `https://HOST[:https_port]/path?query`.

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use crate::http1::view::RequestFields;
use crate::proxy::error::ProxyError;
use crate::router::normalize_host;
use crate::runtime::Runtime;
use crate::upstream::ResponseBody;

pub(crate) fn respond<B>(request: &Request<B>, fields: RequestFields<'_>, runtime: &Runtime) -> Response<ResponseBody> {
    let raw_host = match request.uri().authority() {
        Some(authority) => authority.as_str().as_bytes(),
        None => match fields.get(&header::HOST) {
            Some(host) => host,
            None => return ProxyError::MissingHost.to_response(),
        },
    };
    let mut buf = [0u8; 256];
    let Some(host) = normalize_host(raw_host, &mut buf) else {
        return ProxyError::InvalidHost.to_response();
    };
    let path = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let location = match runtime.https_port {
        Some(port) if port != 443 => format!("https://{host}:{port}{path}"),
        _ => format!("https://{host}{path}"),
    };
    let Ok(location) = HeaderValue::try_from(location) else {
        return ProxyError::InvalidHost.to_response();
    };
    let status = if request.method() == Method::GET || request.method() == Method::HEAD {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::PERMANENT_REDIRECT
    };
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = status;
    response.headers_mut().insert(header::LOCATION, location);
    response
}
