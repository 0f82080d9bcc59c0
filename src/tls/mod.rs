//! TLS certificate store (docs/configuration.md, Certificates): finds certificate/key pairs in the
//! certs folder, indexes them by DNS name for SNI, serves them to rustls through an atomically
//! swapped store, and reloads them when files change.
//!
//! Layout of this module:
//! - `layouts`: which files pair with which (flat, certbot, lego).
//! - `load`: PEM parsing, key matching, certificate facts.
//! - `store`: the immutable index and the (incremental) scan.
//! - `provider`: the aws-lc-rs crypto provider, post-quantum kx first.
//! - `resolver`: rustls `ResolvesServerCert` and the `ServerConfig`.
//! - `watch`: periodic rescan, SIGHUP reload, change logging.
//! - `self_signed`: the in-memory localhost fallback.
//! - `challenges`: the ACME challenge answers `acme` publishes while an order is open;
//!   the resolver (TLS-ALPN-01) and the http listener (HTTP-01) serve them.
//! - `sni`: the certificate the SNI names, handed to the client's TLS stream (`net::tls_stream`).

pub(crate) mod challenges;
mod layouts;
mod load;
mod provider;
mod resolver;
mod self_signed;
pub(crate) mod sni;
mod store;
mod watch;

#[cfg(test)]
mod store_tests;
#[cfg(test)]
pub(crate) mod testutil;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use provider::provider;
pub(crate) use resolver::{quic_server_config, server_config, CertResolver};
pub use store::CertStore;
pub(crate) use watch::{reload_now, spawn_watcher};

/// Below this many days before expiry, `describe` shouts.
pub(crate) const EXPIRY_WARNING_DAYS: u64 = 14;

/// One usable certificate chain with its key, and the facts about it that
/// logs, `porter check`, `/status` and the 421 rule need.
#[derive(Debug)]
pub struct LoadedCert {
    /// File stem ("example.com"), certbot/lego DOMAIN, or "localhost" for
    /// the generated fallback. A cert named "default" is served when SNI
    /// matches nothing.
    pub name: String,
    /// Lowercased DNS names from the SAN (or the CN when the SAN has none);
    /// may contain wildcards like "*.example.com".
    pub dns_names: Vec<String>,
    /// IP addresses from the SAN (SNI never carries an IP, but a Host header
    /// can, so `covers` checks them).
    pub ip_addresses: Vec<IpAddr>,
    pub certified_key: Arc<rustls::sign::CertifiedKey>,
    pub issuer: String,
    pub not_after: SystemTime,
    /// Paths as found in the folder (symlinks not resolved). Empty for the
    /// generated self-signed certificate; equal when one PEM holds both.
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub self_signed_fallback: bool,
}

impl LoadedCert {
    /// Whether this certificate is valid for `host` (already lowercased, no
    /// port). Exact match, or a one-label wildcard per RFC 6125:
    /// "*.example.com" covers "a.example.com" but neither "a.b.example.com"
    /// nor "example.com". IP literals (optionally in brackets) match IP SANs.
    pub fn covers(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.is_empty() {
            return false;
        }
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return self.ip_addresses.contains(&ip);
        }
        self.dns_names.iter().any(|name| name_covers(name, host))
    }

    /// Days until `not_after` (negative once expired), rounded down.
    pub fn days_left(&self) -> i64 {
        days_until(self.not_after, SystemTime::now())
    }
}

/// `name` is a certificate DNS name, `host` a lowercased host name.
pub(crate) fn name_covers(name: &str, host: &str) -> bool {
    if name == host {
        return true;
    }
    match name.strip_prefix("*.") {
        // The wildcard stands for exactly one non-empty label.
        Some(suffix) => match host.split_once('.') {
            Some((label, rest)) => !label.is_empty() && rest == suffix,
            None => false,
        },
        None => false,
    }
}

/// Something wrong with a file (or the folder); never fatal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertProblem {
    pub path: PathBuf,
    pub message: String,
}

impl CertProblem {
    pub(crate) fn new(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        CertProblem { path: path.into(), message: message.into() }
    }
}

impl fmt::Display for CertProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for CertProblem {}

