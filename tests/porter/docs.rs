//! The README and docs/ stay true and reachable: every relative link resolves (file and
//! heading), every section the code cites exists, every configuration field is in the
//! configuration reference, the README's test command is what CI runs and its minimal
//! configuration passes `porter check`, and the README stays a first screen.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The Markdown files a reader moves between: the README, docs/, and the READMEs of the
/// benchmark harness, the certificate folder and the fuzz targets.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![
        repo("README.md"),
        repo("bench/README.md"),
        repo("bench/results/history.md"),
        repo("certs/README.md"),
        repo("fuzz/README.md"),
    ];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    assert!(!docs.is_empty(), "docs/ holds the documentation");
    files.extend(docs);
    files
}

/// Lines outside fenced code blocks (a fence may be indented inside a list item).
fn prose_lines(text: &str) -> Vec<&str> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push(line);
        }
    }
    out
}

/// GitHub's anchor for a heading: lower-case, spaces to `-`, punctuation dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn headings(text: &str) -> Vec<String> {
    prose_lines(text)
        .into_iter()
        .filter_map(|l| {
            let rest = l.trim_start_matches('#');
            (l.starts_with('#') && rest.starts_with(' ')).then(|| rest.trim().to_string())
        })
        .collect()
}

/// The anchors of a file's headings, with GitHub's `-1`, `-2` for repeated ones.
fn anchors(text: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    for heading in headings(text) {
        let base = slug(&heading);
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// Link targets on a line: `[text](target)` and `![alt](target)`, code spans left out.
fn link_targets(line: &str) -> Vec<String> {
    let mut prose = String::new();
    for (i, part) in line.split('`').enumerate() {
        // Outside code spans only; a code span inside the link text leaves `[](target)`.
        if i % 2 == 0 {
            prose.push_str(part);
        }
    }
    let mut out = Vec::new();
    let mut rest = prose.as_str();
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let Some(end) = after.find(')') else { break };
        out.push(after[..end].to_string());
        rest = &after[end..];
    }
    out
}

#[test]
fn every_relative_link_in_readme_and_docs_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        let text = read(&file);
        let dir = file.parent().unwrap();
        for (n, line) in prose_lines(&text).into_iter().enumerate() {
            for target in link_targets(line) {
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                let (path, anchor) = match target.split_once('#') {
                    Some((p, a)) => (p, Some(a)),
                    None => (target.as_str(), None),
                };
                let resolved = if path.is_empty() { file.clone() } else { dir.join(path) };
                let place = format!("{}: `{target}` (prose line {})", file.display(), n + 1);
                if !resolved.exists() {
                    broken.push(format!("{place}: no such file"));
                    continue;
                }
                if let Some(anchor) = anchor {
                    if resolved.extension().is_some_and(|e| e == "md") && !anchors(&read(&resolved)).contains(anchor) {
                        broken.push(format!("{place}: no heading with that anchor in {}", resolved.display()));
                    }
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} links found: is the link parser broken?");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// Comments and tests cite "docs/NAME.md, Section": the file must exist and have a heading
/// that the cited words start with (or that holds them, for a short form such as
/// "`listen.http3`" for "HTTP/3 (`listen.http3`)").
#[test]
fn sections_the_code_cites_exist() {
    let cite = regex::Regex::new(r"docs/([a-z_-]+)\.md, ([^:;,)\n]+)").unwrap();
    let mut files = Vec::new();
    for dir in ["src", "tests", "bench", "fuzz/fuzz_targets", "examples", "deploy", ".ci"] {
        collect(&repo(dir), &mut files);
    }
    files.push(repo("Cargo.toml"));
    let mut cited = 0;
    let mut missing = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        for c in cite.captures_iter(&text) {
            cited += 1;
            let doc = repo(&format!("docs/{}.md", &c[1]));
            // Numbered steps ("4. Issue a certificate ...") may be cited with or without their number.
            let unnumbered =
                |s: &str| s.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.').trim().to_lowercase();
            let words = unnumbered(&c[2]);
            let Ok(doc_text) = std::fs::read_to_string(&doc) else {
                missing.push(format!("{}: docs/{}.md does not exist", file.display(), &c[1]));
                continue;
            };
            let found = headings(&doc_text).iter().any(|h| {
                let h = unnumbered(h);
                words.starts_with(&h) || (words.len() >= 3 && h.contains(&words))
            });
            if !found {
                missing.push(format!("{}: docs/{}.md has no section {:?}", file.display(), &c[1], c[2].trim()));
            }
        }
    }
    assert!(cited > 20, "only {cited} citations found: is the pattern broken?");
    assert!(missing.is_empty(), "citations of missing sections:\n{}", missing.join("\n"));
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            // Fuzz corpora and build output are data, not prose.
            if !path.ends_with("target") && !path.ends_with("corpus") && !path.ends_with("results") {
                collect(&path, out);
            }
        } else {
            out.push(path);
        }
    }
}

