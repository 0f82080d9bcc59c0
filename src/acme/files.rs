//! What ACME keeps on disk, all inside `tls.certs`:
//! - `certificates/DOMAIN.crt` (full chain), `DOMAIN.key`, `DOMAIN.issuer.crt`
//!   and `DOMAIN.json`: lego's layout, so the watcher serves them and lego can
//!   take over (or hand over) without a migration;
//! - `accounts/SERVER/EMAIL/account.json` (see `account.rs`);
//! - `.porter-acme/DOMAIN.lock` and `DOMAIN.state`: the order lock (`lock.rs`)
//!   and the last attempt's outcome, hidden so the certificate scan skips them.
//!
//! Every file is written whole to a hidden temporary name, then renamed over
//! the old one: a reader (the watcher, another instance) sees the old file or
//! the new one, never half of one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use instant_acme::CertificateIdentifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

pub(super) const STATE_DIR: &str = ".porter-acme";

pub(super) fn cert_path(certs: &Path, domain: &str) -> PathBuf {
    certs.join("certificates").join(format!("{domain}.crt"))
}

/// The certificate porter (or lego) left for a domain.
#[derive(Debug, Clone)]
pub(super) struct OnDisk {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// For ARI (RFC 9773): authority key identifier + serial; None without an AKI.
    pub ari_id: Option<CertificateIdentifier<'static>>,
}

/// The leaf of `certificates/DOMAIN.crt` with its key beside it, if it covers `domain`.
pub(super) fn read(certs: &Path, domain: &str) -> Option<OnDisk> {
    let path = cert_path(certs, domain);
    if !path.with_extension("key").is_file() {
        return None;
    }
    let leaf = CertificateDer::pem_file_iter(&path).ok()?.next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).ok()?;
    let covers = cert.subject_alternative_name().ok().flatten().is_some_and(|san| {
        san.value
            .general_names
            .iter()
            .any(|n| matches!(n, x509_parser::extensions::GeneralName::DNSName(d) if d.eq_ignore_ascii_case(domain)))
    });
    if !covers {
        return None;
    }
    let validity = cert.validity();
    Some(OnDisk {
        not_before: crate::tls::system_time_from_unix(validity.not_before.timestamp()),
        not_after: crate::tls::system_time_from_unix(validity.not_after.timestamp()),
        ari_id: CertificateIdentifier::try_from(&leaf).ok().map(CertificateIdentifier::into_owned),
    })
}

/// Writes a new certificate for `domain` in lego's layout.
pub(super) fn write_certificate(
    certs: &Path,
    domain: &str,
    chain_pem: &str,
    key_pem: &str,
    cert_url: &str,
) -> std::io::Result<()> {
    let dir = certs.join("certificates");
    std::fs::create_dir_all(&dir)?;
    // lego's DOMAIN.issuer.crt: the chain without the leaf.
    let issuer = match chain_pem.find("-----END CERTIFICATE-----") {
        Some(end) => chain_pem[end + "-----END CERTIFICATE-----".len()..].trim_start().to_string(),
        None => String::new(),
    };
    let json = format!(
        "{{\n  \"domain\": \"{domain}\",\n  \"certUrl\": \"{cert_url}\",\n  \"certStableUrl\": \"{cert_url}\"\n}}\n"
    );
    // Key first: between the two renames the watcher may see the new key with the
    // old chain, reports a mismatch once and keeps serving the old pair.
    write_atomic(&dir.join(format!("{domain}.key")), key_pem.as_bytes(), true)?;
    write_atomic(&dir.join(format!("{domain}.crt")), chain_pem.as_bytes(), false)?;
    write_atomic(&dir.join(format!("{domain}.issuer.crt")), issuer.as_bytes(), false)?;
    write_atomic(&dir.join(format!("{domain}.json")), json.as_bytes(), false)
}

/// Writes `bytes` to a hidden temporary file beside `path`, syncs, renames it over `path`.
pub(super) fn write_atomic(path: &Path, bytes: &[u8], secret: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}-{:x}", std::process::id(), fastrand::u64(..)));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        if secret {
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The outcome of the last attempt for a name, shared by every instance on the
/// folder (and read by `porter check`): `key=value` lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Recorded {
    /// Consecutive failed attempts.
    pub failures: u32,
    pub last_error: Option<String>,
    /// No attempt before this (unix milliseconds): the backoff holds for every
    /// instance on the folder and survives a restart.
    pub next_attempt_ms: Option<u64>,
}

pub(super) fn state_path(certs: &Path, domain: &str) -> PathBuf {
    certs.join(STATE_DIR).join(format!("{domain}.state"))
}

pub(super) fn read_recorded(certs: &Path, domain: &str) -> Recorded {
    let mut r = Recorded::default();
    let Ok(text) = std::fs::read_to_string(state_path(certs, domain)) else { return r };
    for line in text.lines() {
        match line.split_once('=') {
            Some(("failures", v)) => r.failures = v.parse().unwrap_or(0),
            Some(("last_error", v)) if !v.is_empty() => r.last_error = Some(v.to_string()),
            Some(("next_attempt_ms", v)) => r.next_attempt_ms = v.parse().ok(),
            _ => {}
        }
    }
    r
}

pub(super) fn write_recorded(certs: &Path, domain: &str, r: &Recorded) -> std::io::Result<()> {
    std::fs::create_dir_all(certs.join(STATE_DIR))?;
    let error = r.last_error.as_deref().unwrap_or("").replace(['\n', '\r'], " ");
    let next = r.next_attempt_ms.map(|n| n.to_string()).unwrap_or_default();
    let text = format!("failures={}\nlast_error={error}\nnext_attempt_ms={next}\n", r.failures);
    write_atomic(&state_path(certs, domain), text.as_bytes(), false)
}

impl Recorded {
    pub(super) fn next_attempt(&self) -> Option<SystemTime> {
        self.next_attempt_ms.map(|ms| SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms))
    }
}

pub(super) fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub(super) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_round_trip_and_atomic_write() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_recorded(dir.path(), "a.test"), Recorded::default());
        let r =
            Recorded { failures: 3, last_error: Some("CA said\nno".into()), next_attempt_ms: Some(1_900_000_000_000) };
        write_recorded(dir.path(), "a.test", &r).unwrap();
        let back = read_recorded(dir.path(), "a.test");
        assert_eq!(back.failures, 3);
        assert_eq!(back.last_error.as_deref(), Some("CA said no"));
        assert_eq!(back.next_attempt_ms, Some(1_900_000_000_000));
        // No temporary file is left behind.
        let names: Vec<_> =
            std::fs::read_dir(dir.path().join(STATE_DIR)).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["a.test.state"]);
    }
}
