//! Upstream sections: balancer, servers, health and passive checks, timeouts, pool,
//! and the TLS trust for `https://` servers (a `ca_file` is read here, so a
//! missing or empty bundle is a config error with its position).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

use super::error::ConfigError;
use super::locate::join;
use super::raw::{
    RawBalance, RawHealthCheck, RawPassive, RawPool, RawSameSite, RawServer, RawSticky, RawTimeouts, RawUpstream,
    RawUpstreamTls, SpannedMap, S,
};
use super::schema::{
    Balance, CaBundle, HealthCheckConfig, PassiveConfig, PoolConfig, SameSite, ServerConfig, StickyConfig,
    TimeoutsConfig, UpstreamConfig, UpstreamTls, MAX_WEIGHT,
};
use super::validate::{Checker, Zero};
use super::values::{check_path, parse_cookie_name, parse_hash_on, parse_server_url};

pub(crate) fn upstreams(
    check: &Checker,
    raw: &SpannedMap<S<RawUpstream>>,
    base_dir: &Path,
) -> Result<BTreeMap<String, UpstreamConfig>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, upstream) in &raw.0 {
        let prefix = join("upstreams", &name.value);
        // Names show up in routes, logs and metric labels: keep them plain.
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if name.value.is_empty() || !name.value.chars().all(plain) {
            let msg = format!("invalid upstream name {:?}: use letters, digits, '-', '_' and '.'", name.value);
            return Err(check.err(name.referenced, &prefix, msg));
        }
        out.insert(name.value.clone(), upstream_config(check, &prefix, upstream, base_dir)?);
    }
    Ok(out)
}

fn upstream_config(
    check: &Checker,
    prefix: &str,
    raw: &S<RawUpstream>,
    base_dir: &Path,
) -> Result<UpstreamConfig, ConfigError> {
    let u = &raw.value;
    let field = |name: &str| join(prefix, name);
    let balance = match &u.balance {
        Some(b) => match b.value {
            RawBalance::WeightedRoundRobin => Balance::WeightedRoundRobin,
            RawBalance::LeastConnections => Balance::LeastConnections,
            RawBalance::PowerOfTwo => Balance::PowerOfTwo,
            RawBalance::ConsistentHash => Balance::ConsistentHash,
        },
        None => Balance::WeightedRoundRobin,
    };
    let hash_on = match (&u.hash_on, balance) {
        (Some(h), Balance::ConsistentHash) => Some(check.value(h, &field("hash_on"), parse_hash_on)?),
        (Some(h), other) => {
            let msg = format!("hash_on only applies to `balance: consistent_hash` (this upstream uses {other})");
            return Err(check.err(h.referenced, &field("hash_on"), msg));
        }
        (None, Balance::ConsistentHash) => {
            // `balance` is set here, since it is not the default.
            let at = u.balance.as_ref().map_or(raw.referenced, |b| b.referenced);
            let msg = "consistent_hash needs `hash_on`: client_ip, header:NAME or cookie:NAME";
            return Err(check.err(at, &field("balance"), msg));
        }
        (None, _) => None,
    };
    let servers = servers(check, &field("servers"), &u.servers)?;
    let tls = match &u.tls {
        Some(t) => upstream_tls(check, &field("tls"), t, &servers, base_dir)?,
        None => UpstreamTls::default(),
    };
    Ok(UpstreamConfig {
        balance,
        hash_on,
        servers,
        health_check: match &u.health_check {
            Some(h) => Some(health_check(check, &field("health_check"), h)?),
            None => None,
        },
        passive: passive(check, &field("passive"), u.passive.as_ref())?,
        timeouts: timeouts(check, &field("timeouts"), u.timeouts.as_ref())?,
        retries: u.retries.unwrap_or(2),
        pool: pool(check, &field("pool"), u.pool.as_ref())?,
        http2: u.http2.unwrap_or(false),
        tls,
        sticky: match &u.sticky {
            Some(s) => Some(sticky(check, &field("sticky"), s)?),
            None => None,
        },
    })
}

