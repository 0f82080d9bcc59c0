//! Test helpers: certificates made at test time (rcgen, openssl for the
//! PKCS#1/SEC1 key encodings rcgen with ring cannot produce).

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, DnType, KeyPair};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

#[derive(Clone, Copy, Debug)]
pub(crate) enum KeyKind {
    EcPkcs8,
    EcSec1,
    RsaPkcs1,
}

fn params(names: &[&str], cn: Option<&str>, days: i64) -> CertificateParams {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut p = CertificateParams::new(names).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn.unwrap_or("porter test"));
    let at = |d: i64| {
        let t = if d >= 0 {
            SystemTime::now() + Duration::from_secs(d as u64 * 86_400)
        } else {
            SystemTime::now() - Duration::from_secs(d.unsigned_abs() * 86_400)
        };
        let (y, m, day) = super::civil_date(t);
        rcgen::date_time_ymd(y as i32, m as u8, day as u8)
    };
    p.not_before = at(-2);
    p.not_after = at(days);
    p
}

/// Self-signed EC P-256 certificate DER and its key.
pub(crate) fn make_cert(names: &[&str], cn: Option<&str>) -> (Vec<u8>, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let cert = params(names, cn, 90).self_signed(&key).unwrap();
    (cert.der().to_vec(), key)
}

/// (certificate PEM, key PEM) of the given kind, valid for `days`.
pub(crate) fn make_pem(names: &[&str], kind: KeyKind, days: i64) -> (String, String) {
    match kind {
        KeyKind::EcPkcs8 | KeyKind::EcSec1 => {
            let key = KeyPair::generate().unwrap();
            let cert = params(names, None, days).self_signed(&key).unwrap();
            let mut key_pem = key.serialize_pem();
            if matches!(kind, KeyKind::EcSec1) {
                key_pem = openssl(&["ec"], Some(&key_pem));
            }
            (cert.pem(), key_pem)
        }
        KeyKind::RsaPkcs1 => {
            let key_pem = openssl(&["genrsa", "-traditional", "2048"], None);
            let tmp = tempfile::NamedTempFile::new().unwrap();
            fs::write(tmp.path(), &key_pem).unwrap();
            let san: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
            let cert_pem = openssl(
                &[
                    "req",
                    "-new",
                    "-x509",
                    "-key",
                    tmp.path().to_str().unwrap(),
                    "-subj",
                    "/CN=porter test rsa",
                    "-days",
                    &days.to_string(),
                    "-addext",
                    &format!("subjectAltName={}", san.join(",")),
                ],
                None,
            );
            (cert_pem, key_pem)
        }
    }
}

fn openssl(args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl installed");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Writes a fresh certificate and key to the two paths (creating folders).
pub(crate) fn write_files(cert: &Path, key: &Path, names: &[&str], kind: KeyKind, days: i64) {
    let (c, k) = make_pem(names, kind, days);
    for (path, text) in [(cert, c), (key, k)] {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
}

/// `dir/STEM.crt` + `dir/STEM.key`.
pub(crate) fn write_pair(dir: &Path, stem: &str, names: &[&str], kind: KeyKind) {
    write_files(&dir.join(format!("{stem}.crt")), &dir.join(format!("{stem}.key")), names, kind, 90);
}

/// Accepts any server certificate: tests check *which* one was served.
#[derive(Debug)]
pub(crate) struct AcceptAny;

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    // The handshake signature is still checked, with porter's own provider's algorithms.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &super::provider().signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &super::provider().signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        super::provider().signature_verification_algorithms.supported_schemes()
    }
}

pub(crate) fn accept_any() -> Arc<AcceptAny> {
    Arc::new(AcceptAny)
}
