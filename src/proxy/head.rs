//! The request head for an HTTP/1.1 server, written from the client's own
//! bytes when porter's HTTP/1.1 server read it (docs/architecture.md, The life
//! of a request): the request line, the client's fields minus the hop-by-hop
//! ones (and those its `Connection` names) and the forwarding fields porter
//! replaces, then porter's own. The same fields and values as the map path
//! (`headers::strip_hop_by_hop`, `headers::add_forwarding`) gives, without a map.

use bytes::BytesMut;
use http::{HeaderValue, Method};

use super::headers::ClientHeaders;
use crate::body::RequestBody;
use crate::http1::view::{Name, RawRequest};
use crate::upstream::http1::{end_head, write_field, write_request_line, Framing};

/// What porter adds to the client's fields.
pub(super) struct Added<'a> {
    /// The request's host (Host or the target's authority): X-Forwarded-Host, and
    /// Host when the client's fields keep none.
    pub host: &'a HeaderValue,
    /// An id porter made: it replaces any the client sent.
    pub request_id: Option<&'a HeaderValue>,
    /// `basic_auth` took the client's `Authorization` (not `forward_credentials`).
    pub drop_authorization: bool,
    pub client: &'a ClientHeaders,
    pub via: &'a HeaderValue,
}

/// Writes the head into `dst` and returns the body's framing.
pub(super) fn write(
    dst: &mut BytesMut,
    method: &Method,
    target: &str,
    raw: &RawRequest,
    added: &Added<'_>,
    body: &RequestBody,
) -> Framing {
    write_request_line(dst, method, target);
    let named = connection_named(raw);
    let trusted = added.client.trusted;
    let mut has_length = false;
    let mut has_host = false;
    // The forwarding fields a trusted client sent: kept (X-Forwarded-For is appended to).
    let (mut kept_for, mut kept_proto, mut kept_host, mut kept_port, mut kept_ip) = (false, false, false, false, false);
    for (i, (class, name, value)) in raw.fields().enumerate() {
        if class.is_hop_by_hop() || named & (1 << i) != 0 {
            continue;
        }
        match class {
            Name::XRequestId if added.request_id.is_some() => continue,
            Name::Authorization if added.drop_authorization => continue,
            // Written below: replaced, or joined with the client's address appended.
            Name::XForwardedFor => {
                kept_for = true;
                continue;
            }
            Name::XForwardedProto | Name::XForwardedHost | Name::XForwardedPort | Name::XRealIp if !trusted => continue,
            Name::XForwardedProto => kept_proto = true,
            Name::XForwardedHost => kept_host = true,
            Name::XForwardedPort => kept_port = true,
            Name::XRealIp => kept_ip = true,
            Name::ContentLength => has_length = true,
            Name::Host => has_host = true,
            _ => {}
        }
        write_field(dst, name, value);
    }
    // As on a map: the id goes in before the hop-by-hop fields are taken out, so a
    // `Connection` naming it takes porter's out too.
    if let Some(id) = added.request_id.filter(|_| !connection_lists(raw, b"x-request-id")) {
        write_field(dst, b"x-request-id", id.as_bytes());
    }
    if !has_host {
        write_field(dst, b"host", added.host.as_bytes());
    }
    let client = added.client;
    if trusted && kept_for {
        // Several incoming lines are one list: joined, then the client's address appended.
        dst.extend_from_slice(b"x-forwarded-for: ");
        let start = dst.len();
        let lines = raw
            .fields()
            .enumerate()
            .filter(|(i, (class, _, _))| *class == Name::XForwardedFor && named & (1 << i) == 0);
        for (_, (_, _, value)) in lines {
            if dst.len() > start {
                dst.extend_from_slice(b", ");
            }
            dst.extend_from_slice(value);
        }
        dst.extend_from_slice(b", ");
        dst.extend_from_slice(client.ip.as_bytes());
        dst.extend_from_slice(b"\r\n");
    } else {
        write_field(dst, b"x-forwarded-for", client.ip.as_bytes());
    }
    if !(trusted && kept_proto) {
        write_field(dst, b"x-forwarded-proto", if client.https { b"https" } else { b"http" });
    }
    if !(trusted && kept_host) {
        write_field(dst, b"x-forwarded-host", added.host.as_bytes());
    }
    if !(trusted && kept_port) {
        write_field(dst, b"x-forwarded-port", client.port.as_bytes());
    }
    if !(trusted && kept_ip) {
        write_field(dst, b"x-real-ip", client.ip.as_bytes());
    }
    write_field(dst, b"via", added.via.as_bytes());
    end_head(dst, method, has_length, body)
}

/// The names the client's `Connection` fields list, as `headers::strip_hop_by_hop`
/// reads them (a value that is not visible ASCII lists none).
fn listed(raw: &RawRequest) -> impl Iterator<Item = &[u8]> {
    raw.fields()
        .filter(|(class, _, value)| {
            *class == Name::Connection && value.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        })
        .flat_map(|(_, _, value)| value.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|token| !token.is_empty())
}

fn connection_lists(raw: &RawRequest, name: &[u8]) -> bool {
    raw.has(Name::Connection) && listed(raw).any(|token| token.eq_ignore_ascii_case(name))
}

