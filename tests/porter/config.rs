//! docs/configuration.md, Command line and Configuration reference: bad configuration is refused
//! with file, line, column and field; `porter check`.

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

/// One commented, checked example per common deployment.
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
        "basic-auth.yaml",
        "behind-l4-balancer.yaml",
        "forward-auth.yaml",
        "ip-allowlist.yaml",
        "porter.yaml",
        "quickstart.yaml",
        "rate-limit.yaml",
        "redirects.yaml",
        "security-headers.yaml",
        "sticky-sessions.yaml",
        "websocket.yaml",
        "wildcard-sites.yaml",
    ];
    assert_eq!(checked, expected);
}

/// Runs the binary on `yaml` until it either listens (true) or exits (false, with its output).
fn starts(yaml: &str) -> (bool, String) {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("porter.yaml");
    std::fs::write(&path, yaml).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_porter"))
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            if text.contains("listening for HTTP") {
                let _ = tx.send((true, text.clone()));
            }
        }
        let _ = tx.send((false, text));
    });
    let result = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("porter neither started nor exited");
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// `porter check` accepts exactly the files porter starts with.
#[test]
fn check_and_start_agree() {
    let head = "listen:\n  http: \"127.0.0.1:0\"\n";
    let tail = "http:\n  redirect: false\nupstreams:\n  web:\n    servers:\n      - url: \"http://127.0.0.1:9\"\nroutes:\n  - upstream: web\n";
    let table: &[(&str, String, bool)] = &[
        ("plain", format!("{head}{tail}"), true),
        ("proxy_protocol", format!("{head}  proxy_protocol: true\n{tail}"), true),
        (
            "trusted_proxies",
            format!("{head}  trusted_proxies: [\"10.0.0.0/8\", \"2001:db8::/32\", \"192.0.2.1\"]\n{tail}"),
            true,
        ),
        ("bad CIDR", format!("{head}  trusted_proxies: [\"10.0.0.0/33\"]\n{tail}"), false),
        ("trusted_proxies not a list", format!("{head}  trusted_proxies: 10.0.0.0/8\n{tail}"), false),
        ("unknown listen field", format!("{head}  proxy_protocl: true\n{tail}"), false),
        ("bad hsts", format!("{head}tls:\n  hsts: \"a\\nb\"\n{tail}"), false),
        ("bad min_version", format!("{head}tls:\n  min_version: \"1.1\"\n{tail}"), false),
        ("http2", format!("{head}{tail}").replace("9\"\n", "9\"\n    http2: true\n"), true),
        (
            "upstream ca_file missing",
            format!("{head}{tail}")
                .replace("http://127.0.0.1:9\"\n", "https://127.0.0.1:9\"\n    tls: {ca_file: nope.pem}\n"),
            false,
        ),
        ("every server drained", format!("{head}{tail}").replace("9\"\n", "9\"\n        weight: 0\n"), true),
        ("access log file", format!("{head}access_log:\n  format: json\n  path: access.log\n{tail}"), true),
        ("access log folder missing", format!("{head}access_log:\n  path: no/such/dir/access.log\n{tail}"), false),
        (
            "access log off, folder missing",
            format!("{head}access_log:\n  enabled: false\n  path: no/x.log\n{tail}"),
            true,
        ),
        ("access log format unknown", format!("{head}access_log:\n  format: clf\n{tail}"), false),
    ];
    for (name, yaml, want) in table {
        let (code, stdout, stderr) = check(yaml);
        let (started, log) = starts(yaml);
        assert_eq!(code == 0, *want, "{name}: check exit {code}\n{stdout}{stderr}");
        assert_eq!(started, *want, "{name}: start {}\n{log}", if started { "succeeded" } else { "failed" });
        if *name == "bad CIDR" {
            assert!(stderr.contains("porter.yaml:3:") && stderr.contains("listen.trusted_proxies"), "{stderr}");
            assert!(stderr.contains("prefix length"), "{stderr}");
        }
    }
}
