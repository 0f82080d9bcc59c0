//! Raw schema -> `Config`: applies defaults, parses the string-typed values and
//! runs the cross-checks, each error pointing at the offending value.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_saphyr::Location;

use super::error::{describe_location, ConfigError};
use super::locate::join;
use super::raw::{RawAccessLog, RawAccessLogFormat, RawConfig, RawHttp, RawLimits, RawListen, RawRoute, RawTls, S};
use super::schema::{
    AccessLogConfig, AccessLogFormat, HttpConfig, Limits, Listen, PolicyConfig, RouteConfig, TlsConfig, TlsVersion,
    UpstreamConfig,
};
use super::units::{parse_duration, parse_size};
use super::values::{check_path, parse_listen_addr, parse_route_host, parse_tls_version};
use super::Config;

/// Whether a duration of zero is meaningful for a setting.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Zero {
    Allowed,
    Forbidden,
}

/// Builds errors for one file and parses the common value kinds.
pub(crate) struct Checker<'a> {
    pub file: &'a Path,
}

impl Checker<'_> {
    pub(super) fn err(&self, loc: Location, field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.file, loc, field, message)
    }

    /// Parses a spanned string with `parse`, attaching position and field on error.
    pub(super) fn value<T>(
        &self,
        raw: &S<String>,
        field: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        parse(&raw.value).map_err(|m| self.err(raw.referenced, field, m))
    }

    pub(super) fn duration(
        &self,
        raw: &Option<S<String>>,
        field: &str,
        default: Duration,
        zero: Zero,
    ) -> Result<Duration, ConfigError> {
        let Some(raw) = raw else { return Ok(default) };
        let value = self.value(raw, field, parse_duration)?;
        if zero == Zero::Forbidden && value.is_zero() {
            return Err(self.err(raw.referenced, field, "must be greater than 0"));
        }
        Ok(value)
    }

    fn size(&self, raw: &Option<S<String>>, field: &str, default: u64, zero: Zero) -> Result<u64, ConfigError> {
        let Some(raw) = raw else { return Ok(default) };
        let value = self.value(raw, field, parse_size)?;
        if zero == Zero::Forbidden && value == 0 {
            return Err(self.err(raw.referenced, field, "must be greater than 0"));
        }
        Ok(value)
    }
}

pub(crate) fn validate(mut raw: RawConfig, file: &Path, base_dir: &Path) -> Result<Config, ConfigError> {
    let check = Checker { file };
    // Checked in the order of docs/configuration.md's reference, the usual order of a file, so the first
    // error reported is usually the first in the file.
    let listen = listen(&check, raw.listen.as_ref())?;
    let tls = tls(&check, raw.tls.as_ref(), base_dir)?;
    let http = http(&check, raw.http.as_ref(), &listen, base_dir)?;
    let limits = limits(&check, raw.limits.as_ref())?;
    let shutdown_timeout =
        check.duration(&raw.shutdown_timeout, "shutdown_timeout", Duration::from_secs(30), Zero::Allowed)?;
    let access_log = access_log(&check, raw.access_log.as_ref(), base_dir)?;
    let rate_limit_store = match &raw.rate_limit_store {
        Some(store) => Some(super::rate_limit::store(&check, store)?),
        None => None,
    };
    let upstreams = match &raw.upstreams {
        Some(map) => super::upstream::upstreams(&check, &map.value, base_dir)?,
        None => BTreeMap::new(),
    };
    let policies = super::policy::named_policies(&check, raw.policies.as_ref(), base_dir)?;
    let routes = routes(&check, &mut raw.routes, &upstreams, &policies, base_dir)?;
    let acme = match &raw.acme {
        Some(acme) => Some(super::acme::acme(&check, acme, &listen, &routes, base_dir)?),
        None => None,
    };
    Ok(Config {
        listen,
        tls,
        http,
        limits,
        acme,
        shutdown_timeout,
        access_log,
        rate_limit_store,
        upstreams,
        routes,
        base_dir: base_dir.to_path_buf(),
    })
}

