//! Live reload: a cheap periodic rescan (stat only; see `store`) instead of
//! an OS file watcher. It sees certbot's symlink swaps, editors' rename
//! dances, network and container volumes alike, with no extra crate; the
//! cost of one scan is measured in `store_tests::scan_cost`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::{describe, format_date, warn_fallback, CertProblem, CertResolver, CertStore, LoadedCert};

/// What the reloader remembers between scans (kept in the resolver so the
/// watcher and SIGHUP share it).
#[derive(Debug, Default)]
pub(crate) struct ReloadState {
    /// Folder-level problems already logged. `None` before the first
    /// rescan: the start-up scan's problems were printed by the caller.
    dir_problems: Option<Vec<CertProblem>>,
}

/// Rescans `dir` every `every` (1 s is a good value; changes must be
/// served within 5 s) and swaps the resolver's store when files changed.
pub(crate) fn spawn_watcher(dir: PathBuf, resolver: Arc<CertResolver>, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(50)));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate; start-up just scanned
        loop {
            tick.tick().await;
            let (dir, resolver) = (dir.clone(), resolver.clone());
            // File IO stays off the async workers.
            if let Err(e) = tokio::task::spawn_blocking(move || reload_now(&dir, &resolver)).await {
                tracing::error!("certificate rescan failed: {e}");
            }
        }
    })
}

/// Rescans now (SIGHUP, or the watcher's tick). Broken files are logged
/// once per change and skipped, keeping their last good certificate; the
/// self-signed fallback is served only while the folder has no certificate.
pub(crate) fn reload_now(dir: &Path, resolver: &CertResolver) {
    let mut state = resolver.reload.lock().unwrap_or_else(PoisonError::into_inner);
    let current = resolver.store();
    let scan = CertStore::scan_detailed(dir, Some(&current));

    for problem in &scan.fresh_problems {
        tracing::warn!("certificate skipped: {problem}");
    }
    if let Some(logged) = &state.dir_problems {
        for problem in scan.dir_problems.iter().filter(|p| !logged.contains(p)) {
            tracing::warn!("certificate folder: {problem}");
        }
    }
    state.dir_problems = Some(scan.dir_problems);

    let new = scan.store;
    if new.same_files_as(&current) {
        return;
    }
    let new = if new.is_empty() {
        if !current.is_fallback() {
            warn_fallback(dir);
        }
        new.into_fallback(Some(&current))
    } else {
        new
    };
    log_changes(&current, &new);
    resolver.replace(new);
}

fn log_changes(old: &CertStore, new: &CertStore) {
    if old.is_fallback() && !new.is_fallback() {
        tracing::info!("certificates found; the self-signed fallback is no longer served");
    }
    let key = |c: &Arc<LoadedCert>| (c.cert_path.clone(), c.key_path.clone());
    let real = |s: &CertStore| -> HashMap<(PathBuf, PathBuf), Arc<LoadedCert>> {
        s.certs().iter().filter(|c| !c.self_signed_fallback).map(|c| (key(c), c.clone())).collect()
    };
    let before = real(old);
    let after = real(new);
    for cert in new.certs().iter().filter(|c| !c.self_signed_fallback) {
        match before.get(&key(cert)) {
            None => tracing::info!("certificate added: {}", describe(cert)),
            Some(prev) if Arc::ptr_eq(prev, cert) => {}
            Some(prev) if leaf(prev) == leaf(cert) => {
                tracing::debug!(name = %cert.name, "certificate files touched, content unchanged");
            }
            Some(prev) => {
                tracing::info!("certificate renewed (was expiring {}): {}", format_date(prev.not_after), describe(cert))
            }
        }
    }
    for cert in old.certs().iter().filter(|c| !c.self_signed_fallback) {
        if !after.contains_key(&key(cert)) {
            tracing::info!(
                "certificate removed: {} ({}), was expiring {}",
                cert.name,
                cert.dns_names.join(", "),
                format_date(cert.not_after)
            );
        }
    }
}

fn leaf(c: &LoadedCert) -> Option<&[u8]> {
    c.certified_key.cert.first().map(|d| d.as_ref())
}