/// Every field of the YAML file (the serde structs of src/config/raw.rs) is in the
/// configuration reference: a new setting is documented where readers look for it.
#[test]
fn every_configuration_field_is_in_the_reference() {
    let raw = read(&repo("src/config/raw.rs"));
    let field = regex::Regex::new(r"(?m)^\s+pub (?:r#)?([a-z_0-9]+): ").unwrap();
    let mut fields: Vec<&str> = field.captures_iter(&raw).map(|c| c.get(1).unwrap().as_str()).collect();
    fields.sort_unstable();
    fields.dedup();
    assert!(fields.len() > 40, "only {} fields found in raw.rs: is the pattern broken?", fields.len());
    let reference = read(&repo("docs/configuration.md"));
    let undocumented: Vec<&str> = fields.into_iter().filter(|f| !reference.contains(&format!("{f}:"))).collect();
    assert!(
        undocumented.is_empty(),
        "fields of src/config/raw.rs missing from docs/configuration.md (as `name:`): {undocumented:?}"
    );
}

/// Files and folders the README and docs/ name in code spans (`src/...`, `tests/...`,
/// `bench/...`, `deploy/...`, `examples/...`, `fuzz/...`) exist: a move in the code that
/// leaves the docs behind fails here. (bench/results/history.md is a record of the past.)
#[test]
fn paths_the_docs_name_exist() {
    let path = regex::Regex::new(r"`((?:src|tests|bench|deploy|examples|fuzz)/[A-Za-z0-9_./-]*)`").unwrap();
    let mut named = 0;
    let mut missing = Vec::new();
    for file in markdown_files().into_iter().filter(|f| !f.ends_with("history.md")) {
        for c in path.captures_iter(&read(&file)) {
            named += 1;
            let p = &c[1];
            // `fuzz/regressions/<target>/` and the like name a pattern, not one path.
            if !p.contains('<') && !p.contains('*') && !repo(p).exists() {
                missing.push(format!("{}: {p}", file.display()));
            }
        }
    }
    assert!(named > 30, "only {named} paths found: is the pattern broken?");
    assert!(missing.is_empty(), "paths named in the docs that do not exist:\n{}", missing.join("\n"));
}

/// Every top-level module `src/lib.rs` declares has its place in docs/architecture.md's
/// layers, named by path (`src/NAME/` or `src/NAME.rs`): a new module is explained.
#[test]
fn architecture_names_every_module() {
    let lib = read(&repo("src/lib.rs"));
    let module = regex::Regex::new(r"(?m)^\s*(?:pub(?:\([a-z]+\))? )?mod ([a-z_0-9]+);").unwrap();
    let architecture = read(&repo("docs/architecture.md"));
    let modules: Vec<&str> = module.captures_iter(&lib).map(|c| c.get(1).unwrap().as_str()).collect();
    assert!(modules.len() > 10, "only {} modules found in src/lib.rs: is the pattern broken?", modules.len());
    let missing: Vec<&&str> = modules
        .iter()
        .filter(|m| !architecture.contains(&format!("`src/{m}/")) && !architecture.contains(&format!("`src/{m}.rs`")))
        .collect();
    assert!(missing.is_empty(), "modules of src/lib.rs docs/architecture.md does not place: {missing:?}");
}

