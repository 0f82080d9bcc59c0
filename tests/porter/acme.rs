//! `http.acme_webroot` (docs/deploy.md, Issue a certificate): a real ACME issuance end to end.
//! Debian's `pebble` ACME test server (with `pebble-challtestsrv` as its DNS, answering 127.0.0.1
//! for every name) and Debian's `lego` client in `--http.webroot` mode issue a certificate for
//! `porter-test.example`: pebble validates the HTTP-01 challenge by fetching it from porter's
//! plaintext listener, lego writes the certificate into porter's `certs/` folder (its own
//! `certificates/` layout), and porter serves it for that SNI within 5 s, without a restart.
//!
//! Needs the Debian packages `pebble` and `lego` (`.ci/run` installs them);
//! pebble is started by `pebble.rs`. Without them the test is skipped loudly,
//! except under `CI=true`, where it fails. porter's own ACME client is tested
//! in `acme_client.rs`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::pebble::{free_tcp_port, tools_or_skip, Pebble, PebbleOptions};
use crate::tls_client::{first_cert_der, served_leaf, wait_for_leaf};

const DOMAIN: &str = "porter-test.example";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_issuance_through_porter() {
    if tools_or_skip("acme::real_issuance_through_porter", &["pebble", "pebble-challtestsrv", "lego"]).is_none() {
        return;
    }
    let test_start = Instant::now();

    // porter: plaintext listener on a known port (pebble's `httpPort` must be
    // it), webroot inside the certs folder (hidden, so never scanned), redirects on.
    let backend = Backend::start("a").await;
    let http_port = free_tcp_port();
    let yaml = format!(
        "listen:\n  https: \"127.0.0.1:0\"\n  http: \"127.0.0.1:{http_port}\"\ntls:\n  certs: certs\n\
         http:\n  redirect: true\n  acme_webroot: certs/.acme\nupstreams:\n{}routes:\n  - upstream: web\n",
        upstream_block("web", &[(&backend, 1)])
    );
    let p = TestPorter::start(&yaml).await;
    let https = p.https.unwrap();
    let certs = p.certs_dir();
    let webroot = certs.join(".acme");
    std::fs::create_dir_all(&webroot).unwrap();
    let before = served_leaf(https, DOMAIN).await; // the generated self-signed fallback

    // pebble and its DNS, on 127.0.0.1 only.
    let pebble = Pebble::start(PebbleOptions { http_port, ..Default::default() }).await;
    let (acme_port, ca_pem) = (pebble.acme_port, pebble.ca_pem.clone());
    eprintln!("timing: porter, pebble and its DNS up after {:?}", test_start.elapsed());

    // lego, as an operator runs it: webroot = porter's acme_webroot, and its
    // output folder inside porter's certs folder.
    let lego_path = certs.join("lego");
    let mut lego = tokio::process::Command::new("lego");
    lego.args(["--server", &format!("https://127.0.0.1:{acme_port}/dir")])
        .args(["--email", &format!("admin@{DOMAIN}"), "--accept-tos", "--domains", DOMAIN, "--key-type", "ec256"])
        .arg("--http")
        .arg("--http.webroot")
        .arg(&webroot)
        .arg("--path")
        .arg(&lego_path)
        .arg("run")
        .env("LEGO_CA_CERTIFICATES", &ca_pem)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"] {
        lego.env_remove(var);
    }
    let issuing = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(180), lego.output())
        .await
        .unwrap_or_else(|_| panic!("lego did not finish within 180 s\n{}", pebble.logs()))
        .expect("lego runs");
    let issued_at = Instant::now();
    let lego_log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "lego failed:\n{lego_log}\n{}", pebble.logs());
    eprintln!("timing: issuance (lego run, HTTP-01 through porter) took {:?}", issued_at - issuing);
    assert!(lego_log.contains("The server validated our request"), "{lego_log}");

    // The certificate landed in porter's folder in lego's layout ...
    let crt = lego_path.join(format!("certificates/{DOMAIN}.crt"));
    let key = std::fs::read_to_string(lego_path.join(format!("certificates/{DOMAIN}.key"))).unwrap();
    assert!(key.starts_with("-----BEGIN EC PRIVATE KEY-----"), "lego writes SEC1 keys: {key}");
    let issued = first_cert_der(&crt);
    assert_ne!(issued, before);
    let (_, parsed) = x509_parser::parse_x509_certificate(&issued).unwrap();
    assert!(parsed.issuer().to_string().contains("Pebble"), "issued by pebble: {}", parsed.issuer());

    // ... and porter serves it for that SNI within 5 s, without a restart.
    wait_for_leaf(https, DOMAIN, &issued, Duration::from_secs(5), "certificate issued by lego").await;
    eprintln!("timing: porter served the issued certificate {:?} after lego exited", issued_at.elapsed());

    // A client that trusts only pebble's root accepts the chain porter serves.
    let root = pebble.issuing_root().await;
    let strict = http_client()
        .tls_built_in_root_certs(false)
        .add_root_certificate(root)
        .resolve(DOMAIN, https)
        .no_proxy()
        .build()
        .unwrap();
    let r = strict.get(format!("https://{DOMAIN}:{}/hello", https.port())).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().starts_with("a GET /hello"));

    // The webroot answered only challenges: everything else on port 80 redirects,
    // and a finished challenge (lego cleans up) is gone.
    let plain = client_for(p.http.unwrap(), &[DOMAIN]);
    let base = format!("http://{DOMAIN}:{http_port}");
    let r = plain.get(format!("{base}/hello")).send().await.unwrap();
    assert_eq!(r.status(), 301);
    let r = plain.get(format!("{base}/.well-known/acme-challenge/gone-token")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    p.stop().await;
    drop(pebble);
    eprintln!("timing: whole ACME test {:?}", test_start.elapsed());
}
