//! The three line formats of `access_log.format`. The field names and their
//! order are a contract (docs/configuration.md, Access log); the JSON key set is pinned by
//! a test.
//!
//! - `text`: tracing's layout as porter always wrote it (timestamp, level,
//!   target, message), then `key=value` pairs quoted the logfmt way: a value
//!   is quoted only when it holds a space, `"`, `=` or nothing; `-` when absent.
//! - `json`: one object per line, every key always present, `null` when absent.
//! - `combined`: exactly Apache's and nginx's "combined" (`%h %l %u %t "%r" %>s
//!   %b "%{Referer}i" "%{User-agent}i"`), escaped the nginx way (`"`, `\`,
//!   control and non-ASCII bytes as `\xHH`), so no field can end early.

use std::borrow::Cow;
use std::io::Write;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Version};
use serde::{Serialize, Serializer};
use time::OffsetDateTime;

use super::{version_name, AccessRecord};
use crate::config::AccessLogFormat;

pub(super) fn line(format: AccessLogFormat, r: &AccessRecord, bytes: u64, now: SystemTime, out: &mut Vec<u8>) {
    let now = OffsetDateTime::from(now);
    match format {
        AccessLogFormat::Text => text(r, bytes, now, out),
        AccessLogFormat::Json => json(r, bytes, now, out),
        AccessLogFormat::Combined => combined(r, bytes, now, out),
    }
    out.push(b'\n');
}

/// The client's address as logged: an IPv4 client of a dual-stack listener as plain IPv4.
fn client_ip(r: &AccessRecord) -> IpAddr {
    r.client.ip().to_canonical()
}

fn path(r: &AccessRecord) -> &str {
    r.uri.path_and_query().map_or("/", |p| p.as_str())
}

/// `now` as RFC 3339 in UTC (`2026-12-06T10:45:00.123Z`), its fraction of a second
/// to `digits` places: 3 (milliseconds) or 6 (microseconds).
fn rfc3339(mut out: impl Write, now: OffsetDateTime, digits: usize) {
    let fraction = if digits == 3 { u32::from(now.millisecond()) } else { now.microsecond() };
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{fraction:0digits$}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
    );
}

fn upstream(r: &AccessRecord) -> Option<&str> {
    r.upstream.as_deref()
}

fn route(r: &AccessRecord) -> Option<&str> {
    r.route.as_deref()
}

/// A header as JSON text: invalid UTF-8 (obs-text) replaced, not dropped.
fn lossy(value: &Option<HeaderValue>) -> Option<Cow<'_, str>> {
    value.as_ref().map(|v| String::from_utf8_lossy(v.as_bytes()))
}

// ---- text -------------------------------------------------------------------------------

fn text(r: &AccessRecord, bytes: u64, now: OffsetDateTime, out: &mut Vec<u8>) {
    rfc3339(&mut *out, now, 6);
    out.extend_from_slice(b"  INFO porter::access: request");
    let _ = write!(out, " client_ip={} client_port={}", client_ip(r), r.client.port());
    field(out, "method", Some(r.method.as_str().as_bytes()));
    field(out, "protocol", Some(version_name(r.version).as_bytes()));
    field(out, "tls", r.tls_version.map(str::as_bytes));
    field(out, "host", r.host.as_ref().map(HeaderValue::as_bytes));
    field(out, "path", Some(path(r).as_bytes()));
    let _ = write!(out, " status={} bytes={} request_bytes={}", r.status, bytes, r.request_body_bytes());
    field(out, "upstream", upstream(r).map(str::as_bytes));
    match r.upstream_status {
        Some(status) => _ = write!(out, " upstream_status={status}"),
        None => out.extend_from_slice(b" upstream_status=-"),
    }
    millis_field(out, "upstream_connect_ms", r.upstream_connect);
    millis_field(out, "upstream_first_byte_ms", r.upstream_first_byte);
    field(out, "route", route(r).map(str::as_bytes));
    field(out, "policy", r.policy.map(str::as_bytes));
    field(out, "referer", r.referer.as_ref().map(HeaderValue::as_bytes));
    field(out, "user_agent", r.user_agent.as_ref().map(HeaderValue::as_bytes));
    field(out, "request_id", r.request_id.as_ref().map(HeaderValue::as_bytes));
    millis_field(out, "duration_ms", Some(r.start.elapsed()));
}

/// ` key=value`, logfmt quoting; `-` when absent.
fn field(out: &mut Vec<u8>, key: &str, value: Option<&[u8]>) {
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    let Some(value) = value else {
        out.push(b'-');
        return;
    };
    let plain = !value.is_empty() && value.iter().all(|&b| b > b' ' && b < 0x7f && b != b'"' && b != b'=');
    if plain {
        out.extend_from_slice(value);
        return;
    }
    out.push(b'"');
    for &b in value {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b' '..=0x7e => out.push(b),
            _ => hex_escape(out, b),
        }
    }
    out.push(b'"');
}

fn millis_field(out: &mut Vec<u8>, key: &str, value: Option<Duration>) {
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    match value {
        Some(d) => {
            let micros = d.as_micros();
            let _ = write!(out, "{}.{:03}", micros / 1000, micros % 1000);
        }
        None => out.push(b'-'),
    }
}

fn hex_escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&[b'\\', b'x', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
}

// ---- json -------------------------------------------------------------------------------

