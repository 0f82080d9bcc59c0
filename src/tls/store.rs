//! The immutable certificate index and the scan that builds it.
//!
//! A scan lists the candidate pairs (`layouts`), stats their files, and
//! reparses only pairs whose stamp (size, mtime, ctime, inode of the symlink
//! target) differs from the previous store's; so a periodic rescan of an
//! unchanged folder costs a directory walk and two stats per pair. The
//! previous store also supplies the last good certificate for a pair whose
//! files are now broken.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use super::layouts::{find_pairs, Pair};
use super::load::{load_pair, LoadOutcome};
use super::{CertProblem, LoadedCert};

/// Immutable: built by a scan, then swapped in whole by `CertResolver`.
#[derive(Debug, Default)]
pub struct CertStore {
    certs: Vec<Arc<LoadedCert>>,
    exact: HashMap<String, usize>,
    /// "*.example.com" stored under "example.com".
    wildcard: HashMap<String, usize>,
    default: Option<usize>,
    /// What the last scan saw, for cheap rescans and last-good.
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pair: Pair,
    stamp: Stamp,
    outcome: Outcome,
}

#[derive(Debug, Clone)]
enum Outcome {
    Good(Arc<LoadedCert>),
    Broken { problem: CertProblem, kept: Option<Arc<LoadedCert>> },
    Skipped,
}

/// Change detector for one pair: `None` where the file cannot be stat'ed
/// (e.g. a dangling symlink), so that state too is "unchanged" next time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    cert: Option<FileStamp>,
    key: Option<FileStamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    /// Inode and ctime catch a certbot symlink swap even when the new target
    /// has the same size and mtime.
    #[cfg(unix)]
    id: (u64, u64, i64, i64),
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        // Follows symlinks: the target is what gets served.
        let m = fs::metadata(path).ok()?;
        #[cfg(unix)]
        let id = {
            use std::os::unix::fs::MetadataExt;
            (m.dev(), m.ino(), m.ctime(), m.ctime_nsec())
        };
        Some(FileStamp {
            len: m.len(),
            modified: m.modified().ok(),
            #[cfg(unix)]
            id,
        })
    }
}

impl Stamp {
    fn of(pair: &Pair) -> Stamp {
        let cert = FileStamp::of(&pair.cert_path);
        let key = if pair.key_path == pair.cert_path { cert.clone() } else { FileStamp::of(&pair.key_path) };
        Stamp { cert, key }
    }
}

/// A scan with its problems sorted by where they came from, so the watcher
/// can log each broken file once per change.
pub(crate) struct Scan {
    pub store: CertStore,
    /// Folder-level problems (missing, unreadable); found anew every scan.
    pub dir_problems: Vec<CertProblem>,
    /// Problems from files parsed in this scan (new or changed files).
    pub fresh_problems: Vec<CertProblem>,
    /// Problems of unchanged files, remembered from the previous scan.
    pub known_problems: Vec<CertProblem>,
}

impl CertStore {
    /// Recursive scan of `dir` (see `layouts` for the recognised layouts).
    /// With `previous`, unchanged files are not reparsed and a pair whose
    /// files became broken keeps its last good certificate.
    pub fn scan(dir: &Path, previous: Option<&CertStore>) -> (CertStore, Vec<CertProblem>) {
        let s = Self::scan_detailed(dir, previous);
        let mut problems = s.dir_problems;
        problems.extend(s.fresh_problems);
        problems.extend(s.known_problems);
        (s.store, problems)
    }

    pub(crate) fn scan_detailed(dir: &Path, previous: Option<&CertStore>) -> Scan {
        let (pairs, dir_problems) = find_pairs(dir);
        let before: HashMap<(&Path, &Path), &Entry> = previous
            .map(|p| p.entries.iter().map(|e| ((e.pair.cert_path.as_path(), e.pair.key_path.as_path()), e)).collect())
            .unwrap_or_default();

        let mut entries = Vec::with_capacity(pairs.len());
        let (mut fresh_problems, mut known_problems) = (Vec::new(), Vec::new());
        for pair in pairs {
            let stamp = Stamp::of(&pair);
            let old = before.get(&(pair.cert_path.as_path(), pair.key_path.as_path())).copied();
            let outcome = match old {
                Some(e) if e.stamp == stamp && e.pair.name == pair.name => {
                    if let Outcome::Broken { problem, .. } = &e.outcome {
                        known_problems.push(problem.clone());
                    }
                    e.outcome.clone()
                }
                _ => match load_pair(&pair) {
                    LoadOutcome::Loaded(c) => Outcome::Good(Arc::new(c)),
                    LoadOutcome::Skipped => Outcome::Skipped,
                    LoadOutcome::Problem(problem) => {
                        fresh_problems.push(problem.clone());
                        let kept = old.and_then(|e| e.last_good());
                        Outcome::Broken { problem, kept }
                    }
                },
            };
            entries.push(Entry { pair, stamp, outcome });
        }
        let certs = entries.iter().filter_map(Entry::last_good).collect();
        Scan { store: CertStore::build(certs, entries), dir_problems, fresh_problems, known_problems }
    }

