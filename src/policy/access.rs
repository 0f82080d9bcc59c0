//! `allow` / `deny`: CIDR lists checked against the client address (after
//! `trusted_proxies` and the PROXY protocol, see `client.rs`). `deny` wins;
//! with an `allow` list, anyone outside it is refused too. A mask and a compare
//! per range, no allocation.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use std::net::IpAddr;

use super::{Answer, Rule};
use crate::config::Cidr;
use crate::upstream::ResponseBody;

#[derive(Debug)]
pub(crate) struct Access {
    allow: Box<[Cidr]>,
    deny: Box<[Cidr]>,
}

impl Access {
    pub(crate) fn compile(allow: &[Cidr], deny: &[Cidr]) -> Option<Access> {
        (!allow.is_empty() || !deny.is_empty()).then(|| Access { allow: allow.into(), deny: deny.into() })
    }

    pub(crate) fn allows(&self, client: IpAddr) -> bool {
        if self.deny.iter().any(|range| range.contains(client)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|range| range.contains(client))
    }

    /// `Some`: the 403 for a client the lists refuse.
    pub(crate) fn check(&self, client: IpAddr) -> Option<Answer> {
        if self.allows(client) {
            return None;
        }
        Some(Answer { rule: Rule::Deny, response: forbidden() })
    }
}

fn forbidden() -> Response<ResponseBody> {
    let body = Bytes::from_static(b"403 Forbidden: this address may not use this route\n");
    let mut response = Response::new(ResponseBody::full(body));
    *response.status_mut() = StatusCode::FORBIDDEN;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| Cidr::parse(c).unwrap()).collect()
    }

    #[test]
    fn deny_wins_over_allow() {
        let access = Access::compile(&cidrs(&["10.0.0.0/8"]), &cidrs(&["10.1.0.0/16"])).unwrap();
        assert!(access.allows("10.2.3.4".parse().unwrap()));
        assert!(!access.allows("10.1.3.4".parse().unwrap()), "deny wins");
        assert!(!access.allows("192.0.2.1".parse().unwrap()), "outside allow");
        let deny_only = Access::compile(&[], &cidrs(&["192.0.2.0/24"])).unwrap();
        assert!(deny_only.allows("198.51.100.1".parse().unwrap()));
        assert!(!deny_only.allows("::ffff:192.0.2.9".parse().unwrap()), "IPv4-mapped clients match IPv4 ranges");
        assert!(Access::compile(&[], &[]).is_none());
    }
}
