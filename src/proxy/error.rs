//! Every way a request can fail inside porter, and the one place each maps
//! to a status code and a short plain-text body that says which.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::upstream::ResponseBody;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProxyError {
    MissingHost,
    InvalidHost,
    /// Both Content-Length and Transfer-Encoding, or a malformed chunked body.
    AmbiguousFraming,
    /// More than one Host, or a Host unlike the absolute-form target or `:authority`.
    ConflictingHost,
    /// `CONNECT`: porter is not a forward proxy (405).
    MethodNotAllowed,
    /// An HTTP/1.x target in a form its method may not use: authority-form
    /// (`GET a:80`) or `*` on anything but OPTIONS.
    BadTarget,
    NoRoute,
    Misdirected,
    BodyTooLarge,
    NoServer,
    /// Every server of the upstream has weight 0 (drained for maintenance).
    Drained,
    ConnectFailed,
    ConnectTimeout,
    UpstreamFailed,
    /// The server's response head is not HTTP/1.x, too large, or cannot be framed.
    BadResponse,
    ResponseTimeout,
    /// The server stopped taking the request body for `timeouts.send`.
    SendTimeout,
    /// The client's body broke its framing (a bad chunk).
    BadRequestBody,
    /// The client sent no body bytes for `limits.body_timeout`.
    BodyTimeout,
    /// The route's `rewrite` made a path that is not a valid request target.
    RewriteFailed,
    /// The client went away before its request was answered (nginx's 499);
    /// nobody reads the answer, it is logged and counted apart from 5xx.
    ClientClosed,
}

impl From<crate::body::ClientFault> for ProxyError {
    fn from(fault: crate::body::ClientFault) -> ProxyError {
        match fault {
            crate::body::ClientFault::Malformed => ProxyError::BadRequestBody,
            crate::body::ClientFault::Gone => ProxyError::ClientClosed,
            crate::body::ClientFault::Stalled => ProxyError::BodyTimeout,
        }
    }
}

/// nginx's "client closed request": not a standard status, never sent.
const CLIENT_CLOSED_REQUEST: u16 = 499;

impl ProxyError {
    pub(crate) fn status(self) -> StatusCode {
        match self {
            ProxyError::MissingHost
            | ProxyError::InvalidHost
            | ProxyError::AmbiguousFraming
            | ProxyError::ConflictingHost
            | ProxyError::BadRequestBody
            | ProxyError::BadTarget => StatusCode::BAD_REQUEST,
            ProxyError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::ClientClosed => StatusCode::from_u16(CLIENT_CLOSED_REQUEST).expect("a valid status"),
            ProxyError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::NoServer | ProxyError::Drained => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::RewriteFailed => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::ConnectFailed | ProxyError::UpstreamFailed | ProxyError::BadResponse => StatusCode::BAD_GATEWAY,
            ProxyError::ConnectTimeout | ProxyError::ResponseTimeout | ProxyError::SendTimeout => {
                StatusCode::GATEWAY_TIMEOUT
            }
        }
    }

    pub(crate) fn message(self) -> &'static str {
        match self {
            ProxyError::MissingHost => "400 Bad Request: missing Host header\n",
            ProxyError::InvalidHost => "400 Bad Request: invalid Host header\n",
            ProxyError::AmbiguousFraming => "400 Bad Request: ambiguous or malformed message framing\n",
            ProxyError::ConflictingHost => "400 Bad Request: more than one host in the request\n",
            ProxyError::MethodNotAllowed => "405 Method Not Allowed: porter does not open tunnels (CONNECT)\n",
            ProxyError::BadTarget => "400 Bad Request: request target form not allowed for this method\n",
            ProxyError::NoRoute => "404 Not Found: no route for this host and path\n",
            ProxyError::Misdirected => {
                "421 Misdirected Request: this connection's certificate does not cover that host\n"
            }
            ProxyError::BodyTooLarge => "413 Payload Too Large: request body exceeds the limit\n",
            ProxyError::NoServer => "503 Service Unavailable: no healthy upstream server\n",
            ProxyError::Drained => "503 Service Unavailable: every upstream server is drained (weight 0)\n",
            ProxyError::ConnectFailed => "502 Bad Gateway: could not connect to an upstream server\n",
            ProxyError::ConnectTimeout => "504 Gateway Timeout: connecting to the upstream server timed out\n",
            ProxyError::UpstreamFailed => "502 Bad Gateway: upstream server closed or reset the connection\n",
            ProxyError::BadResponse => "502 Bad Gateway: upstream server sent a response porter cannot frame\n",
            ProxyError::ResponseTimeout => "504 Gateway Timeout: upstream server did not answer in time\n",
            ProxyError::SendTimeout => "504 Gateway Timeout: upstream server stopped reading the request body\n",
            ProxyError::BadRequestBody => "400 Bad Request: malformed request body\n",
            ProxyError::BodyTimeout => "408 Request Timeout: the request body stopped arriving\n",
            ProxyError::ClientClosed => "499 Client Closed Request\n",
            ProxyError::RewriteFailed => "500 Internal Server Error: the route's rewrite made an invalid path\n",
        }
    }

    pub(crate) fn to_response(self) -> Response<ResponseBody> {
        let mut response = Response::new(ResponseBody::full(Bytes::from_static(self.message().as_bytes())));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        if matches!(
            self,
            ProxyError::MissingHost
                | ProxyError::InvalidHost
                | ProxyError::AmbiguousFraming
                | ProxyError::ConflictingHost
                | ProxyError::BodyTooLarge
                | ProxyError::BadRequestBody
                | ProxyError::BodyTimeout
                | ProxyError::ClientClosed
                | ProxyError::BadTarget
                | ProxyError::MethodNotAllowed
        ) {
            // The request's framing may be unreliable: do not read another on this connection.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self == ProxyError::MethodNotAllowed {
            // RFC 9110 §15.5.6: a 405 lists what the target allows; every method but CONNECT.
            headers.insert(header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
        }
        response
    }
}

/// The `Allow` of a 405: the methods porter forwards.
pub(crate) const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE";
