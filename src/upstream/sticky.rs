//! Sticky sessions (`sticky:` on an upstream): porter pins each client to a
//! server with a cookie of its own, so that a login which sets the
//! application's session cookie on one server stays on that server.
//!
//! - The cookie's value names a server opaquely: an HMAC-SHA256 of the
//!   server's URL (scheme://host:port, as configured), 16 bytes in hex. It
//!   does not show the address, and it depends on nothing else, so a reload
//!   (or a restart, or another porter instance behind the same L4 balancer)
//!   that keeps the server keeps its clients.
//! - A request whose cookie names a server of the upstream that is healthy
//!   and not ejected goes there, even at weight 0 (nginx's `drain`: pinned
//!   sessions finish, new clients go elsewhere). Otherwise the balancer picks
//!   and the answer carries a new cookie for the server that answered.
//! - Every `Set-Cookie` is made when the configuration is loaded (one per
//!   server, with and without `Secure`): a request formats nothing.

use aws_lc_rs::hmac;
use http::header::HeaderValue;

use super::balancer::key;
use super::server::Server;
use crate::config::StickyConfig;
use crate::http1::view::RequestFields;

/// The HMAC key. Fixed, not secret: the value only has to hide the address and
/// stay the same across reloads, restarts and instances. A client that forges a
/// value can at most choose one of the configured servers, which it could reach
/// through the balancer anyway.
const KEY: &[u8] = b"porter sticky session server v1";

#[derive(Debug)]
pub(crate) struct Sticky {
    cookie: Box<str>,
    /// Per server (same index as the upstream's servers): the cookie's value.
    values: Vec<Box<[u8]>>,
    /// Per server: `Set-Cookie` for plaintext requests, and for https ones (with `Secure`).
    set_plain: Vec<HeaderValue>,
    set_secure: Vec<HeaderValue>,
}

impl Sticky {
    pub(crate) fn new(cfg: &StickyConfig, servers: &[std::sync::Arc<Server>]) -> Sticky {
        let mut attributes = String::from("; Path=/");
        if let Some(max_age) = cfg.max_age {
            attributes.push_str(&format!("; Max-Age={}", max_age.as_secs().max(1)));
        }
        if cfg.http_only {
            attributes.push_str("; HttpOnly");
        }
        attributes.push_str("; SameSite=");
        attributes.push_str(cfg.same_site.as_str());
        let values: Vec<Box<[u8]>> = servers.iter().map(|s| value_for(&s.url).into_bytes().into()).collect();
        let header = |value: &[u8], secure: bool| {
            let text = format!(
                "{}={}{attributes}{}",
                cfg.cookie,
                std::str::from_utf8(value).expect("hex"),
                if secure { "; Secure" } else { "" }
            );
            HeaderValue::try_from(text).expect("a cookie token, hex and fixed attributes")
        };
        Sticky {
            cookie: cfg.cookie.as_str().into(),
            set_plain: values.iter().map(|v| header(v, false)).collect(),
            set_secure: values.iter().map(|v| header(v, cfg.secure)).collect(),
            values,
        }
    }

    /// The server the request's cookie names, when that server may take it
    /// (healthy and not ejected; weight 0 still serves its pinned clients).
    #[inline]
    pub(crate) fn pinned(&self, headers: RequestFields<'_>, servers: &[std::sync::Arc<Server>]) -> Option<usize> {
        let value = key::cookie(headers, self.cookie.as_bytes())?;
        let index = self.values.iter().position(|v| **v == *value)?;
        let server = &servers[index];
        (server.is_healthy() && !server.is_ejected()).then_some(index)
    }

    /// The `Set-Cookie` that pins a client to server `index`.
    pub(crate) fn set_cookie(&self, index: usize, https: bool) -> &HeaderValue {
        if https {
            &self.set_secure[index]
        } else {
            &self.set_plain[index]
        }
    }
}

/// The opaque value naming a server: HMAC-SHA256 of its URL, 16 bytes in hex.
pub(crate) fn value_for(url: &crate::config::ServerUrl) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, KEY);
    let tag = hmac::sign(&key, url.to_string().as_bytes());
    tag.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PassiveConfig, SameSite};
    use crate::upstream::server::test_server;
    use http::HeaderMap;

    #[test]
    fn values_are_opaque_stable_and_distinct() {
        let a = test_server("10.0.0.11:8080", 1, PassiveConfig::default());
        let b = test_server("10.0.0.12:8080", 1, PassiveConfig::default());
        let (va, vb) = (value_for(&a.url), value_for(&b.url));
        assert_eq!(va.len(), 32);
        assert_ne!(va, vb);
        assert!(!va.contains("10.0.0"), "no address in {va}");
        // The same URL gives the same value in another server list (a reload).
        let again = test_server("10.0.0.11:8080", 3, PassiveConfig::default());
        assert_eq!(value_for(&again.url), va);
    }

    #[test]
    fn set_cookie_attributes() {
        let servers = vec![test_server("10.0.0.11:8080", 1, PassiveConfig::default())];
        let cfg = StickyConfig {
            cookie: "srv".into(),
            max_age: Some(std::time::Duration::from_secs(3600)),
            secure: true,
            http_only: true,
            same_site: SameSite::Strict,
        };
        let sticky = Sticky::new(&cfg, &servers);
        let value = value_for(&servers[0].url);
        let plain = sticky.set_cookie(0, false).to_str().unwrap();
        assert_eq!(plain, format!("srv={value}; Path=/; Max-Age=3600; HttpOnly; SameSite=Strict"));
        let secure = sticky.set_cookie(0, true).to_str().unwrap();
        assert_eq!(secure, format!("{plain}; Secure"));

        let mut headers = HeaderMap::new();
        headers.insert(http::header::COOKIE, HeaderValue::try_from(format!("a=1; srv={value}")).unwrap());
        assert_eq!(sticky.pinned(RequestFields::Map(&headers), &servers), Some(0));
        headers.insert(http::header::COOKIE, HeaderValue::from_static("srv=0123"));
        assert_eq!(sticky.pinned(RequestFields::Map(&headers), &servers), None);
    }
}