/// The code block under "## Command line" in a Markdown file.
fn command_line_block(text: &str) -> Option<&str> {
    let section = text.split("\n## Command line\n").nth(1)?;
    section.split("```\n").nth(1)
}

/// The command line shown in the README and in docs/configuration.md names every
/// subcommand and every long option the binary's own `--help` lists.
#[test]
fn command_line_shown_matches_the_binary() {
    let out = Command::new(env!("CARGO_BIN_EXE_porter")).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let commands: Vec<&str> = help
        .split("Commands:\n")
        .nth(1)
        .expect("--help lists commands")
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    let option = regex::Regex::new(r"(?m)^\s+(?:-[a-zA-Z], )?(--[a-z-]+)").unwrap();
    let options: Vec<&str> =
        option.captures_iter(&help).map(|c| c.get(1).unwrap().as_str()).filter(|o| *o != "--help").collect();
    assert!(commands.len() >= 4 && options.len() >= 5, "--help parsed to {commands:?} and {options:?}");
    for file in ["README.md", "docs/configuration.md"] {
        let text = read(&repo(file));
        let block = command_line_block(&text).unwrap_or_else(|| panic!("{file} has a Command line code block"));
        for command in &commands {
            assert!(block.contains(&format!("porter {command}")), "{file}'s command line lacks `porter {command}`");
        }
        for option in &options {
            assert!(block.contains(option), "{file}'s command line lacks {option}");
        }
    }
}

/// The README's test command is, character for character, the one `.ci/run` runs.
#[test]
fn readme_test_command_is_what_ci_runs() {
    let ci = read(&repo(".ci/run"));
    let command = ci
        .lines()
        .rev()
        .find(|l| l.starts_with("cargo fmt --all"))
        .expect(".ci/run runs cargo fmt, clippy and nextest in one line");
    assert_eq!(
        command,
        "cargo fmt --all -- --check && cargo clippy --all-targets -- -D warnings && cargo nextest run --no-fail-fast"
    );
    let readme = read(&repo("README.md"));
    assert!(readme.lines().any(|l| l == command), "README.md does not show CI's test command verbatim: {command}");
}

/// The README is the first screen; the reference, guides and tables live in docs/.
#[test]
fn readme_is_a_first_screen_that_points_at_docs() {
    let readme = read(&repo("README.md"));
    let lines = readme.lines().count();
    assert!(lines <= 300, "README.md has {lines} lines: put reference material in docs/ and link it");
    for doc in ["configuration", "deploy", "security", "benchmarks", "architecture"] {
        assert!(readme.contains(&format!("](docs/{doc}.md")), "README.md links docs/{doc}.md");
    }
}

/// Every example configuration is listed, with a link, in the deploy guide.
#[test]
fn deploy_guide_lists_every_example() {
    let deploy = read(&repo("docs/deploy.md"));
    for entry in std::fs::read_dir(repo("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            assert!(deploy.contains(&format!("](../examples/{name})")), "docs/deploy.md does not link examples/{name}");
        }
    }
}

/// The README's minimal configuration is a file porter accepts.
#[test]
fn readme_minimal_configuration_passes_porter_check() {
    let readme = read(&repo("README.md"));
    let section = readme.split("## A minimal configuration").nth(1).expect("README.md has a minimal configuration");
    let yaml = section.split("```yaml\n").nth(1).and_then(|s| s.split("\n```").next()).expect("a yaml block");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("certs")).unwrap();
    let path = dir.path().join("porter.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_porter")).arg("check").arg("-c").arg(&path).output().unwrap();
    assert!(
        out.status.success(),
        "porter check refused the README's configuration: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn slugs_follow_github() {
    assert_eq!(slug("Binary + systemd"), "binary--systemd");
    assert_eq!(slug("Automatic HTTPS: porter's own ACME client"), "automatic-https-porters-own-acme-client");
    assert_eq!(slug("HTTP/2 to servers (`http2: true`)"), "http2-to-servers-http2-true");
    assert_eq!(slug("3. The `certs/` folder"), "3-the-certs-folder");
    let twice = anchors("# A\n## A\n```\n# not a heading\n```\n");
    assert!(twice.contains("a") && twice.contains("a-1") && !twice.contains("not-a-heading"));
}