fn sticky(check: &Checker, prefix: &str, raw: &S<RawSticky>) -> Result<StickyConfig, ConfigError> {
    let s = &raw.value;
    let defaults = StickyConfig::default();
    let field = |name: &str| join(prefix, name);
    let cookie = match &s.cookie {
        Some(c) => check.value(c, &field("cookie"), parse_cookie_name)?,
        None => defaults.cookie,
    };
    // An empty string means a session cookie (docs/configuration.md, Sticky sessions).
    let max_age = match s.max_age.as_ref().filter(|m| !m.value.is_empty()) {
        Some(m) => Some(check.duration(&Some(m.clone()), &field("max_age"), Duration::ZERO, Zero::Forbidden)?),
        None => None,
    };
    let same_site = match s.same_site.as_ref().map(|s| s.value) {
        Some(RawSameSite::Lax) | None => SameSite::Lax,
        Some(RawSameSite::Strict) => SameSite::Strict,
        Some(RawSameSite::None) => SameSite::None,
    };
    Ok(StickyConfig {
        cookie,
        max_age,
        secure: s.secure.unwrap_or(defaults.secure),
        http_only: s.http_only.unwrap_or(defaults.http_only),
        same_site,
    })
}

fn upstream_tls(
    check: &Checker,
    prefix: &str,
    raw: &S<RawUpstreamTls>,
    servers: &[ServerConfig],
    base_dir: &Path,
) -> Result<UpstreamTls, ConfigError> {
    let field = |name: &str| join(prefix, name);
    // An empty string means "not set", as in the documented example.
    let set = |v: &Option<S<String>>| v.as_ref().filter(|s| !s.value.is_empty()).cloned();
    let any_set = set(&raw.value.ca_file).is_some() || set(&raw.value.server_name).is_some();
    if any_set && !servers.iter().any(|s| s.url.scheme == crate::config::Scheme::Https) {
        // Most likely an http:// URL that was meant to be https://: say so rather than ignore it.
        return Err(check.err(raw.referenced, prefix, "tls applies to https:// servers and this upstream has none"));
    }
    let ca = match set(&raw.value.ca_file) {
        Some(file) => Some(read_ca(check, &field("ca_file"), &file, base_dir)?),
        None => None,
    };
    let server_name = match set(&raw.value.server_name) {
        Some(name) => {
            let value = name.value.trim_end_matches('.').to_ascii_lowercase();
            if ServerName::try_from(value.as_str()).is_err() {
                let msg = format!("{:?} is not a valid DNS name or IP address", name.value);
                return Err(check.err(name.referenced, &field("server_name"), msg));
            }
            Some(value)
        }
        None => None,
    };
    Ok(UpstreamTls { ca, server_name })
}

