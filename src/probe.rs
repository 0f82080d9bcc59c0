//! `porter probe URL`: one plain-HTTP GET, success when the answer is 2xx.
//!
//! The container image is built `FROM scratch` and has no shell or curl, so its
//! HEALTHCHECK runs the porter binary itself against the admin listener's
//! `/healthz`. Only `http://` is spoken: the admin listener is plaintext and
//! local, and a probe that needed certificates would fail for the wrong reason.

use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, StatusCode, Uri};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// GETs `url` within `timeout`. `Ok` carries a 2xx status; every other
/// outcome (bad URL, no connection, another status, timeout) is an `Err`
/// that says which.
pub async fn probe(url: &str, timeout: Duration) -> Result<StatusCode, String> {
    match tokio::time::timeout(timeout, get(url)).await {
        Ok(Ok(status)) if status.is_success() => Ok(status),
        Ok(Ok(status)) => Err(format!("{url} answered {status}")),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("{url} did not answer within {timeout:?}")),
    }
}

async fn get(url: &str) -> Result<StatusCode, String> {
    let uri: Uri = url.parse().map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("{url:?}: only http:// URLs can be probed"));
    }
    let Some(authority) = uri.authority().cloned() else {
        return Err(format!("{url:?} has no host"));
    };
    let port = authority.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((authority.host().trim_start_matches('[').trim_end_matches(']'), port))
        .await
        .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("{authority}: {e}"))?;
    tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = Request::get(path)
        .header(header::HOST, authority.as_str())
        .header(header::USER_AGENT, "porter-probe")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| format!("{url}: {e}"))?;
    Ok(response.status())
}
