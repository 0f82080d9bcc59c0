//! Reads one certificate/key pair: PEM parsing (rustls-pki-types `PemObject`),
//! key/certificate matching (rustls `CertifiedKey::keys_match`), and the facts
//! the rest of porter needs (names, issuer, expiry; x509-parser).

use std::fs;
use std::io::Read;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::sign::CertifiedKey;
use rustls::{Error as TlsError, InconsistentKeys};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;

use super::layouts::Pair;
use super::{system_time_from_unix, CertProblem, LoadedCert};

/// Certificate chains and keys are a few KiB; anything bigger is not ours.
const MAX_FILE_BYTES: u64 = 1 << 20;

pub(crate) enum LoadOutcome {
    Loaded(LoadedCert),
    /// Not a certificate file after all (a lone key, DH parameters, a CSR).
    Skipped,
    Problem(CertProblem),
}

/// What a certificate says about itself.
pub(crate) struct Facts {
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub issuer: String,
    pub not_after: SystemTime,
}

pub(crate) fn load_pair(pair: &Pair) -> LoadOutcome {
    match try_load(pair) {
        Ok(Some(cert)) => LoadOutcome::Loaded(cert),
        Ok(None) => LoadOutcome::Skipped,
        Err(p) => LoadOutcome::Problem(p),
    }
}

fn try_load(pair: &Pair) -> Result<Option<LoadedCert>, CertProblem> {
    let (cert_path, key_path) = (&pair.cert_path, &pair.key_path);
    let combined = cert_path == key_path;
    let cert_bytes = read_capped(cert_path)?;
    let chain = CertificateDer::pem_slice_iter(&cert_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertProblem::new(cert_path, pem_error(&e)))?;
    if chain.is_empty() {
        if combined {
            return Ok(None); // a lone PEM without a certificate is not for us
        }
        return Err(CertProblem::new(cert_path, "no certificate in file (expected a PEM \"BEGIN CERTIFICATE\" block)"));
    }

    let key = if combined {
        read_key(cert_path, &cert_bytes).map_err(|mut p| {
            if p.message.starts_with("no private key") {
                p.message = format!(
                    "no private key: put it in {}.key beside this file, or append it to this file",
                    pair.name.replace("*.", "_.")
                );
            }
            p
        })?
    } else {
        read_key(key_path, &read_capped(key_path)?)?
    };

    let facts =
        cert_facts(&chain[0]).map_err(|e| CertProblem::new(cert_path, format!("cannot parse certificate: {e}")))?;

    let signing_key = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key)
        .map_err(|e| CertProblem::new(key_path, format!("unusable private key: {e}")))?;
    let certified_key = CertifiedKey::new(chain, signing_key);
    match certified_key.keys_match() {
        // Unknown: the key type cannot expose its public key; rustls accepts that too.
        Ok(()) | Err(TlsError::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(TlsError::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            return Err(CertProblem::new(
                key_path,
                format!("private key does not match the certificate in {}", cert_path.display()),
            ))
        }
        Err(e) => return Err(CertProblem::new(cert_path, format!("cannot use certificate: {e}"))),
    }

    Ok(Some(LoadedCert {
        name: pair.name.clone(),
        dns_names: facts.dns_names,
        ip_addresses: facts.ip_addresses,
        certified_key: Arc::new(certified_key),
        issuer: facts.issuer,
        not_after: facts.not_after,
        cert_path: cert_path.clone(),
        key_path: key_path.clone(),
        self_signed_fallback: false,
    }))
}

/// Reads the whole file in one go (one consistent snapshot), refusing
/// anything too large to be a certificate or key.
fn read_capped(path: &Path) -> Result<Vec<u8>, CertProblem> {
    let cannot = |e: std::io::Error| CertProblem::new(path, format!("cannot read: {e}"));
    let file = fs::File::open(path).map_err(cannot)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(cannot)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(CertProblem::new(path, "file larger than 1 MiB; not a PEM file"));
    }
    Ok(bytes)
}

/// The first private key in the file: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
fn read_key(path: &Path, bytes: &[u8]) -> Result<PrivateKeyDer<'static>, CertProblem> {
    match PrivateKeyDer::from_pem_slice(bytes) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => {
            let encrypted = contains(bytes, b"ENCRYPTED PRIVATE KEY") || contains(bytes, b"Proc-Type: 4,ENCRYPTED");
            Err(CertProblem::new(
                path,
                if encrypted {
                    "private key is encrypted; porter needs it unencrypted \
                     (openssl pkey -in KEY -out KEY.plain)"
                } else {
                    "no private key in file (expected PEM \"PRIVATE KEY\", \
                     \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\")"
                },
            ))
        }
        Err(e) => Err(CertProblem::new(path, pem_error(&e))),
    }
}