    /// Indexes `certs` (any order). Exact and wildcard names map to the cert
    /// that expires last when several carry the same name (e.g. an old copy
    /// left beside a renewed one), then to the first by name.
    pub(crate) fn build(mut certs: Vec<Arc<LoadedCert>>, entries: Vec<Entry>) -> CertStore {
        certs.sort_by(|a, b| (a.name.as_str(), &a.cert_path).cmp(&(b.name.as_str(), &b.cert_path)));
        let mut exact: HashMap<String, usize> = HashMap::new();
        let mut wildcard: HashMap<String, usize> = HashMap::new();
        for (i, cert) in certs.iter().enumerate() {
            for name in &cert.dns_names {
                let (map, key) = match name.strip_prefix("*.") {
                    Some(suffix) => (&mut wildcard, suffix),
                    None => (&mut exact, name.as_str()),
                };
                match map.get_mut(key) {
                    Some(j) if certs[*j].not_after < cert.not_after => *j = i,
                    Some(_) => {}
                    None => {
                        map.insert(key.to_string(), i);
                    }
                }
            }
        }
        let default = certs.iter().position(|c| c.name == "default");
        CertStore { certs, exact, wildcard, default, entries }
    }

    /// True when no certificate can be served.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// True when serving only the generated localhost certificate.
    pub fn is_fallback(&self) -> bool {
        !self.certs.is_empty() && self.certs.iter().all(|c| c.self_signed_fallback)
    }

    /// Sorted by name (then path).
    pub fn certs(&self) -> &[Arc<LoadedCert>] {
        &self.certs
    }

    /// The certificate whose DNS names match `sni`: exact first, then a
    /// one-label wildcard. Case and a trailing dot are ignored.
    pub fn by_sni(&self, sni: &str) -> Option<&Arc<LoadedCert>> {
        let sni = sni.strip_suffix('.').unwrap_or(sni);
        let host: Cow<'_, str> = if sni.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(sni.to_ascii_lowercase())
        } else {
            Cow::Borrowed(sni)
        };
        if let Some(&i) = self.exact.get(host.as_ref()) {
            return Some(&self.certs[i]);
        }
        match host.split_once('.') {
            Some((label, rest)) if !label.is_empty() => self.wildcard.get(rest).map(|&i| &self.certs[i]),
            _ => None,
        }
    }

    /// `by_sni`, else the cert named "default", else the first by name.
    /// `None` only when the store is empty.
    pub fn choose(&self, sni: Option<&str>) -> Option<&Arc<LoadedCert>> {
        sni.and_then(|s| self.by_sni(s)).or_else(|| self.default.map(|i| &self.certs[i])).or_else(|| self.certs.first())
    }

    /// Same files with the same stamps as `other`: nothing to reload.
    pub(crate) fn same_files_as(&self, other: &CertStore) -> bool {
        self.entries.len() == other.entries.len()
            && self.entries.iter().zip(&other.entries).all(|(a, b)| a.pair == b.pair && a.stamp == b.stamp)
    }

    /// This (empty) scan result serving the self-signed localhost cert,
    /// reusing `current`'s if it already is the fallback (clients that
    /// accepted it once keep seeing the same one). The scan entries are
    /// kept so broken files are not reparsed every tick.
    pub(crate) fn into_fallback(self, current: Option<&CertStore>) -> CertStore {
        let certs = match current {
            Some(c) if c.is_fallback() => c.certs.clone(),
            _ => CertStore::self_signed_localhost().certs,
        };
        CertStore::build(certs, self.entries)
    }
}

impl Entry {
    /// The cert this pair serves: the current one, or the last good one.
    fn last_good(&self) -> Option<Arc<LoadedCert>> {
        match &self.outcome {
            Outcome::Good(c) => Some(c.clone()),
            Outcome::Broken { kept, .. } => kept.clone(),
            Outcome::Skipped => None,
        }
    }
}
