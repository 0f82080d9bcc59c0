//! docs/configuration.md, Certificates and Routing (421), at the edge, end to end through a real
//! porter: protocol versions (TLS 1.0/1.1 refused with a real OpenSSL client; `min_version:
//! "1.3"`), HSTS, the 421 rule with HTTP/2 connection coalescing, and the certs folder as users
//! fill it (certbot, lego, PKCS#1 and SEC1 keys from OpenSSL, broken files) including `porter
//! check`. Live reload under load is in `tls_reload.rs`, the TLS clients in `tls_client.rs`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::harness::*;
use crate::tls_client::*;

// ---------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------

/// A throwaway CA, so chains look like real ones (leaf + intermediate).
pub(crate) struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub(crate) fn new(cn: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let issuer = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
        TestCa { issuer }
    }

    /// (fullchain PEM, key PEM, leaf DER) for `names`.
    pub(crate) fn issue(&self, names: &[&str]) -> (String, String, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.signed_by(&key, &*self.issuer).unwrap();
        (cert.pem() + &self.issuer.pem(), key.serialize_pem(), cert.der().to_vec())
    }
}

/// A self-signed certificate for `names` expiring `days` from now (rcgen `not_after`).
fn expiring_cert(dir: &Path, stem: &str, names: &[&str], days: u64) -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    params.not_after = rcgen::date_time_ymd(1970, 1, 1) + (now + Duration::from_secs(days * 86_400));
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join(format!("{stem}.crt")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{stem}.key")), key.serialize_pem()).unwrap();
    cert.der().to_vec()
}

pub(crate) fn write(path: &Path, text: impl AsRef<[u8]>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Runs `openssl ARGS`, asserting success; returns stdout.
fn openssl(args: &[&str]) -> String {
    let out =
        std::process::Command::new("openssl").args(args).stdin(Stdio::null()).output().expect("openssl installed");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A self-signed certificate for `name` made by OpenSSL with an existing key file.
fn openssl_cert(key: &Path, cert: &Path, name: &str) -> Vec<u8> {
    openssl(&[
        "req",
        "-new",
        "-x509",
        "-key",
        key.to_str().unwrap(),
        "-subj",
        &format!("/CN={name}"),
        "-days",
        "30",
        "-addext",
        &format!("subjectAltName=DNS:{name}"),
        "-out",
        cert.to_str().unwrap(),
    ]);
    first_cert_der(cert)
}

// ---------------------------------------------------------------------------
// Porter set-ups
// ---------------------------------------------------------------------------

fn config(extra: &str, backend: &Backend) -> String {
    format!(
        "{}{extra}upstreams:\n{}routes:\n  - upstream: web\n",
        listen_block(),
        upstream_block("web", &[(backend, 1)])
    )
}

pub(crate) async fn porter_with(dir: tempfile::TempDir, extra: &str) -> (TestPorter, Backend) {
    let backend = Backend::start("a").await;
    let yaml = config(extra, &backend);
    (TestPorter::start_in(dir, &yaml).await, backend)
}

pub(crate) fn certs_tempdir() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    (dir, certs)
}

// ---------------------------------------------------------------------------
// 2. Protocol versions
// ---------------------------------------------------------------------------

/// `openssl s_client` against porter with one protocol flag (`-tls1`, ...).
/// Returns (success, stdout + stderr). OpenSSL's security level is lowered to
/// 0 so that OpenSSL itself is willing to offer TLS 1.0/1.1: any refusal is
/// porter's.
pub(crate) async fn s_client(addr: SocketAddr, sni: &str, flag: &str) -> (bool, String) {
    let out = tokio::process::Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), "-servername", sni, flag, "-cipher", "DEFAULT@SECLEVEL=0"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .expect("s_client finished")
        .expect("openssl installed");
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[tokio::test]
async fn tls_1_0_and_1_1_are_refused() {
    let (dir, certs) = certs_tempdir();
    write_cert(&certs, "site.example.com", &["site.example.com"]);
    let (p, _b) = porter_with(dir, "").await;
    let addr = p.https.unwrap();
    for flag in ["-tls1", "-tls1_1"] {
        let (ok, text) = s_client(addr, "site.example.com", flag).await;
        assert!(!ok, "{flag} handshake succeeded:\n{text}");
        // The refusal is porter's: an alert came back from the server (OpenSSL
        // prints "SSL alert number N" only for alerts it received), and no
        // cipher was agreed.
        assert!(text.contains("SSL alert number"), "{flag}: no alert from porter:\n{text}");
        assert!(text.contains("Cipher is (NONE)"), "{flag}:\n{text}");
    }
    // The same client and flags otherwise work: 1.2 and 1.3 are accepted.
    for (flag, proto) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let (ok, text) = s_client(addr, "site.example.com", flag).await;
        assert!(ok, "{flag} refused:\n{text}");
        assert!(text.contains(&format!("New, {proto}, Cipher is")), "{flag}:\n{text}");
    }
    p.stop().await;
}