/// pki-types prints the offending lines as byte arrays; show them as text.
fn pem_error(e: &pem::Error) -> String {
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    match e {
        pem::Error::MissingSectionEnd { end_marker } => {
            format!("not valid PEM: no \"-----END {}-----\" line (truncated file?)", text(end_marker))
        }
        pem::Error::IllegalSectionStart { line } => {
            format!("not valid PEM: malformed line \"{}\"", text(line))
        }
        other => format!("not valid PEM: {other}"),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// DNS names from the SAN, or from the CN only when the SAN has none
/// (RFC 6125 §6.4.4); IP SANs; issuer; expiry.
pub(crate) fn cert_facts(der: &[u8]) -> Result<Facts, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    let san = cert.subject_alternative_name().map_err(|e| format!("bad subjectAltName: {e}"))?;
    for name in san.iter().flat_map(|s| s.value.general_names.iter()) {
        match name {
            GeneralName::DNSName(n) => dns_names.push(normalise(n)),
            GeneralName::IPAddress(b) => {
                if let Ok(v4) = <[u8; 4]>::try_from(*b) {
                    ip_addresses.push(IpAddr::from(v4));
                } else if let Ok(v6) = <[u8; 16]>::try_from(*b) {
                    ip_addresses.push(IpAddr::from(v6));
                }
            }
            _ => {}
        }
    }
    if dns_names.is_empty() {
        dns_names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .filter(|cn| !cn.is_empty() && !cn.contains(char::is_whitespace))
                .filter(|cn| cn.parse::<IpAddr>().is_err())
                .map(normalise),
        );
    }
    dns_names.retain(|n| !n.is_empty());
    dns_names.dedup();
    Ok(Facts {
        dns_names,
        ip_addresses,
        issuer: cert.issuer().to_string(),
        not_after: system_time_from_unix(cert.validity().not_after.timestamp()),
    })
}

fn normalise(name: &str) -> String {
    let name = name.trim().to_ascii_lowercase();
    name.strip_suffix('.').map(str::to_string).unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    fn pair(dir: &Path, name: &str, cert: &str, key: &str) -> Pair {
        Pair { name: name.into(), cert_path: dir.join(cert), key_path: dir.join(key) }
    }

    fn loaded(p: &Pair) -> LoadedCert {
        match load_pair(p) {
            LoadOutcome::Loaded(c) => c,
            LoadOutcome::Skipped => panic!("skipped"),
            LoadOutcome::Problem(e) => panic!("{e}"),
        }
    }

    fn problem(p: &Pair) -> CertProblem {
        match load_pair(p) {
            LoadOutcome::Problem(e) => e,
            _ => panic!("expected a problem"),
        }
    }

    #[test]
    fn every_key_format_loads() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        for (stem, kind) in [("p8", KeyKind::EcPkcs8), ("sec1", KeyKind::EcSec1), ("rsa1", KeyKind::RsaPkcs1)] {
            let host = format!("{stem}.example.com");
            write_pair(d, stem, &[&host], kind);
            let key = fs::read_to_string(d.join(format!("{stem}.key"))).unwrap();
            let label = match kind {
                KeyKind::EcPkcs8 => "BEGIN PRIVATE KEY",
                KeyKind::EcSec1 => "BEGIN EC PRIVATE KEY",
                KeyKind::RsaPkcs1 => "BEGIN RSA PRIVATE KEY",
            };
            assert!(key.contains(label), "{stem}: {key}");
            let c = loaded(&pair(d, stem, &format!("{stem}.crt"), &format!("{stem}.key")));
            assert_eq!(c.dns_names, vec![host]);
            assert!(c.not_after > SystemTime::now());
        }
    }

    #[test]
    fn mismatched_key_names_both_files() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        write_pair(d, "a", &["a.test"], KeyKind::EcPkcs8);
        write_pair(d, "b", &["b.test"], KeyKind::EcPkcs8);
        let p = problem(&pair(d, "a", "a.crt", "b.key"));
        let text = p.to_string();
        assert!(text.contains("b.key") && text.contains("a.crt"), "{text}");
        assert!(text.contains("does not match"), "{text}");
    }

    #[test]
    fn corrupt_and_odd_files() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        write_pair(d, "a", &["a.test"], KeyKind::EcPkcs8);
        fs::write(d.join("junk.crt"), "-----BEGIN CERTIFICATE-----\n!!!\n").unwrap();
        assert!(problem(&pair(d, "junk", "junk.crt", "a.key")).message.contains("not valid PEM"));
        fs::write(d.join("empty.crt"), "").unwrap();
        assert!(problem(&pair(d, "empty", "empty.crt", "a.key")).message.contains("no certificate"));
        // Lone PEM: cert only -> problem; key only -> skipped; both -> loads.
        let p = problem(&pair(d, "a", "a.crt", "a.crt"));
        assert!(p.message.contains("a.key beside"), "{p}");
        assert!(matches!(load_pair(&pair(d, "a", "a.key", "a.key")), LoadOutcome::Skipped));
        let both = fs::read_to_string(d.join("a.crt")).unwrap() + &fs::read_to_string(d.join("a.key")).unwrap();
        fs::write(d.join("both.pem"), both).unwrap();
        assert_eq!(loaded(&pair(d, "both", "both.pem", "both.pem")).name, "both");
        let enc = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        fs::write(d.join("enc.key"), enc).unwrap();
        assert!(problem(&pair(d, "a", "a.crt", "enc.key")).message.contains("encrypted"));
        assert!(problem(&pair(d, "a", "a.crt", "gone.key")).message.contains("cannot read"));
    }

    #[test]
    fn facts_from_san_or_cn() {
        let (cert, _) = make_cert(&["WWW.Example.com", "*.example.com", "10.0.0.1"], None);
        let f = cert_facts(&cert).unwrap();
        assert_eq!(f.dns_names, vec!["www.example.com", "*.example.com"]);
        assert_eq!(f.ip_addresses, vec!["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert!(f.issuer.contains("porter test"), "{}", f.issuer);
        let (cert, _) = make_cert(&[], Some("cn-only.example.com"));
        assert_eq!(cert_facts(&cert).unwrap().dns_names, vec!["cn-only.example.com"]);
    }
}