#[cfg(test)]
mod tests {
    use super::super::load_or_fallback;
    use super::super::testutil::*;
    use super::*;
    use std::fs;
    use std::time::Instant;

    async fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
        let start = Instant::now();
        while !ok() {
            assert!(start.elapsed() < Duration::from_secs(5), "not within 5 s: {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("{what}: {:?}", start.elapsed());
    }

    fn names(r: &CertResolver) -> Vec<String> {
        r.store().certs().iter().map(|c| c.name.clone()).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watcher_follows_the_folder() {
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().to_path_buf();
        let (store, problems) = load_or_fallback(&d);
        assert!(problems.is_empty());
        assert!(store.is_fallback());
        let fallback = store.certs()[0].clone();
        let resolver = CertResolver::new(store);
        let watcher = spawn_watcher(d.clone(), resolver.clone(), Duration::from_secs(1));

        // A broken file alone: still the same fallback certificate.
        fs::write(d.join("bad.crt"), "garbage").unwrap();
        fs::write(d.join("bad.key"), "garbage").unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(Arc::ptr_eq(&resolver.store().certs()[0], &fallback));

        write_pair(&d, "new.example.com", &["new.example.com"], KeyKind::EcPkcs8);
        wait_until("new cert served", || names(&resolver) == ["new.example.com"]).await;
        assert!(!resolver.store().is_fallback());

        // Renewal in place.
        let before = resolver.chosen(Some("new.example.com")).unwrap();
        write_pair(&d, "new.example.com", &["new.example.com", "www.new.example.com"], KeyKind::EcPkcs8);
        wait_until("renewal served", || resolver.chosen(Some("www.new.example.com")).unwrap().dns_names.len() == 2)
            .await;

        // Broken renewal: the last good one stays.
        fs::write(d.join("new.example.com.crt"), "-----BEGIN CERTIFICATE-----\n").unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(names(&resolver), ["new.example.com"]);
        assert!(!Arc::ptr_eq(&resolver.chosen(None).unwrap(), &before));

        // Removed: back to a (new) self-signed fallback.
        fs::remove_file(d.join("new.example.com.crt")).unwrap();
        fs::remove_file(d.join("new.example.com.key")).unwrap();
        wait_until("removal seen", || resolver.store().is_fallback()).await;
        watcher.abort();
    }

    #[cfg(unix)]
    #[test]
    fn reload_now_follows_certbot_symlink_swap() {
        use std::os::unix::fs::symlink;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let archive = root.join("archive/x.org");
        let live = root.join("live/x.org");
        fs::create_dir_all(&live).unwrap();
        write_files(&archive.join("fullchain1.pem"), &archive.join("privkey1.pem"), &["x.org"], KeyKind::EcPkcs8, 5);
        symlink("../../archive/x.org/fullchain1.pem", live.join("fullchain.pem")).unwrap();
        symlink("../../archive/x.org/privkey1.pem", live.join("privkey.pem")).unwrap();
        let (store, problems) = load_or_fallback(root);
        assert!(problems.is_empty(), "{problems:?}");
        let resolver = CertResolver::new(store);
        let old = resolver.chosen(Some("x.org")).unwrap();
        eprintln!("{}", describe(&old));
        assert!(describe(&old).contains("EXPIRES IN"), "{}", describe(&old));

        write_files(
            &archive.join("fullchain2.pem"),
            &archive.join("privkey2.pem"),
            &["x.org", "www.x.org"],
            KeyKind::EcPkcs8,
            90,
        );
        // certbot replaces each link atomically: new link, then rename.
        for (name, target) in [("fullchain", "fullchain2"), ("privkey", "privkey2")] {
            let tmp_link = live.join(format!("{name}.pem.new"));
            symlink(format!("../../archive/x.org/{target}.pem"), &tmp_link).unwrap();
            fs::rename(&tmp_link, live.join(format!("{name}.pem"))).unwrap();
        }
        reload_now(root, &resolver);
        let new = resolver.chosen(Some("www.x.org")).unwrap();
        assert_eq!(new.name, "x.org");
        assert!(!describe(&new).contains("EXPIRES IN"));
        assert_eq!(resolver.store().certs().len(), 1);
    }
}