#[tokio::test]
async fn min_version_1_3_refuses_tls_1_2() {
    let (dir, certs) = certs_tempdir();
    write_cert(&certs, "site.example.com", &["site.example.com"]);
    let (p, _b) = porter_with(dir, "").await;
    let url = format!("https://site.example.com:{}/", p.https.unwrap().port());
    // Baseline: the default (1.2) accepts a TLS 1.2-only client.
    let tls12_client = || {
        http_client()
            .danger_accept_invalid_certs(true)
            .max_tls_version(reqwest::tls::Version::TLS_1_2)
            .resolve("site.example.com", p.https.unwrap())
            .no_proxy()
            .build()
            .unwrap()
    };
    assert_eq!(tls12_client().get(&url).send().await.unwrap().status(), 200);
    p.stop().await;

    let (dir, certs) = certs_tempdir();
    write_cert(&certs, "site.example.com", &["site.example.com"]);
    let (p, _b) = porter_with(dir, "  min_version: \"1.3\"\n").await;
    let addr = p.https.unwrap();
    let url = format!("https://site.example.com:{}/", addr.port());
    let tls12_client = http_client()
        .danger_accept_invalid_certs(true)
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .resolve("site.example.com", addr)
        .no_proxy()
        .build()
        .unwrap();
    let err = tls12_client.get(&url).send().await.expect_err("a TLS 1.2-only client must be refused");
    assert!(err.is_connect(), "{err:?}");
    let rustls12 = tls_connect(addr, "site.example.com", tls_config(&[&rustls::version::TLS12], &[b"http/1.1"])).await;
    let err = rustls12.expect_err("TLS 1.2 handshake must fail");
    assert!(err.to_string().contains("ProtocolVersion"), "refused with a protocol_version alert: {err}");
    let (ok, text) = s_client(addr, "site.example.com", "-tls1_2").await;
    assert!(!ok && text.contains("SSL alert number"), "openssl -tls1_2:\n{text}");

    // TLS 1.3 works.
    let tls13 =
        tls_connect(addr, "site.example.com", tls_config(&[&rustls::version::TLS13], &[b"http/1.1"])).await.unwrap();
    assert_eq!(tls13.get_ref().1.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
    let r = client_for(addr, &["site.example.com"]).get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (ok, text) = s_client(addr, "site.example.com", "-tls1_3").await;
    assert!(ok, "openssl -tls1_3:\n{text}");
    p.stop().await;
}

// ---------------------------------------------------------------------------
// 3. HSTS
// ---------------------------------------------------------------------------

#[tokio::test]
async fn hsts_on_https_only_and_only_when_set() {
    const HSTS: &str = "max-age=31536000; includeSubDomains";
    let (dir, certs) = certs_tempdir();
    write_cert(&certs, "site.example.com", &["site.example.com"]);
    let extra = format!("  hsts: \"{HSTS}\"\nhttp:\n  redirect: false\n");
    let (p, _b) = porter_with(dir, &extra).await;
    let c = client_for(p.https.unwrap(), &["site.example.com"]);
    let https = format!("https://site.example.com:{}", p.https.unwrap().port());

    let r = c.get(format!("{https}/page")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.headers()["strict-transport-security"], HSTS);
    let r = c.get(format!("{https}/x")).version(reqwest::Version::HTTP_11).send().await.unwrap();
    assert_eq!(r.headers()["strict-transport-security"], HSTS, "HTTP/1.1 over TLS too");

    // Plaintext answers never carry it (RFC 6797 §7.2), proxied or not.
    let plain = client_for(p.http.unwrap(), &["site.example.com"]);
    let r = plain.get(format!("http://site.example.com:{}/page", p.http.unwrap().port())).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("strict-transport-security").is_none(), "{:?}", r.headers());
    p.stop().await;

    // Redirecting plaintext listener: no HSTS on the redirect either.
    let (dir, certs) = certs_tempdir();
    write_cert(&certs, "site.example.com", &["site.example.com"]);
    let (p, _b) = porter_with(dir, &format!("  hsts: \"{HSTS}\"\n")).await;
    let plain = client_for(p.http.unwrap(), &["site.example.com"]);
    let r = plain.get(format!("http://site.example.com:{}/page", p.http.unwrap().port())).send().await.unwrap();
    assert_eq!(r.status(), 301);
    assert!(r.headers().get("strict-transport-security").is_none());
    p.stop().await;

    // Not configured: absent on https.
    let (dir, certs) = certs_tempdir();
    write_cert(&certs, "site.example.com", &["site.example.com"]);
    let (p, _b) = porter_with(dir, "").await;
    let c = client_for(p.https.unwrap(), &["site.example.com"]);
    let r = c.get(format!("https://site.example.com:{}/page", p.https.unwrap().port())).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("strict-transport-security").is_none());
    p.stop().await;
}

