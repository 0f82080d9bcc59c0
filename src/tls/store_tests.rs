//! Scan and choice tests over real folders (certificates made with rcgen
//! and openssl at test time).

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::testutil::*;
use super::{load_or_fallback, CertStore};

fn names(store: &CertStore) -> Vec<&str> {
    store.certs().iter().map(|c| c.name.as_str()).collect()
}

fn chosen<'a>(store: &'a CertStore, sni: Option<&str>) -> &'a str {
    store.choose(sni).unwrap().name.as_str()
}

#[cfg(unix)]
fn certbot(root: &Path, domain: &str, gen: u32, names: &[&str]) {
    use std::os::unix::fs::symlink;
    let archive = root.join("archive").join(domain);
    let live = root.join("live").join(domain);
    fs::create_dir_all(&live).unwrap();
    write_files(
        &archive.join(format!("fullchain{gen}.pem")),
        &archive.join(format!("privkey{gen}.pem")),
        names,
        KeyKind::EcPkcs8,
        90,
    );
    // cert.pem/chain.pem/README must be ignored; copy the chain for realism.
    fs::copy(archive.join(format!("fullchain{gen}.pem")), archive.join(format!("cert{gen}.pem"))).unwrap();
    for f in ["fullchain", "privkey", "cert"] {
        let link = live.join(format!("{f}.pem"));
        let _ = fs::remove_file(&link);
        symlink(format!("../../archive/{domain}/{f}{gen}.pem"), link).unwrap();
    }
    fs::write(live.join("chain.pem"), "").unwrap();
    fs::write(root.join("live/README"), "certbot").unwrap();
}

#[cfg(unix)]
#[test]
fn every_layout_and_key_format() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write_pair(d, "flat.example.com", &["flat.example.com"], KeyKind::EcPkcs8);
    write_files(
        &d.join("sub/pem.example.com.pem"),
        &d.join("sub/pem.example.com.key"),
        &["pem.example.com"],
        KeyKind::EcSec1,
        90,
    );
    write_pair(d, "rsa.example.com", &["rsa.example.com"], KeyKind::RsaPkcs1);
    certbot(&d.join("letsencrypt"), "bot.example.com", 1, &["bot.example.com"]);
    let lego = d.join("lego/certificates");
    write_pair(&lego, "lego.example.com", &["lego.example.com"], KeyKind::EcPkcs8);
    fs::copy(lego.join("lego.example.com.crt"), lego.join("lego.example.com.issuer.crt")).unwrap();
    fs::write(lego.join("lego.example.com.json"), "{}").unwrap();
    write_pair(&lego, "_.wild.example.com", &["*.wild.example.com"], KeyKind::EcPkcs8);
    // Skipped quietly: hidden folder, key without certificate.
    write_pair(&d.join(".acme"), "hidden", &["hidden.example.com"], KeyKind::EcPkcs8);
    write_pair(d, "orphan", &["orphan.example.com"], KeyKind::EcPkcs8);
    fs::remove_file(d.join("orphan.crt")).unwrap();

    let (store, problems) = CertStore::scan(d, None);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        names(&store),
        [
            "*.wild.example.com",
            "bot.example.com",
            "flat.example.com",
            "lego.example.com",
            "pem.example.com",
            "rsa.example.com"
        ]
    );
    for c in store.certs() {
        let host = c.name.replace('*', "x");
        assert!(c.covers(&host), "{} does not cover {host}", c.name);
        assert!(Arc::ptr_eq(store.by_sni(&host).unwrap(), c));
    }
    let bot = store.by_sni("bot.example.com").unwrap();
    assert!(bot.cert_path.ends_with("live/bot.example.com/fullchain.pem"));
}

#[test]
fn exact_beats_wildcard_and_wildcard_is_one_label() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write_pair(d, "wild", &["*.example.com"], KeyKind::EcPkcs8);
    write_pair(d, "exact", &["a.example.com", "example.com"], KeyKind::EcPkcs8);
    let (store, _) = CertStore::scan(d, None);
    assert_eq!(chosen(&store, Some("a.example.com")), "exact");
    assert_eq!(chosen(&store, Some("A.Example.Com.")), "exact");
    assert_eq!(chosen(&store, Some("example.com")), "exact");
    assert_eq!(chosen(&store, Some("b.example.com")), "wild");
    assert!(store.by_sni("x.b.example.com").is_none());
    assert!(store.by_sni(".example.com").is_none());
    assert!(store.by_sni("other.org").is_none());
    let wild = store.by_sni("b.example.com").unwrap();
    assert!(wild.covers("zz.example.com"));
    assert!(!wild.covers("a.b.example.com") && !wild.covers("example.com"));
}

#[test]
fn default_then_first_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write_pair(d, "zeta", &["zeta.test"], KeyKind::EcPkcs8);
    write_pair(d, "beta", &["beta.test"], KeyKind::EcPkcs8);
    let (store, _) = CertStore::scan(d, None);
    assert_eq!(chosen(&store, None), "beta");
    assert_eq!(chosen(&store, Some("nomatch.test")), "beta");
    write_pair(d, "default", &["default.test"], KeyKind::EcPkcs8);
    let (store, _) = CertStore::scan(d, Some(&store));
    assert_eq!(chosen(&store, None), "default");
    assert_eq!(chosen(&store, Some("nomatch.test")), "default");
    assert_eq!(chosen(&store, Some("zeta.test")), "zeta");
    assert!(CertStore::default().choose(None).is_none());
}

