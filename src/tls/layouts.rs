//! Which files in the certs folder pair with which. Only names are looked at
//! here (plus one stat per symlinked directory); contents are `load`'s job.
//!
//! Recognised, in every directory of the tree:
//! - certbot: a directory holding `fullchain.pem` + `privkey.pem` (certbot's
//!   `live/DOMAIN/`, or a copy of it) is one pair named after the directory;
//!   its `cert.pem`, `chain.pem` and README are ignored. Directories named
//!   `archive` are skipped: the `live/` symlinks point into them.
//! - flat and lego: `NAME.crt` (or `.pem`, `.cer`) beside `NAME.key`. lego's
//!   `DOMAIN.issuer.crt` is ignored, and so is its `DOMAIN.pem` (a combined
//!   copy) when `DOMAIN.crt` exists. lego writes `*.example.com` as
//!   `_.example.com`; the name is mapped back.
//! - a lone `NAME.pem`/`.crt` without a `.key` may hold the key itself
//!   (HAProxy style); it becomes a pair with `key_path == cert_path`, and
//!   `load` decides (a file with no certificate in it is skipped quietly).
//!
//! Hidden entries (`.acme`, `.lego`, editor swap files) and `.key` files with
//! no certificate are skipped.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use super::CertProblem;

/// Symlinked directories could loop; real trees are never this deep.
const MAX_DEPTH: usize = 8;
const CERT_EXTS: [&str; 3] = ["crt", "pem", "cer"];

/// A certificate file and the file its key is read from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Pair {
    pub name: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

/// All candidate pairs under `root`, sorted by name then path, plus problems
/// with the folder itself (missing, unreadable subdirectory).
pub(crate) fn find_pairs(root: &Path) -> (Vec<Pair>, Vec<CertProblem>) {
    let mut pairs = Vec::new();
    let mut problems = Vec::new();
    match fs::metadata(root) {
        Ok(m) if m.is_dir() => {
            let mut seen = HashSet::new();
            if let Ok(real) = fs::canonicalize(root) {
                seen.insert(real);
            }
            walk(root, 0, &mut seen, &mut pairs, &mut problems);
        }
        Ok(_) => problems.push(CertProblem::new(root, "not a directory")),
        Err(e) => problems.push(CertProblem::new(root, format!("cannot read folder: {e}"))),
    }
    pairs.sort();
    (pairs, problems)
}

fn walk(dir: &Path, depth: usize, seen: &mut HashSet<PathBuf>, pairs: &mut Vec<Pair>, problems: &mut Vec<CertProblem>) {
    let entries = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            problems.push(CertProblem::new(dir, format!("cannot read folder: {e}")));
            return;
        }
    };
    let mut files = Vec::new();
    let mut subdirs = Vec::new();
    for entry in entries {
        let Ok(entry) = entry else { continue };
        let file_name = entry.file_name();
        // Non-UTF-8 names cannot be certificate names we could log sensibly.
        let Some(name) = file_name.to_str() else {
            continue;
        };
        if name.starts_with('.') || name.ends_with('~') {
            continue;
        }
        let Ok(ft) = entry.file_type() else { continue };
        let path = entry.path();
        let (is_dir, via_symlink) = if ft.is_symlink() {
            // Dangling links count as files, so `load` reports them.
            (fs::metadata(&path).is_ok_and(|m| m.is_dir()), true)
        } else {
            (ft.is_dir(), false)
        };
        if is_dir {
            if name != "archive" {
                subdirs.push((path, via_symlink));
            }
        } else {
            files.push(name.to_string());
        }
    }
    pair_files(dir, &files, pairs);

    if depth + 1 >= MAX_DEPTH {
        if !subdirs.is_empty() {
            problems.push(CertProblem::new(dir, "folders nested too deep; not scanned"));
        }
        return;
    }
    subdirs.sort();
    for (sub, via_symlink) in subdirs {
        if via_symlink {
            let fresh = fs::canonicalize(&sub).is_ok_and(|real| seen.insert(real));
            if !fresh {
                continue; // already scanned through another path (or a loop)
            }
        }
        walk(&sub, depth + 1, seen, pairs, problems);
    }
}

/// Splits "a.b.crt" into ("a.b", "crt"); the extension is lowercased.
fn split_ext(file: &str) -> Option<(&str, String)> {
    let (stem, ext) = file.rsplit_once('.')?;
    (!stem.is_empty()).then(|| (stem, ext.to_ascii_lowercase()))
}

/// lego writes "*.example.com" as "_.example.com".
fn display_name(stem: &str) -> String {
    match stem.strip_prefix("_.") {
        Some(rest) => format!("*.{rest}"),
        None => stem.to_string(),
    }
}

