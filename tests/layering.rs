//! The layers of `src/` only look down.
//!
//! The order of porter's top-level modules lives in one place: the "Layout"
//! list of `src/lib.rs` (bottom first). This test reads every `src/**/*.rs`,
//! collects the `crate::x` paths each top-level module names (in `use` lines
//! and inline paths, `$crate::x` included; comments and string literals
//! skipped), and fails when a module names one listed after it, or when
//! modules reach each other in a cycle (modules sharing a layer may import
//! each other, but never both ways). It prints the module graph and every
//! cycle it finds, so a failure says what to move.
//!
//! `super::` paths are not followed: from a file inside a module folder they
//! stay inside that top-level module, and no top-level file reaches the crate
//! root through `super::`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One `crate::to` path in `file` at `line`, seen from top-level module `from`.
#[derive(Debug, Clone)]
struct Use {
    from: String,
    to: String,
    file: String,
    line: usize,
}

#[test]
fn modules_import_only_the_layers_below_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let layers = layout(&lib);
    assert!(!layers.is_empty(), "src/lib.rs has no \"# Layout\" list of modules");
    let rank: BTreeMap<&str, usize> =
        layers.iter().enumerate().flat_map(|(i, layer)| layer.iter().map(move |m| (m.as_str(), i))).collect();

    let declared = declared_modules(&lib);
    let listed: BTreeSet<String> = rank.keys().map(|m| m.to_string()).collect();
    assert_eq!(
        declared, listed,
        "the modules src/lib.rs declares and the ones its Layout list places must be the same"
    );

    let uses = collect_uses(root, &declared);
    let mut report = String::new();
    let graph = graph(&uses);
    let cycles = strongly_connected(&graph);

    for ((from, to), places) in pairs(&uses) {
        if rank[to.as_str()] > rank[from.as_str()] {
            let _ = writeln!(report, "`{from}` imports `{to}`, a layer above it: {}", places.join(", "));
        }
    }
    for cycle in &cycles {
        let _ = writeln!(report, "cycle: {}", cycle.join(", "));
        for ((from, to), places) in pairs(&uses) {
            if cycle.contains(&from) && cycle.contains(&to) {
                let _ = writeln!(report, "  {from} -> {to}: {}", places.join(", "));
            }
        }
    }
    eprintln!("module graph (each module -> the modules it imports):");
    for (from, tos) in &graph {
        eprintln!("  {from} -> {}", tos.iter().cloned().collect::<Vec<_>>().join(", "));
    }
    assert!(report.is_empty(), "the layering rule of src/lib.rs (Layout) is broken:\n{report}");
}

/// The `//! - `name`, `name`: ...` items under `//! # Layout` in lib.rs, one layer per item.
fn layout(lib: &str) -> Vec<Vec<String>> {
    let mut layers = Vec::new();
    let mut inside = false;
    for line in lib.lines() {
        let Some(doc) = line.strip_prefix("//!") else { continue };
        let doc = doc.trim();
        if let Some(heading) = doc.strip_prefix('#') {
            inside = heading.trim_start_matches('#').trim() == "Layout";
            continue;
        }
        let Some(item) = doc.strip_prefix("- ").filter(|_| inside) else { continue };
        let names = item.split(':').next().unwrap_or("");
        let layer: Vec<String> =
            names.split(',').filter_map(|n| n.trim().strip_prefix('`')?.strip_suffix('`')).map(String::from).collect();
        if !layer.is_empty() {
            layers.push(layer);
        }
    }
    layers
}

/// The `mod name;` declarations of lib.rs (any visibility, any attributes).
fn declared_modules(lib: &str) -> BTreeSet<String> {
    let code = strip_comments_and_strings(lib);
    let mut found = BTreeSet::new();
    for line in code.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(i) = words.iter().position(|w| *w == "mod") {
            if let Some(name) = words.get(i + 1).and_then(|w| w.strip_suffix(';')) {
                found.insert(name.to_string());
            }
        }
    }
    found
}

fn collect_uses(root: &Path, modules: &BTreeSet<String>) -> Vec<Use> {
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut uses = Vec::new();
    for file in files {
        let rel = file.strip_prefix(root.join("src")).unwrap();
        let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
        let from = first.strip_suffix(".rs").unwrap_or(&first).to_string();
        if !modules.contains(&from) {
            // lib.rs (the module list), and main.rs and cli/ (the binary, outside the library).
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let code = strip_comments_and_strings(&text);
        for (to, offset) in crate_paths(&code) {
            if to != from && modules.contains(&to) {
                let line = code[..offset].matches('\n').count() + 1;
                uses.push(Use { from: from.clone(), to, file: format!("src/{}", rel.display()), line });
            }
        }
    }
    uses
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The first segment after each `crate::`, with the byte offset of the path;
/// a group (`crate::{a::b, c}`) gives each of its members.
fn crate_paths(code: &str) -> Vec<(String, usize)> {
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("crate") {
        let start = from + at;
        from = start + 5;
        let before = bytes.get(start.wrapping_sub(1)).copied().unwrap_or(b' ');
        if start > 0 && (before.is_ascii_alphanumeric() || before == b'_') {
            continue;
        }
        let rest = code[from..].trim_start();
        let Some(rest) = rest.strip_prefix("::") else { continue };
        let rest = rest.trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            for member in top_level_members(group) {
                found.push((member, start));
            }
        } else {
            found.push((identifier(rest), start));
        }
    }
    found
}

/// The first identifier of each comma-separated member of a `{...}` group.
fn top_level_members(group: &str) -> Vec<String> {
    let mut members = Vec::new();
    let mut depth = 0;
    let mut at_member_start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => at_member_start = true,
            c if at_member_start && !c.is_whitespace() => {
                at_member_start = false;
                if depth == 0 {
                    members.push(identifier(&group[i..]));
                }
            }
            _ => {}
        }
    }
    members
}