fn listen(check: &Checker, raw: Option<&S<RawListen>>) -> Result<Listen, ConfigError> {
    // No section at all: the quickstart defaults. A section lists exactly what to open.
    let Some(raw) = raw else { return Ok(Listen::default()) };
    let mut opened: Vec<(&str, SocketAddr, Location)> = Vec::new();
    let mut addr = |name: &'static str, value: &Option<S<String>>| -> Result<_, ConfigError> {
        let Some(value) = value else { return Ok(None) };
        let field = join("listen", name);
        let parsed = check.value(value, &field, parse_listen_addr)?;
        for (other, other_addr, other_loc) in &opened {
            if overlaps(parsed, *other_addr) {
                let msg = format!(
                    "{parsed} overlaps listen.{other} ({other_addr}, at {}): two listeners cannot share an address",
                    describe_location(*other_loc)
                );
                return Err(check.err(value.referenced, &field, msg));
            }
        }
        opened.push((name, parsed, value.referenced));
        Ok(Some(parsed))
    };
    let listen = Listen {
        https: addr("https", &raw.value.https)?,
        http: addr("http", &raw.value.http)?,
        admin: addr("admin", &raw.value.admin)?,
        proxy_protocol: raw.value.proxy_protocol.unwrap_or(false),
        trusted_proxies: match &raw.value.trusted_proxies {
            Some(list) => list
                .iter()
                .map(|entry| check.value(entry, "listen.trusted_proxies", super::Cidr::parse))
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        },
        http3: raw.value.http3.as_ref().is_some_and(|v| v.value),
    };
    if let (Some(http3), None) = (&raw.value.http3, listen.https) {
        if http3.value {
            let msg = "HTTP/3 is served on the https listener's address (UDP): set listen.https too";
            return Err(check.err(http3.referenced, "listen.http3", msg));
        }
    }
    if listen.https.is_none() && listen.http.is_none() {
        let msg = "at least one of listen.https and listen.http is required";
        return Err(check.err(raw.referenced, "listen", msg));
    }
    Ok(listen)
}

/// Would binding both fail? Port 0 asks the OS for a free port, so never.
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    let wildcard = |x: SocketAddr, y: SocketAddr| x.ip().is_unspecified() && x.is_ipv4() == y.is_ipv4();
    a.port() == b.port() && a.port() != 0 && (a.ip() == b.ip() || wildcard(a, b) || wildcard(b, a))
}

fn tls(check: &Checker, raw: Option<&RawTls>, base_dir: &Path) -> Result<TlsConfig, ConfigError> {
    let (certs, min_version, hsts) = match raw {
        Some(t) => (t.certs.as_ref(), t.min_version.as_ref(), t.hsts.as_ref()),
        None => (None, None, None),
    };
    let certs = match certs {
        Some(c) => resolve(check, c, "tls.certs", base_dir)?,
        None => base_dir.join("certs"),
    };
    let min_version = match min_version {
        Some(v) => check.value(v, "tls.min_version", parse_tls_version)?,
        None => TlsVersion::V1_2,
    };
    let hsts = match hsts {
        Some(h) => Some(check.value(h, "tls.hsts", |text| {
            // It is sent verbatim as a header value on every https response.
            match http::HeaderValue::from_str(text) {
                Ok(_) if !text.trim().is_empty() => Ok(text.to_string()),
                _ => Err(format!("\"{}\" is not a valid header value, like \"max-age=31536000\"", text.escape_debug())),
            }
        })?),
        None => None,
    };
    Ok(TlsConfig { certs, min_version, hsts })
}

fn http(check: &Checker, raw: Option<&RawHttp>, listen: &Listen, base_dir: &Path) -> Result<HttpConfig, ConfigError> {
    let redirect = match raw.and_then(|h| h.redirect.as_ref()) {
        Some(r) if r.value && listen.https.is_none() => {
            let msg = "redirect to https is on but there is no listen.https; set `redirect: false` to serve routes on plaintext";
            return Err(check.err(r.referenced, "http.redirect", msg));
        }
        Some(r) => r.value,
        // Redirecting to a listener that does not exist would break every request.
        None => listen.https.is_some(),
    };
    let acme_webroot = match raw.and_then(|h| h.acme_webroot.as_ref()) {
        Some(dir) => Some(resolve(check, dir, "http.acme_webroot", base_dir)?),
        None => None,
    };
    let redirect_port = match raw.and_then(|h| h.redirect_port.as_ref()) {
        Some(port) => match u16::try_from(port.value) {
            Ok(p) if p > 0 => Some(p),
            _ => {
                let msg = format!("{} is not a port: use 1 to 65535, like 443", port.value);
                return Err(check.err(port.referenced, "http.redirect_port", msg));
            }
        },
        None => None,
    };
    Ok(HttpConfig { redirect, redirect_port, acme_webroot })
}