/// The JSON line; the order of the fields is the order of the keys.
#[derive(Serialize)]
struct JsonLine<'a> {
    time: &'a str,
    client_ip: IpAddr,
    client_port: u16,
    method: &'a str,
    protocol: &'static str,
    tls: Option<&'static str>,
    host: Option<Cow<'a, str>>,
    path: &'a str,
    status: u16,
    bytes: u64,
    request_bytes: u64,
    upstream: Option<&'a str>,
    upstream_status: Option<u16>,
    upstream_connect_ms: Option<Millis>,
    upstream_first_byte_ms: Option<Millis>,
    route: Option<&'a str>,
    policy: Option<&'static str>,
    referer: Option<Cow<'a, str>>,
    user_agent: Option<Cow<'a, str>>,
    request_id: Option<Cow<'a, str>>,
    duration_ms: Millis,
}

/// A duration as a number of milliseconds with microsecond precision (`12.345`).
struct Millis(Duration);

impl Serialize for Millis {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.0.as_micros() as f64 / 1000.0)
    }
}

fn json(r: &AccessRecord, bytes: u64, now: OffsetDateTime, out: &mut Vec<u8>) {
    // RFC 3339, UTC, milliseconds: what Elasticsearch, Loki and jq's `fromdate` family read.
    let mut time = [0u8; 24];
    rfc3339(&mut time[..], now, 3);
    let line = JsonLine {
        time: std::str::from_utf8(&time).unwrap_or(""),
        client_ip: client_ip(r),
        client_port: r.client.port(),
        method: r.method.as_str(),
        protocol: version_name(r.version),
        tls: r.tls_version,
        host: lossy(&r.host),
        path: path(r),
        status: r.status,
        bytes,
        request_bytes: r.request_body_bytes(),
        upstream: upstream(r),
        upstream_status: r.upstream_status,
        upstream_connect_ms: r.upstream_connect.map(Millis),
        upstream_first_byte_ms: r.upstream_first_byte.map(Millis),
        route: route(r),
        policy: r.policy,
        referer: lossy(&r.referer),
        user_agent: lossy(&r.user_agent),
        request_id: lossy(&r.request_id),
        duration_ms: Millis(r.start.elapsed()),
    };
    // Cannot fail: every key is a string and every value serialisable.
    let _ = serde_json::to_writer(&mut *out, &line);
}

// ---- combined ---------------------------------------------------------------------------

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

fn combined(r: &AccessRecord, bytes: u64, now: OffsetDateTime, out: &mut Vec<u8>) {
    // %h %l %u [%d/%b/%Y:%H:%M:%S %z]; porter logs in UTC, so %z is always +0000.
    let _ = write!(
        out,
        "{} - - [{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000] \"",
        client_ip(r),
        now.day(),
        MONTHS[usize::from(u8::from(now.month())) - 1],
        now.year(),
        now.hour(),
        now.minute(),
        now.second()
    );
    // "%r": the request line; HTTP/2 and HTTP/3 written as nginx writes them.
    quoted(out, r.method.as_str().as_bytes());
    out.push(b' ');
    quoted(out, path(r).as_bytes());
    out.extend_from_slice(match r.version {
        Version::HTTP_09 => b" HTTP/0.9",
        Version::HTTP_10 => b" HTTP/1.0",
        Version::HTTP_11 => b" HTTP/1.1",
        Version::HTTP_2 => b" HTTP/2.0",
        _ => b" HTTP/3.0",
    });
    // %>s %b: Apache's `-` for an empty body.
    let _ = write!(out, "\" {} ", r.status);
    match bytes {
        0 => out.push(b'-'),
        n => _ = write!(out, "{n}"),
    }
    out.extend_from_slice(b" \"");
    quoted_or_dash(out, r.referer.as_ref());
    out.extend_from_slice(b"\" \"");
    quoted_or_dash(out, r.user_agent.as_ref());
    out.push(b'"');
}

fn quoted_or_dash(out: &mut Vec<u8>, value: Option<&HeaderValue>) {
    match value {
        Some(v) => quoted(out, v.as_bytes()),
        None => out.push(b'-'),
    }
}

/// Bytes inside a quoted combined field: `"`, `\`, control and non-ASCII bytes as `\xHH` (nginx).
fn quoted(out: &mut Vec<u8>, value: &[u8]) {
    for &b in value {
        match b {
            b'"' | b'\\' => hex_escape(out, b),
            b' '..=0x7e => out.push(b),
            _ => hex_escape(out, b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_quotes_only_when_needed() {
        let mut out = Vec::new();
        field(&mut out, "a", Some(b"plain/value"));
        field(&mut out, "b", Some(b"two words"));
        field(&mut out, "c", Some(b"say \"hi\" \\ \x01\xff"));
        field(&mut out, "d", Some(b""));
        field(&mut out, "e", None);
        field(&mut out, "f", Some(b"k=v"));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#" a=plain/value b="two words" c="say \"hi\" \\ \x01\xFF" d="" e=- f="k=v""#
        );
    }

    #[test]
    fn combined_fields_cannot_end_early() {
        let mut out = Vec::new();
        quoted(&mut out, b"Mozilla \"5.0\" \\ \n\xc3\xa9");
        assert_eq!(String::from_utf8(out).unwrap(), r#"Mozilla \x225.0\x22 \x5C \x0A\xC3\xA9"#);
    }

    #[test]
    fn millis_keep_microseconds() {
        let mut out = Vec::new();
        millis_field(&mut out, "t", Some(Duration::from_micros(12_345)));
        millis_field(&mut out, "u", Some(Duration::from_micros(7)));
        assert_eq!(String::from_utf8(out).unwrap(), " t=12.345 u=0.007");
        assert_eq!(serde_json::to_string(&Millis(Duration::from_micros(12_345))).unwrap(), "12.345");
    }
}