/// Reads every certificate of a PEM bundle; at least one is required.
fn read_ca(check: &Checker, field: &str, raw: &S<String>, base_dir: &Path) -> Result<CaBundle, ConfigError> {
    let path = base_dir.join(&raw.value);
    let text = std::fs::read(&path)
        .map_err(|e| check.err(raw.referenced, field, format!("cannot read {}: {e}", path.display())))?;
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(&text) {
        match cert {
            Ok(cert) => certs.push(cert),
            Err(e) => {
                let msg = format!("{} is not a valid PEM certificate bundle: {e}", path.display());
                return Err(check.err(raw.referenced, field, msg));
            }
        }
    }
    if certs.is_empty() {
        let msg = format!("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display());
        return Err(check.err(raw.referenced, field, msg));
    }
    Ok(CaBundle { path, certs: certs.into() })
}

fn servers(check: &Checker, prefix: &str, raw: &S<Vec<S<RawServer>>>) -> Result<Vec<ServerConfig>, ConfigError> {
    if raw.value.is_empty() {
        return Err(check.err(raw.referenced, prefix, "an upstream needs at least one server"));
    }
    let mut servers = Vec::with_capacity(raw.value.len());
    for (i, server) in raw.value.iter().enumerate() {
        let item = format!("{prefix}[{i}]");
        let url = check.value(&server.value.url, &join(&item, "url"), parse_server_url)?;
        let weight = match &server.value.weight {
            Some(w) if w.value > u64::from(MAX_WEIGHT) => {
                let msg = format!("weight {} is above the maximum of {MAX_WEIGHT}", w.value);
                return Err(check.err(w.referenced, &join(&item, "weight"), msg));
            }
            Some(w) => w.value as u32, // <= MAX_WEIGHT, checked above
            None => 1,
        };
        servers.push(ServerConfig { url, weight });
    }
    // Every weight 0 is valid: the whole upstream is drained (docs/configuration.md, Draining), its requests get 503.
    Ok(servers)
}

fn health_check(check: &Checker, prefix: &str, raw: &S<RawHealthCheck>) -> Result<HealthCheckConfig, ConfigError> {
    let h = &raw.value;
    let defaults = HealthCheckConfig::default();
    let field = |name: &str| join(prefix, name);
    let path = match &h.path {
        Some(p) => {
            check.value(p, &field("path"), check_path)?;
            p.value.clone()
        }
        None => defaults.path,
    };
    let interval = check.duration(&h.interval, &field("interval"), defaults.interval, Zero::Forbidden)?;
    let timeout = check.duration(&h.timeout, &field("timeout"), defaults.timeout, Zero::Forbidden)?;
    if timeout >= interval {
        // Point at whichever of the two was written (the timeout if both were).
        let (at, name) = match (&h.timeout, &h.interval) {
            (Some(t), _) => (t.referenced, "timeout"),
            (None, Some(i)) => (i.referenced, "interval"),
            (None, None) => (raw.referenced, "timeout"),
        };
        let msg = format!("health check timeout ({timeout:?}) must be shorter than its interval ({interval:?})");
        return Err(check.err(at, &field(name), msg));
    }
    let at_least_one = |raw: &Option<S<u32>>, name: &str, default: u32| match raw {
        Some(n) if n.value == 0 => Err(check.err(n.referenced, &field(name), "must be at least 1")),
        Some(n) => Ok(n.value),
        None => Ok(default),
    };
    Ok(HealthCheckConfig {
        path,
        interval,
        timeout,
        unhealthy_after: at_least_one(&h.unhealthy_after, "unhealthy_after", defaults.unhealthy_after)?,
        healthy_after: at_least_one(&h.healthy_after, "healthy_after", defaults.healthy_after)?,
    })
}

fn passive(check: &Checker, prefix: &str, raw: Option<&RawPassive>) -> Result<PassiveConfig, ConfigError> {
    let defaults = PassiveConfig::default();
    let Some(p) = raw else { return Ok(defaults) };
    let max_failures = p.max_failures.unwrap_or(defaults.max_failures);
    // With passive checks off (max_failures: 0) the cooldown is never used.
    let zero = if max_failures == 0 { Zero::Allowed } else { Zero::Forbidden };
    Ok(PassiveConfig {
        max_failures,
        cooldown: check.duration(&p.cooldown, &join(prefix, "cooldown"), defaults.cooldown, zero)?,
    })
}

fn timeouts(check: &Checker, prefix: &str, raw: Option<&RawTimeouts>) -> Result<TimeoutsConfig, ConfigError> {
    let defaults = TimeoutsConfig::default();
    let Some(t) = raw else { return Ok(defaults) };
    Ok(TimeoutsConfig {
        connect: check.duration(&t.connect, &join(prefix, "connect"), defaults.connect, Zero::Forbidden)?,
        response_header: check.duration(
            &t.response_header,
            &join(prefix, "response_header"),
            defaults.response_header,
            Zero::Forbidden,
        )?,
        read: check.duration(&t.read, &join(prefix, "read"), defaults.read, Zero::Forbidden)?,
        send: check.duration(&t.send, &join(prefix, "send"), defaults.send, Zero::Forbidden)?,
    })
}

fn pool(check: &Checker, prefix: &str, raw: Option<&RawPool>) -> Result<PoolConfig, ConfigError> {
    let defaults = PoolConfig::default();
    let Some(p) = raw else { return Ok(defaults) };
    Ok(PoolConfig {
        max_idle_per_server: p.max_idle_per_server.unwrap_or(defaults.max_idle_per_server),
        idle_timeout: check.duration(
            &p.idle_timeout,
            &join(prefix, "idle_timeout"),
            defaults.idle_timeout,
            Zero::Forbidden,
        )?,
    })
}
