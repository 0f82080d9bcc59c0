//! SPEC §2, §3: bad configuration is refused with file, line, column and field; `porter check`.

use std::process::Command;

fn check(yaml: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("porter.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_porter")).arg("check").arg("--config").arg(&path).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

const GOOD: &str = r#"listen:
  https: "127.0.0.1:18443"
  http: "127.0.0.1:18080"
upstreams:
  web:
    servers:
      - url: "http://127.0.0.1:9001"
        weight: 5
      - url: "http://127.0.0.1:9002"
routes:
  - host: "example.com"
    upstream: web
"#;

#[test]
fn a_good_config_checks_out_with_a_summary() {
    let (code, stdout, stderr) = check(GOOD);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("127.0.0.1:18443"), "{stdout}");
    assert!(stdout.contains("example.com/ -> web"), "{stdout}");
    assert!(stdout.contains("http://127.0.0.1:9001 weight 5"), "{stdout}");
    assert!(stdout.contains("self-signed"), "no certificates yet: {stdout}");
}

#[test]
fn bad_yaml_names_line_and_column() {
    let yaml = "listen:\n  https: \"127.0.0.1:18443\"\nupstreams:\n  web:\n    servers: [ { url: \"http://127.0.0.1:9001\" }\nroutes:\n  - upstream: web\n";
    let (code, _, stderr) = check(yaml);
    assert_eq!(code, 1);
    assert!(stderr.contains("porter.yaml:"), "{stderr}");
    let position = stderr.split("porter.yaml:").nth(1).unwrap();
    let mut parts = position.split(':');
    let line: usize = parts.next().unwrap().trim().parse().unwrap_or_else(|_| panic!("no line in {stderr}"));
    let column: usize = parts.next().unwrap().trim().parse().unwrap_or_else(|_| panic!("no column in {stderr}"));
    assert!((5..=7).contains(&line) && column >= 1, "{stderr}");
}

#[test]
fn unknown_field_names_line_column_and_field() {
    let yaml = GOOD.replace("        weight: 5", "        weigth: 5");
    let (code, _, stderr) = check(&yaml);
    assert_eq!(code, 1);
    assert!(stderr.contains("porter.yaml:8:9"), "{stderr}");
    assert!(stderr.contains("weigth"), "{stderr}");
}

#[test]
fn route_to_missing_upstream_names_it() {
    let yaml = GOOD.replace("    upstream: web", "    upstream: api");
    let (code, _, stderr) = check(&yaml);
    assert_eq!(code, 1);
    assert!(stderr.contains("porter.yaml:12:15"), "{stderr}");
    assert!(stderr.contains("routes[0].upstream"), "{stderr}");
    assert!(stderr.contains("\"api\""), "{stderr}");
}

/// Issue 13: one commented, checked example per common deployment.
#[test]
fn examples_check_out() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let out = Command::new(env!("CARGO_BIN_EXE_porter")).arg("check").arg("-c").arg(&path).output().unwrap();
            assert!(out.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.starts_with("# "), "{} opens with a comment saying what it is for", path.display());
            checked.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    checked.sort();
    let expected = [
        "api-static-split.yaml",
        "behind-l4-balancer.yaml",
        "porter.yaml",
        "quickstart.yaml",
        "sticky-sessions.yaml",
        "websocket.yaml",
        "wildcard-sites.yaml",
    ];
    assert_eq!(checked, expected);
}