fn access_log(check: &Checker, raw: Option<&RawAccessLog>, base_dir: &Path) -> Result<AccessLogConfig, ConfigError> {
    let Some(raw) = raw else { return Ok(AccessLogConfig::default()) };
    let path = match &raw.path {
        // `path: ""` means "no file": stderr (as the documented example writes it).
        Some(p) if p.value.is_empty() => None,
        Some(p) => {
            if p.value.ends_with('/') {
                return Err(check.err(
                    p.referenced,
                    "access_log.path",
                    "names a folder: give a file name, like \"/var/log/porter/access.log\"",
                ));
            }
            Some(base_dir.join(&p.value))
        }
        None => None,
    };
    let format = match raw.format {
        Some(RawAccessLogFormat::Text) | None => AccessLogFormat::Text,
        Some(RawAccessLogFormat::Json) => AccessLogFormat::Json,
        Some(RawAccessLogFormat::Combined) => AccessLogFormat::Combined,
    };
    Ok(AccessLogConfig { enabled: raw.enabled.unwrap_or(true), format, path })
}

/// A directory setting, relative to the config file's directory.
pub(crate) fn resolve(check: &Checker, raw: &S<String>, field: &str, base_dir: &Path) -> Result<PathBuf, ConfigError> {
    if raw.value.is_empty() {
        return Err(check.err(raw.referenced, field, "must not be empty"));
    }
    Ok(base_dir.join(&raw.value))
}

fn limits(check: &Checker, raw: Option<&RawLimits>) -> Result<Limits, ConfigError> {
    let defaults = Limits::default();
    let Some(raw) = raw else { return Ok(defaults) };
    let max_connections = match &raw.max_connections {
        Some(n) if n.value == 0 => {
            return Err(check.err(n.referenced, "limits.max_connections", "must be greater than 0"))
        }
        Some(n) => n.value,
        None => defaults.max_connections,
    };
    Ok(Limits {
        max_header_bytes: check.size(
            &raw.max_header_bytes,
            "limits.max_header_bytes",
            defaults.max_header_bytes,
            Zero::Forbidden,
        )?,
        // 0 is meaningful: no request bodies at all.
        max_body_bytes: check.size(
            &raw.max_body_bytes,
            "limits.max_body_bytes",
            defaults.max_body_bytes,
            Zero::Allowed,
        )?,
        header_read_timeout: check.duration(
            &raw.header_read_timeout,
            "limits.header_read_timeout",
            defaults.header_read_timeout,
            Zero::Forbidden,
        )?,
        idle_timeout: check.duration(
            &raw.idle_timeout,
            "limits.idle_timeout",
            defaults.idle_timeout,
            Zero::Forbidden,
        )?,
        body_timeout: check.duration(
            &raw.body_timeout,
            "limits.body_timeout",
            defaults.body_timeout,
            Zero::Forbidden,
        )?,
        max_connections,
        underscores_in_headers: raw
            .underscores_in_headers
            .as_ref()
            .map_or(defaults.underscores_in_headers, |b| b.value),
    })
}

fn routes(
    check: &Checker,
    raw: &mut S<Vec<S<RawRoute>>>,
    upstreams: &BTreeMap<String, UpstreamConfig>,
    policies: &BTreeMap<String, PolicyConfig>,
    base_dir: &Path,
) -> Result<Vec<RouteConfig>, ConfigError> {
    if raw.value.is_empty() {
        return Err(check.err(raw.referenced, "routes", "at least one route is required"));
    }
    let mut seen: HashMap<(Option<String>, String), (usize, Location)> = HashMap::new();
    let mut routes = Vec::with_capacity(raw.value.len());
    for (i, route) in raw.value.iter_mut().enumerate() {
        let prefix = format!("routes[{i}]");
        let r = &route.value;
        let host = match &r.host {
            Some(h) => Some(check.value(h, &join(&prefix, "host"), parse_route_host)?),
            None => None,
        };
        let path = match &r.path {
            Some(p) => {
                check.value(p, &join(&prefix, "path"), check_path)?;
                p.value.clone()
            }
            None => "/".to_string(),
        };
        let action = super::policy::action(check, route, &prefix, upstreams)?;
        if let Some((first, loc)) = seen.get(&(host.clone(), path.clone())) {
            let msg = format!(
                "duplicate route: routes[{first}] (at {}) has the same host and path, so this one would never match",
                describe_location(*loc)
            );
            return Err(check.err(route.referenced, &prefix, msg));
        }
        seen.insert((host.clone(), path.clone()), (i, route.referenced));
        let strip_prefix = route.value.strip_prefix.unwrap_or(false);
        let policy = super::policy::route_policy(check, &mut route.value, &prefix, policies, base_dir)?;
        routes.push(RouteConfig { host, path, action, strip_prefix, policy });
    }
    Ok(routes)
}