fn pair_files(dir: &Path, files: &[String], pairs: &mut Vec<Pair>) {
    let has = |f: &str| files.iter().any(|x| x == f);
    let mut used: HashSet<&str> = HashSet::new();

    if has("fullchain.pem") && has("privkey.pem") {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("certbot").to_string();
        pairs.push(Pair { name, cert_path: dir.join("fullchain.pem"), key_path: dir.join("privkey.pem") });
        used.extend(["fullchain.pem", "privkey.pem", "cert.pem", "chain.pem"]);
    }

    // stem -> extension -> file name, sorted so the result is deterministic.
    let mut by_stem: BTreeMap<&str, BTreeMap<String, &str>> = BTreeMap::new();
    for f in files {
        if used.contains(f.as_str()) {
            continue;
        }
        if let Some((stem, ext)) = split_ext(f) {
            by_stem.entry(stem).or_default().insert(ext, f.as_str());
        }
    }

    for (stem, exts) in &by_stem {
        let cert = CERT_EXTS.iter().find_map(|e| exts.get(*e).copied());
        match (exts.get("key").copied(), cert) {
            (Some(key), Some(cert)) => {
                pairs.push(Pair { name: display_name(stem), cert_path: dir.join(cert), key_path: dir.join(key) })
            }
            (Some(key), None) => {
                tracing::debug!(key = %dir.join(key).display(), "key without certificate; skipped");
            }
            (None, Some(cert)) => {
                if stem.ends_with(".issuer") {
                    continue; // lego's copy of the issuer chain
                }
                let path = dir.join(cert);
                pairs.push(Pair { name: display_name(stem), cert_path: path.clone(), key_path: path });
            }
            (None, None) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, rel: &str) {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, "x").unwrap();
    }

    fn names(pairs: &[Pair], root: &Path) -> Vec<(String, String, String)> {
        let rel = |p: &Path| p.strip_prefix(root).unwrap().display().to_string();
        pairs.iter().map(|p| (p.name.clone(), rel(&p.cert_path), rel(&p.key_path))).collect()
    }

    fn t(a: &str, b: &str, c: &str) -> (String, String, String) {
        (a.into(), b.into(), c.into())
    }

    #[test]
    fn recognises_layouts_and_ignores_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for f in [
            "a.example.com.crt",
            "a.example.com.key",
            "b.pem",
            "b.key",
            "combined.pem",
            "orphan.key",
            ".hidden.crt",
            ".hidden.key",
            ".acme/token.pem",
            "notes.txt",
            "backup.crt~",
            // certbot
            "le/live/README",
            "le/live/x.org/fullchain.pem",
            "le/live/x.org/privkey.pem",
            "le/live/x.org/cert.pem",
            "le/live/x.org/chain.pem",
            "le/live/x.org/README",
            "le/archive/x.org/fullchain1.pem",
            "le/archive/x.org/privkey1.pem",
            // lego
            "lego/certificates/y.net.crt",
            "lego/certificates/y.net.key",
            "lego/certificates/y.net.issuer.crt",
            "lego/certificates/y.net.json",
            "lego/certificates/y.net.pem",
            "lego/certificates/_.y.net.crt",
            "lego/certificates/_.y.net.key",
        ] {
            touch(root, f);
        }
        let (pairs, problems) = find_pairs(root);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            names(&pairs, root),
            vec![
                t("*.y.net", "lego/certificates/_.y.net.crt", "lego/certificates/_.y.net.key"),
                t("a.example.com", "a.example.com.crt", "a.example.com.key"),
                t("b", "b.pem", "b.key"),
                t("combined", "combined.pem", "combined.pem"),
                t("x.org", "le/live/x.org/fullchain.pem", "le/live/x.org/privkey.pem"),
                t("y.net", "lego/certificates/y.net.crt", "lego/certificates/y.net.key"),
            ]
        );
    }

    #[test]
    fn missing_dir_is_a_problem() {
        let tmp = tempfile::tempdir().unwrap();
        let (pairs, problems) = find_pairs(&tmp.path().join("nope"));
        assert!(pairs.is_empty());
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.contains("cannot read folder"));
    }

    #[cfg(unix)]
    #[test]
    fn symlink_loops_terminate() {
        let tmp = tempfile::tempdir().unwrap();
        touch(tmp.path(), "sub/a.crt");
        touch(tmp.path(), "sub/a.key");
        std::os::unix::fs::symlink("..", tmp.path().join("sub/up")).unwrap();
        std::os::unix::fs::symlink(".", tmp.path().join("self")).unwrap();
        let (pairs, _) = find_pairs(tmp.path());
        assert_eq!(pairs.len(), 1);
    }
}