// ---------------------------------------------------------------------------
// 4. The 421 rule with HTTP/2 connection coalescing
// ---------------------------------------------------------------------------

#[tokio::test]
async fn http2_coalescing_is_served_and_other_certificates_get_421() {
    let (dir, certs) = certs_tempdir();
    let ab = write_cert(&certs, "ab", &["a.example.com", "b.example.com"]);
    write_cert(&certs, "c.example.com", &["c.example.com"]);
    write_cert(&certs, "wild", &["*.w.example.com"]);
    let (p, backend) = porter_with(dir, "").await;
    let addr = p.https.unwrap();
    let port = addr.port();

    // One HTTP/2 connection with SNI a.example.com, as a browser opens it ...
    let tls = tls_connect(addr, "a.example.com", tls_config(&TLS12_AND_13, &[b"h2"])).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(peer_leaf(&tls), ab);
    let (mut h2, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let mut get = |authority: String| {
        let request = hyper::Request::get(format!("https://{authority}/who")).body(Empty::<Bytes>::new()).unwrap();
        let sent = h2.send_request(request);
        async move {
            let r = sent.await.unwrap();
            let status = r.status().as_u16();
            let body = String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
            (status, body)
        }
    };
    let (status, body) = get(format!("a.example.com:{port}")).await;
    assert_eq!(status, 200, "{body}");
    // ... then reused for b.example.com, which the same certificate covers: served.
    let (status, body) = get(format!("b.example.com:{port}")).await;
    assert_eq!(status, 200, "coalesced request refused: {body}");
    assert_eq!(echoed_header(&body, "host"), [format!("b.example.com:{port}")]);
    // c.example.com has a certificate of its own: 421, so the client reconnects with SNI c.
    let (status, _) = get(format!("c.example.com:{port}")).await;
    assert_eq!(status, 421);
    // The connection survives the 421 and keeps serving its own names.
    let (status, _) = get(format!("a.example.com:{port}")).await;
    assert_eq!(status, 200);
    assert_eq!(backend.requests(), 3, "the 421 never reached a backend");

    // Wildcard: one connection for x.w.example.com serves y.w.example.com.
    let tls = tls_connect(addr, "x.w.example.com", tls_config(&TLS12_AND_13, &[b"h2"])).await.unwrap();
    let (mut h2, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    for (host, want) in [("y.w.example.com", 200), ("a.example.com", 421)] {
        let request = hyper::Request::get(format!("https://{host}:{port}/")).body(Empty::<Bytes>::new()).unwrap();
        assert_eq!(h2.send_request(request).await.unwrap().status(), want, "{host} on SNI x.w.example.com");
    }
    p.stop().await;
}

// ---------------------------------------------------------------------------
// 5. The certs folder as users fill it; `porter check`
// ---------------------------------------------------------------------------

#[cfg(unix)]
#[tokio::test]
async fn every_layout_and_key_format_end_to_end() {
    use std::os::unix::fs::symlink;
    let (dir, certs) = certs_tempdir();
    let ca = TestCa::new("porter test CA");

    // certbot: live/DOMAIN/*.pem symlinked into archive/DOMAIN/*N.pem.
    let le = certs.join("letsencrypt");
    let (chain, key, certbot) = ca.issue(&["certbot.example.com"]);
    let archive = le.join("archive/certbot.example.com");
    write(&archive.join("fullchain1.pem"), &chain);
    write(&archive.join("privkey1.pem"), key);
    write(&archive.join("cert1.pem"), chain.split_inclusive("-----END CERTIFICATE-----").next().unwrap());
    write(&archive.join("chain1.pem"), ca.issuer.pem());
    let live = le.join("live/certbot.example.com");
    std::fs::create_dir_all(&live).unwrap();
    for name in ["fullchain", "privkey", "cert", "chain"] {
        symlink(format!("../../archive/certbot.example.com/{name}1.pem"), live.join(format!("{name}.pem"))).unwrap();
    }
    write(&le.join("live/README"), "This directory contains your keys and certificates.\n");

    // lego: certificates/DOMAIN.crt (bundle) + .key + .issuer.crt + .json.
    let lego = certs.join("lego/certificates");
    let (chain, key, lego_der) = ca.issue(&["lego.example.com"]);
    write(&lego.join("lego.example.com.crt"), chain);
    write(&lego.join("lego.example.com.key"), key);
    write(&lego.join("lego.example.com.issuer.crt"), ca.issuer.pem());
    write(&lego.join("lego.example.com.json"), "{\"domain\": \"lego.example.com\"}\n");
    // lego names a wildcard certificate `_.DOMAIN`; exact names still beat it.
    let (chain, key, wildcard) = ca.issue(&["*.example.com"]);
    write(&lego.join("_.example.com.crt"), chain);
    write(&lego.join("_.example.com.key"), key);

    // PKCS#1 RSA key and SEC1 EC key, made by OpenSSL as users make them.
    let rsa_key = certs.join("rsa.example.com.key");
    write(&rsa_key, openssl(&["genrsa", "-traditional", "2048"]));
    assert!(std::fs::read_to_string(&rsa_key).unwrap().starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let rsa = openssl_cert(&rsa_key, &certs.join("rsa.example.com.crt"), "rsa.example.com");
    let ec_key = certs.join("ec.example.com.key");
    write(&ec_key, openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-noout"]));
    assert!(std::fs::read_to_string(&ec_key).unwrap().starts_with("-----BEGIN EC PRIVATE KEY-----"));
    let ec = openssl_cert(&ec_key, &certs.join("ec.example.com.crt"), "ec.example.com");

    // Expiring in 3 days, a key that belongs to another certificate, a corrupt file.
    let soon = expiring_cert(&certs, "soon.example.com", &["soon.example.com"], 3);
    let default = write_cert(&certs, "default", &["default.example.com"]);
    let mismatch = write_cert(&certs, "mismatch", &["mismatch.example.net"]);
    write_cert(&certs, "other", &["other.example.com"]);
    std::fs::copy(certs.join("other.key"), certs.join("mismatch.key")).unwrap();
    std::fs::remove_file(certs.join("other.crt")).unwrap();
    std::fs::remove_file(certs.join("other.key")).unwrap();
    write(&certs.join("corrupt.crt"), "-----BEGIN CERTIFICATE-----\nMIIB!!not base64!!\n-----END CERTIFICATE-----\n");
    write(&certs.join("corrupt.key"), "garbage\n");

    let (p, _b) = porter_with(dir, "").await;
    let addr = p.https.unwrap();
    for (sni, want) in [
        ("certbot.example.com", &certbot),
        ("lego.example.com", &lego_der),
        ("anything.example.com", &wildcard),
        ("rsa.example.com", &rsa),
        ("ec.example.com", &ec),
        ("soon.example.com", &soon),
        ("default.example.com", &default),
        ("mismatch.example.net", &default),
        ("unknown.example.org", &default),
    ] {
        assert_eq!(&served_leaf(addr, sni).await, want, "certificate for SNI {sni}");
        let r = client_for(addr, &[sni]).get(format!("https://{sni}:{}/", addr.port())).send().await.unwrap();
        assert_eq!(r.status(), 200, "{sni}");
    }
    assert_ne!(mismatch, default);

    // `porter check`: each certificate with names, issuer, expiry; the mismatch
    // names both files; the corrupt file is named; exit 1.
    let config_path = p.dir.path().join("porter.yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_porter"))
        .arg("check")
        .arg("--config")
        .arg(&config_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{all}");
    let line = |needle: &str| -> &str {
        stdout.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no line with {needle}:\n{stdout}"))
    };
    let errors: Vec<&str> = stdout.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 2, "{stdout}");
    let mismatch_line = line("does not match");
    assert!(mismatch_line.contains("ERROR"), "{mismatch_line}");
    assert!(mismatch_line.contains("mismatch.key") && mismatch_line.contains("mismatch.crt"), "{mismatch_line}");
    assert!(line("corrupt.").contains("ERROR"), "{stdout}");
    for (name, issuer) in [
        ("certbot.example.com", "CN=porter test CA"),
        ("lego.example.com", "CN=porter test CA"),
        ("*.example.com", "CN=porter test CA"),
        ("rsa.example.com", "CN=rsa.example.com"),
        ("ec.example.com", "CN=ec.example.com"),
        ("soon.example.com", "issuer: "),
        ("default.example.com", "issuer: "),
    ] {
        let l = line(&format!(": {name}"));
        assert!(l.contains(&format!("issuer: {}", issuer.trim_start_matches("issuer: "))), "{l}");
        assert!(l.contains(" | expires "), "{l}");
        if name == "soon.example.com" {
            assert!(l.contains("EXPIRES IN 2 DAYS") || l.contains("EXPIRES IN 3 DAYS"), "{l}");
        } else {
            assert!(!l.contains("EXPIRES IN"), "{l}");
        }
    }
    p.stop().await;
}