fn identifier(s: &str) -> String {
    s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
}

/// The source with comments and the contents of string and char literals blanked
/// (newlines kept, so offsets still give line numbers).
fn strip_comments_and_strings(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, s: &[u8]| out.extend(s.iter().map(|&c| if c == b'\n' { b'\n' } else { b' ' }));
    while i < b.len() {
        let rest = &b[i..];
        let end = if rest.starts_with(b"//") {
            rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len())
        } else if rest.starts_with(b"/*") {
            let mut depth = 0;
            let mut j = 0;
            loop {
                if j >= rest.len() {
                    break rest.len();
                } else if rest[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if rest[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break j;
                    }
                } else {
                    j += 1;
                }
            }
        } else if rest.starts_with(b"r#") || rest.starts_with(b"r\"") || rest.starts_with(b"br") {
            let skip = if rest[0] == b'b' { 2 } else { 1 };
            let hashes = rest[skip..].iter().take_while(|&&c| c == b'#').count();
            if rest.get(skip + hashes) != Some(&b'"')
                || (i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
            {
                out.push(b[i]);
                i += 1;
                continue;
            }
            let mut close = b"\"".to_vec();
            close.extend(std::iter::repeat_n(b'#', hashes));
            let body = skip + hashes + 1;
            rest[body..]
                .windows(close.len())
                .position(|w| w == close.as_slice())
                .map_or(rest.len(), |p| body + p + close.len())
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            (j + 1).min(rest.len())
        } else if rest[0] == b'\'' && rest.get(1) == Some(&b'\\') {
            rest[2..].iter().position(|&c| c == b'\'').map_or(1, |p| p + 3)
        } else if rest[0] == b'\'' && rest.get(2) == Some(&b'\'') {
            3
        } else {
            out.push(b[i]);
            i += 1;
            continue;
        };
        blank(&mut out, &rest[..end]);
        i += end;
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Each (from, to) pair with the places that name it (first line per file).
fn pairs(uses: &[Use]) -> BTreeMap<(String, String), Vec<String>> {
    let mut pairs: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for u in uses {
        let places = pairs.entry((u.from.clone(), u.to.clone())).or_default();
        if !places.iter().any(|p| p.starts_with(&format!("{}:", u.file))) {
            places.push(format!("{}:{}", u.file, u.line));
        }
    }
    pairs
}

fn graph(uses: &[Use]) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for u in uses {
        graph.entry(u.from.clone()).or_default().insert(u.to.clone());
    }
    graph
}

/// The strongly connected components of more than one module (Tarjan).
fn strongly_connected(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(w: &mut Walk<'a>, v: &'a str) {
        let n = w.index.len();
        w.index.insert(v, n);
        w.low.insert(v, n);
        w.stack.push(v);
        for next in w.graph.get(v).into_iter().flatten() {
            if !w.index.contains_key(next.as_str()) {
                visit(w, next);
                let low = w.low[v].min(w.low[next.as_str()]);
                w.low.insert(v, low);
            } else if w.stack.contains(&next.as_str()) {
                let low = w.low[v].min(w.index[next.as_str()]);
                w.low.insert(v, low);
            }
        }
        if w.low[v] == w.index[v] {
            let at = w.stack.iter().rposition(|m| *m == v).unwrap();
            let mut component: Vec<String> = w.stack.drain(at..).map(String::from).collect();
            if component.len() > 1 {
                component.sort();
                w.found.push(component);
            }
        }
    }
    let mut walk = Walk { graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), found: Vec::new() };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            visit(&mut walk, v);
        }
    }
    walk.found
}

#[test]
fn the_reader_finds_paths_in_groups_and_skips_comments_and_strings() {
    let code = strip_comments_and_strings(
        "use crate::{a::{b, c}, d};\n// crate::e\nlet s = \"crate::f\"; let r = r#\"crate::g\"#;\n/* crate::h */ x = crate :: i::j; '\"'; $crate::k",
    );
    let found: Vec<String> = crate_paths(&code).into_iter().map(|(m, _)| m).collect();
    assert_eq!(found, ["a", "d", "i", "k"]);
    let lib = "//! # Layout\n//!\n//! - `http1`: parse\n//! - `stats`, `shutdown`: leaves\n//! # Other\n//! - `x`: no\npub mod http1;\n#[cfg(test)]\npub(crate) mod stats;\nmod shutdown;\n";
    assert_eq!(layout(lib), [vec!["http1".to_string()], vec!["stats".to_string(), "shutdown".to_string()]]);
    assert_eq!(
        declared_modules(lib),
        BTreeSet::from(["http1".to_string(), "stats".to_string(), "shutdown".to_string()])
    );
}