/// Scan `dir`; if it holds no usable certificate, warn loudly and return the
/// in-memory self-signed localhost certificate instead (quickstart path).
/// The problems are returned for the caller to print (start log or `check`).
pub(crate) fn load_or_fallback(dir: &Path) -> (CertStore, Vec<CertProblem>) {
    let (scanned, problems) = CertStore::scan(dir, None);
    if !scanned.is_empty() {
        return (scanned, problems);
    }
    warn_fallback(dir);
    (scanned.into_fallback(None), problems)
}

pub(crate) fn warn_fallback(dir: &Path) {
    tracing::warn!(
        dir = %dir.display(),
        "NO TLS CERTIFICATE FOUND in {}: serving a generated SELF-SIGNED certificate for \
         localhost. Browsers will warn. Put NAME.crt + NAME.key (or certbot/lego output) \
         in that folder; it is picked up within seconds.",
        dir.display()
    );
}

/// One line for `porter check` and the start log.
pub fn describe(cert: &LoadedCert) -> String {
    let names = if cert.dns_names.is_empty() && cert.ip_addresses.is_empty() {
        "(no DNS names)".to_string()
    } else {
        let ips = cert.ip_addresses.iter().map(|ip| ip.to_string());
        cert.dns_names.iter().cloned().chain(ips).collect::<Vec<_>>().join(", ")
    };
    let days = cert.days_left();
    let mut line = format!(
        "{}: {} | issuer: {} | expires {} ({})",
        cert.name,
        names,
        cert.issuer,
        format_date(cert.not_after),
        if days >= 0 { format!("in {days} days") } else { format!("{} days ago", -days) }
    );
    if days < 0 {
        line.push_str(&format!(" | EXPIRED {} DAYS AGO", -days));
    } else if (days as u64) < EXPIRY_WARNING_DAYS {
        line.push_str(&format!(" | EXPIRES IN {days} DAYS"));
    }
    if cert.self_signed_fallback {
        line.push_str(" | self-signed fallback, generated in memory");
    } else if cert.cert_path == cert.key_path {
        line.push_str(&format!(" | {}", cert.cert_path.display()));
    } else {
        line.push_str(&format!(" | {} + {}", cert.cert_path.display(), cert.key_path.display()));
    }
    line
}

fn days_until(t: SystemTime, now: SystemTime) -> i64 {
    const DAY: u64 = 86_400;
    match t.duration_since(now) {
        Ok(d) => (d.as_secs() / DAY) as i64,
        // Past: round towards "more days ago" so 1 s late reads as expired.
        Err(e) => -(e.duration().as_secs().div_ceil(DAY) as i64),
    }
}

/// Converts seconds since the epoch (from x509 time) to `SystemTime`.
pub(crate) fn system_time_from_unix(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// "YYYY-MM-DD" (UTC) without pulling a date crate.
pub(crate) fn format_date(t: SystemTime) -> String {
    let (y, m, d) = civil_date(t);
    format!("{y:04}-{m:02}-{d:02}")
}

/// (year, month, day) in UTC; Howard Hinnant's days-to-civil algorithm.
pub(crate) fn civil_date(t: SystemTime) -> (i64, u32, u32) {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_is_one_label() {
        assert!(name_covers("*.example.com", "a.example.com"));
        assert!(!name_covers("*.example.com", "a.b.example.com"));
        assert!(!name_covers("*.example.com", "example.com"));
        assert!(!name_covers("*.example.com", ".example.com"));
        assert!(name_covers("example.com", "example.com"));
        assert!(!name_covers("example.com", "www.example.com"));
    }

    #[test]
    fn dates() {
        assert_eq!(format_date(UNIX_EPOCH), "1970-01-01");
        assert_eq!(format_date(system_time_from_unix(951_782_400)), "2000-02-29");
        assert_eq!(format_date(system_time_from_unix(4_102_444_799)), "2099-12-31");
        assert_eq!(format_date(system_time_from_unix(-86_400)), "1969-12-31");
        let now = SystemTime::now();
        assert_eq!(days_until(now + Duration::from_secs(86_400 * 3 + 5), now), 3);
        assert_eq!(days_until(now - Duration::from_secs(5), now), -1);
    }
}
