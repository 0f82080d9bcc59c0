//! ACME HTTP-01 challenges: `/.well-known/acme-challenge/TOKEN` on the
//! plaintext listener is answered from memory for porter's own orders
//! (`acme:`), else from the webroot folder (`http.acme_webroot`), so certbot
//! or lego in `--webroot` mode can issue certificates while porter runs.
//!
//! A token is base64url (RFC 8555 §8.3): only `A-Z a-z 0-9 - _` are accepted,
//! so a path can never leave the folder.

use std::path::Path;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::upstream::ResponseBody;

pub(crate) const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// The token of a challenge path, if `path` is one and the token is well-formed.
pub(crate) fn challenge_token(path: &str) -> Option<&str> {
    let token = path.strip_prefix(CHALLENGE_PREFIX)?;
    let valid = !token.is_empty()
        && token.len() <= 256
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    valid.then_some(token)
}

/// The answer to a challenge of porter's own ACME client, if one is open for this token.
pub(crate) fn respond_own(runtime: &crate::runtime::Runtime, path: &str) -> Option<Response<ResponseBody>> {
    let key_authorization = runtime.certs.challenges().http01(challenge_token(path)?)?;
    tracing::info!(path, "ACME HTTP-01 challenge answered");
    Some(text(StatusCode::OK, Bytes::from(key_authorization)))
}

pub(crate) async fn respond(webroot: &Path, path: &str) -> Response<ResponseBody> {
    let found = match challenge_token(path) {
        // certbot writes into WEBROOT/.well-known/acme-challenge/, lego --http.webroot too.
        Some(token) => tokio::fs::read(webroot.join(".well-known/acme-challenge").join(token)).await.ok(),
        None => None,
    };
    let (status, body) = match found {
        Some(content) => (StatusCode::OK, Bytes::from(content)),
        None => (StatusCode::NOT_FOUND, Bytes::from_static(b"404 Not Found: no such ACME challenge\n")),
    };
    text(status, body)
}

fn text(status: StatusCode, body: Bytes) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

#[cfg(test)]
mod tests {
    use super::challenge_token;

    #[test]
    fn only_base64url_tokens() {
        assert_eq!(challenge_token("/.well-known/acme-challenge/abc-DEF_123"), Some("abc-DEF_123"));
        assert_eq!(challenge_token("/.well-known/acme-challenge/../../etc/passwd"), None);
        assert_eq!(challenge_token("/.well-known/acme-challenge/a/b"), None);
        assert_eq!(challenge_token("/.well-known/acme-challenge/%2e%2e"), None);
        assert_eq!(challenge_token("/.well-known/acme-challenge/"), None);
        assert_eq!(challenge_token("/other"), None);
    }
}