/// Bit i: field i is named by the client's `Connection` (at most 100 fields).
fn connection_named(raw: &RawRequest) -> u128 {
    if !raw.has(Name::Connection) {
        return 0;
    }
    let mut named = 0u128;
    for token in listed(raw) {
        for (i, (_, name, _)) in raw.fields().enumerate() {
            if name.eq_ignore_ascii_case(token) {
                named |= 1 << i;
            }
        }
    }
    named
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::request::parse;
    use crate::proxy::headers::{add_forwarding, strip_hop_by_hop, VIA_HTTP11};
    use crate::proxy::request_id::X_REQUEST_ID;
    use http::header;

    /// The map path's head for the same request, for comparison.
    fn by_map(raw: &RawRequest, added: &Added<'_>, method: &Method, body: &RequestBody) -> Vec<(String, String)> {
        let mut map = raw.to_header_map();
        if let Some(id) = added.request_id {
            map.insert(X_REQUEST_ID.clone(), id.clone());
        }
        strip_hop_by_hop(&mut map);
        if !map.contains_key(header::HOST) {
            map.insert(header::HOST, added.host.clone());
        }
        add_forwarding(&mut map, added.client, added.host, added.via);
        let mut parts = http::Request::new(()).into_parts().0;
        parts.method = method.clone();
        parts.headers = map;
        let mut dst = BytesMut::new();
        crate::upstream::http1::write_request_head(&mut dst, &parts, body);
        fields_of(&dst)
    }

    /// The head's fields, names lower-cased, sorted by name (keeping each name's order).
    fn fields_of(head: &[u8]) -> Vec<(String, String)> {
        let text = std::str::from_utf8(head).unwrap();
        let mut fields: Vec<(String, String)> = text
            .split("\r\n")
            .skip(1)
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(": ").unwrap();
                (n.to_ascii_lowercase(), v.to_owned())
            })
            .collect();
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        fields
    }

    fn compare(request: &[u8], trusted: bool, id: Option<&HeaderValue>) {
        let head = parse(&mut BytesMut::from(request), 8192, false).unwrap().unwrap();
        let client = ClientHeaders::new("10.0.0.1".parse().unwrap(), true, 443, trusted);
        let host = HeaderValue::from_static("example.com");
        let added = Added { host: &host, request_id: id, drop_authorization: false, client: &client, via: &VIA_HTTP11 };
        let method = head.request.method().clone();
        let body = RequestBody::empty();
        let mut dst = BytesMut::new();
        let framing = write(&mut dst, &method, "/p", &head.fields, &added, &body);
        assert_eq!(framing, Framing::None);
        assert!(dst.starts_with(format!("{method} /p HTTP/1.1\r\n").as_bytes()));
        assert!(dst.ends_with(b"\r\n\r\n"));
        let text = String::from_utf8_lossy(request);
        assert_eq!(fields_of(&dst), by_map(&head.fields, &added, &method, &body), "{text} trusted={trusted}");
    }

    #[test]
    fn the_raw_head_has_the_map_paths_fields() {
        let id = HeaderValue::from_static("0123456789abcdef0123456789abcdef");
        let requests: [&[u8]; 6] = [
            b"GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 1.1.1.1\r\nx-forwarded-for: 2.2.2.2\r\n\
              X-Forwarded-Proto: http\r\nX-Real-IP: 1.1.1.1\r\nX-Forwarded-Port: 1\r\nX-Forwarded-Host: h\r\n\
              Via: 1.0 edge\r\nX-Request-Id: abc\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive, X-Secret, x-forwarded-for\r\n\
              X-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nUpgrade: h2c\r\nX-Forwarded-For: 3.3.3.3\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: example.com\r\nConnection: host, X-Request-Id\r\nX-Request-Id: a\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\nProxy-Connection: x\r\n\r\n",
            b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n",
        ];
        for request in requests {
            for trusted in [false, true] {
                compare(request, trusted, Some(&id));
                compare(request, trusted, None);
            }
        }
    }

    #[test]
    fn the_clients_fields_keep_their_order_and_spelling() {
        let head = parse(
            &mut BytesMut::from(
                &b"GET / HTTP/1.1\r\nHost: a\r\nX-B: 1\r\nX-A: 2\r\nx-b: 3\r\nConnection: close\r\n\r\n"[..],
            ),
            8192,
            false,
        )
        .unwrap()
        .unwrap();
        let client = ClientHeaders::new("10.0.0.1".parse().unwrap(), false, 80, false);
        let host = HeaderValue::from_static("a");
        let added =
            Added { host: &host, request_id: None, drop_authorization: false, client: &client, via: &VIA_HTTP11 };
        let mut dst = BytesMut::new();
        write(&mut dst, &Method::GET, "/", &head.fields, &added, &RequestBody::empty());
        let expected = "GET / HTTP/1.1\r\nHost: a\r\nX-B: 1\r\nX-A: 2\r\nx-b: 3\r\nx-forwarded-for: 10.0.0.1\r\n\
                        x-forwarded-proto: http\r\nx-forwarded-host: a\r\nx-forwarded-port: 80\r\nx-real-ip: 10.0.0.1\r\n\
                        via: 1.1 porter\r\n\r\n";
        assert_eq!(std::str::from_utf8(&dst).unwrap(), expected);
    }
}
