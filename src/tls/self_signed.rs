//! The quickstart fallback: a self-signed ECDSA P-256 certificate for
//! localhost, 127.0.0.1 and ::1, generated in memory (never written to disk,
//! so it never masquerades as a real certificate in the folder).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::load::cert_facts;
use super::{civil_date, CertStore, LoadedCert};

const VALID_DAYS: u64 = 365;

impl CertStore {
    /// A store holding only the generated localhost certificate. Empty (and
    /// an error logged) in the unlikely case key generation fails.
    pub fn self_signed_localhost() -> CertStore {
        match generate() {
            Ok(cert) => CertStore::build(vec![Arc::new(cert)], Vec::new()),
            Err(e) => {
                tracing::error!("cannot generate the self-signed certificate: {e}");
                CertStore::default()
            }
        }
    }
}

fn generate() -> Result<LoadedCert, String> {
    let err = |e: rcgen::Error| e.to_string();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err)?;
    let names = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
    let mut params = CertificateParams::new(names).map_err(err)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::OrganizationName, "porter self-signed");
    params.distinguished_name.push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    // A day of slack for clocks that lag behind.
    let now = SystemTime::now();
    let rcgen_date = |t| {
        let (y, m, d) = civil_date(t);
        rcgen::date_time_ymd(y as i32, m as u8, d as u8)
    };
    params.not_before = rcgen_date(now - Duration::from_secs(86_400));
    params.not_after = rcgen_date(now + Duration::from_secs(VALID_DAYS * 86_400));
    let cert = params.self_signed(&key).map_err(err)?;

    let der = cert.der().clone();
    let facts = cert_facts(&der)?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing_key = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key_der).map_err(|e| e.to_string())?;
    Ok(LoadedCert {
        name: "localhost".to_string(),
        dns_names: facts.dns_names,
        ip_addresses: facts.ip_addresses,
        certified_key: Arc::new(CertifiedKey::new(vec![der], signing_key)),
        issuer: facts.issuer,
        not_after: facts.not_after,
        cert_path: Default::default(),
        key_path: Default::default(),
        self_signed_fallback: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_fallback() {
        let store = CertStore::self_signed_localhost();
        assert!(store.is_fallback());
        let c = store.choose(None).unwrap();
        assert_eq!(c.dns_names, vec!["localhost"]);
        assert!(c.covers("localhost") && c.covers("127.0.0.1") && c.covers("[::1]"));
        assert!(!c.covers("example.com"));
        assert!(c.certified_key.keys_match().is_ok());
        assert!(c.cert_path.as_os_str().is_empty());
        assert!(c.days_left() >= 364);
        assert!(Arc::ptr_eq(store.by_sni("LOCALHOST").unwrap(), c));
    }
}