#[test]
fn problems_beside_good_certs_and_last_good_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write_pair(d, "good", &["good.test"], KeyKind::EcPkcs8);
    write_pair(d, "other", &["other.test"], KeyKind::EcPkcs8);
    write_pair(d, "mismatch", &["mismatch.test"], KeyKind::EcPkcs8);
    fs::copy(d.join("other.key"), d.join("mismatch.key")).unwrap();
    fs::write(d.join("corrupt.crt"), "not a certificate").unwrap();
    fs::write(d.join("corrupt.key"), "not a key").unwrap();

    let (store, problems) = CertStore::scan(d, None);
    assert_eq!(names(&store), ["good", "other"]);
    let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(text.len(), 2, "{text:?}");
    assert!(text.iter().any(|t| t.contains("corrupt.crt")), "{text:?}");
    assert!(text.iter().any(|t| t.contains("mismatch.key") && t.contains("mismatch.crt")), "{text:?}");

    // Unchanged files are not reparsed: same Arcs.
    let (again, problems2) = CertStore::scan(d, Some(&store));
    assert_eq!(problems2, problems);
    assert!(Arc::ptr_eq(&again.certs()[0], &store.certs()[0]));

    // "good" breaks: its last good certificate stays, with a problem.
    let good = store.by_sni("good.test").unwrap().clone();
    fs::write(d.join("good.crt"), "-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap();
    let (broken, problems) = CertStore::scan(d, Some(&again));
    assert!(Arc::ptr_eq(broken.by_sni("good.test").unwrap(), &good));
    assert!(problems.iter().any(|p| p.path.ends_with("good.crt")));
    // ...also on the next scan, which remembers it (no reparse).
    let (still, _) = CertStore::scan(d, Some(&broken));
    assert!(Arc::ptr_eq(still.by_sni("good.test").unwrap(), &good));
    // Without a previous store, the broken pair is simply skipped.
    let (fresh, _) = CertStore::scan(d, None);
    assert!(fresh.by_sni("good.test").is_none());

    // Removed files disappear, even with a good previous.
    fs::remove_file(d.join("good.crt")).unwrap();
    fs::remove_file(d.join("other.crt")).unwrap();
    let (gone, _) = CertStore::scan(d, Some(&still));
    assert!(gone.is_empty(), "{:?}", names(&gone));
}

#[cfg(unix)]
#[test]
fn certbot_symlink_swap_is_picked_up() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    certbot(d, "x.org", 1, &["x.org"]);
    let (first, problems) = CertStore::scan(d, None);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(first.by_sni("x.org").unwrap().dns_names, ["x.org"]);
    certbot(d, "x.org", 2, &["x.org", "www.x.org"]);
    let (second, problems) = CertStore::scan(d, Some(&first));
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(names(&second), ["x.org"]);
    assert_eq!(second.by_sni("x.org").unwrap().dns_names, ["x.org", "www.x.org"]);

    // A dangling link is a problem; the last good certificate stays.
    fs::remove_file(d.join("archive/x.org/fullchain2.pem")).unwrap();
    let (third, problems) = CertStore::scan(d, Some(&second));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].message.contains("cannot read"));
    assert!(Arc::ptr_eq(third.by_sni("www.x.org").unwrap(), second.by_sni("www.x.org").unwrap()));
}

#[test]
fn newest_copy_wins_for_a_shared_name() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write_files(&d.join("a-old.crt"), &d.join("a-old.key"), &["a.test"], KeyKind::EcPkcs8, 10);
    write_files(&d.join("a-new.crt"), &d.join("a-new.key"), &["a.test"], KeyKind::EcPkcs8, 80);
    let (store, _) = CertStore::scan(d, None);
    assert_eq!(chosen(&store, Some("a.test")), "a-new");
}

#[test]
fn missing_or_empty_folder_falls_back() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    let (store, problems) = CertStore::scan(&missing, None);
    assert!(store.is_empty());
    assert_eq!(problems.len(), 1);
    assert!(problems[0].to_string().starts_with(&missing.display().to_string()));

    let (store, problems) = load_or_fallback(&missing);
    assert_eq!(problems.len(), 1);
    assert!(store.is_fallback());
    assert_eq!(chosen(&store, Some("anything.test")), "localhost");

    let (store, problems) = load_or_fallback(tmp.path());
    assert!(problems.is_empty() && store.is_fallback());
    write_pair(tmp.path(), "real", &["real.test"], KeyKind::EcPkcs8);
    let (store, _) = load_or_fallback(tmp.path());
    assert!(!store.is_fallback());
    assert_eq!(names(&store), ["real"]);
}

/// Cost of the periodic rescan: `cargo test scan_cost -- --ignored --nocapture`.
#[cfg(unix)]
#[test]
#[ignore]
fn scan_cost() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for i in 0..25 {
        write_pair(d, &format!("site{i:02}.example.com"), &[&format!("site{i:02}.example.com")], KeyKind::EcPkcs8);
        certbot(&d.join("letsencrypt"), &format!("bot{i:02}.example.com"), 1, &[&format!("bot{i:02}.example.com")]);
    }
    let t = Instant::now();
    let (store, problems) = CertStore::scan(d, None);
    let cold = t.elapsed();
    assert_eq!(store.certs().len(), 50);
    assert!(problems.is_empty());
    let rounds = 200;
    let t = Instant::now();
    let mut current = store;
    for _ in 0..rounds {
        let (next, _) = CertStore::scan(d, Some(&current));
        assert!(next.same_files_as(&current));
        current = next;
    }
    let warm = t.elapsed() / rounds;
    eprintln!("50 certs: first scan (parse all) {cold:?}; unchanged rescan {warm:?}");
}
