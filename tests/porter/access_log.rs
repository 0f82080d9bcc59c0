//! docs/configuration.md, Access log: the three formats (`text`, `json` with a pinned key
//! set, `combined` read by GoAccess), `enabled` and a reload. The file as the real binary
//! writes it (reopen on SIGUSR1, logrotate), `--log-level`, and a writer that falls
//! behind: `access_log_binary.rs`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

/// The JSON format's keys (docs/configuration.md, Access log): a change here is a change to the contract.
const JSON_KEYS: [&str; 21] = [
    "time",
    "client_ip",
    "client_port",
    "method",
    "protocol",
    "tls",
    "host",
    "path",
    "status",
    "bytes",
    "request_bytes",
    "upstream",
    "upstream_status",
    "upstream_connect_ms",
    "upstream_first_byte_ms",
    "route",
    "policy",
    "referer",
    "user_agent",
    "request_id",
    "duration_ms",
];

/// A config with an `access_log:` block, an upstream `web` over `backend`, and a route
/// `/dead/` to an upstream whose only server refuses connections.
fn yaml(backend: &Backend, access_log: &str) -> String {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    format!(
        "{}http:\n  redirect: false\naccess_log:\n{access_log}upstreams:\n{}  dead:\n    servers:\n      - url: \"http://{dead}\"\n\
         routes:\n  - path: /dead/\n    upstream: dead\n  - upstream: web\n",
        listen_block(),
        upstream_block("web", &[(backend, 1)])
    )
}

/// Waits until `path` holds at least `n` complete lines; returns them all.
pub(crate) async fn lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let complete = text.rsplit_once('\n').map_or("", |(done, _)| done);
        let lines: Vec<String> = complete.lines().map(str::to_string).filter(|l| !l.is_empty()).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(Instant::now() < deadline, "{} lines in {}, expected {n}:\n{text}", lines.len(), path.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One HTTP/1.1 request written by hand (exact headers), read to the end; returns the
/// client's own port and the status.
async fn raw(addr: SocketAddr, head: &str) -> (u16, u16) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let port = stream.local_addr().unwrap().port();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{answer}"));
    (port, status)
}

fn find<'a>(lines: &'a [serde_json::Value], path: &str) -> &'a serde_json::Value {
    lines.iter().find(|l| l["path"] == path).unwrap_or_else(|| panic!("no line for {path}: {lines:?}"))
}

#[tokio::test]
async fn json_lines_have_the_documented_keys_and_values() {
    let b = Backend::start("one").await;
    let p = TestPorter::start(&yaml(&b, "  format: json\n  path: access.json\n")).await;
    let http = p.http.unwrap();
    let log = p.dir.path().join("access.json");

    let (port, status) = raw(
        http,
        "GET /hello?x=1 HTTP/1.1\r\nHost: shop.example\r\nReferer: https://ref.example/a?b=c\r\n\
         User-Agent: agent \"quoted\" 1.0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    let c = plain_client();
    let upload = "u".repeat(12_345);
    let r = c.post(format!("http://{http}/echo")).body(upload.clone()).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), upload);
    assert_eq!(c.get(format!("http://{http}/dead/x")).send().await.unwrap().status(), 502);
    b.behaviour.lock().unwrap().health_status = Some(503);
    assert_eq!(c.get(format!("http://{http}/healthz")).send().await.unwrap().status(), 503);
    // HTTP/2 over TLS, with a body: counted as HTTP/1.1 bodies are.
    let tls = client_for(p.https.unwrap(), &["localhost"]);
    let r = tls.post(p.https_url("/echo?h2")).body("h2 body").send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.text().await.unwrap(), "h2 body");

    let lines: Vec<serde_json::Value> = lines(&log, 5)
        .await
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object: {e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 5, "one line per request");
    let time = regex::Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$").unwrap();
    for line in &lines {
        let keys: BTreeSet<&str> = line.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, JSON_KEYS.into_iter().collect(), "{line}");
        assert!(time.is_match(line["time"].as_str().unwrap()), "{line}");
        assert_eq!(line["client_ip"], "127.0.0.1");
        assert!(line["client_port"].as_u64().unwrap() > 0);
        if line["path"] != "/echo?h2" {
            assert_eq!(line["protocol"], "HTTP/1.1");
            assert_eq!(line["tls"], serde_json::Value::Null);
        }
        assert!(line["duration_ms"].as_f64().unwrap() >= 0.0, "{line}");
        assert_eq!(line["request_id"].as_str().unwrap().len(), 32, "{line}");
    }

    let get = find(&lines, "/hello?x=1");
    assert_eq!(get["client_port"], u64::from(port), "the client's own port, apart from its address");
    assert_eq!(get["method"], "GET");
    assert_eq!(get["host"], "shop.example");
    assert_eq!(get["status"], 200);
    assert_eq!(get["upstream_status"], 200);
    assert_eq!(get["upstream"], b.addr.to_string());
    assert_eq!(get["route"], "*/");
    assert_eq!(get["referer"], "https://ref.example/a?b=c");
    assert_eq!(get["user_agent"], "agent \"quoted\" 1.0");
    assert_eq!(get["request_bytes"], 0);
    assert!(get["bytes"].as_u64().unwrap() > 0);
    let connect = get["upstream_connect_ms"].as_f64().expect("a number");
    let first_byte = get["upstream_first_byte_ms"].as_f64().expect("a number");
    let total = get["duration_ms"].as_f64().unwrap();
    assert!(0.0 <= connect && connect <= first_byte && first_byte <= total, "{get}");

    let post = find(&lines, "/echo");
    assert_eq!((post["method"].as_str(), post["status"].as_u64()), (Some("POST"), Some(200)));
    assert_eq!(post["request_bytes"], 12_345, "the request body as read from the client");
    assert_eq!(post["bytes"], 12_345);
    assert_eq!(post["referer"], serde_json::Value::Null);

    let dead = find(&lines, "/dead/x");
    assert_eq!(dead["status"], 502);
    assert_eq!(dead["upstream_status"], serde_json::Value::Null, "no server answered: {dead}");
    assert_eq!(dead["upstream_connect_ms"], serde_json::Value::Null);
    assert_eq!(dead["upstream_first_byte_ms"], serde_json::Value::Null);
    assert_eq!(dead["route"], "*/dead/");

    let h2 = find(&lines, "/echo?h2");
    assert_eq!((h2["protocol"].as_str(), h2["tls"].as_str()), (Some("h2"), Some("TLSv1.3")));
    assert_eq!((h2["request_bytes"].as_u64(), h2["bytes"].as_u64()), (Some(7), Some(7)));
    assert_eq!(
        (h2["host"].as_str(), h2["upstream_status"].as_u64()),
        (Some(format!("localhost:{}", p.https.unwrap().port())).as_deref(), Some(200))
    );

    let health = find(&lines, "/healthz");
    assert_eq!((health["status"].as_u64(), health["upstream_status"].as_u64()), (Some(503), Some(503)));
    p.stop().await;
}

/// `%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i"`, with nginx's escapes inside quotes.
const COMBINED: &str = r#"^(\d+\.\d+\.\d+\.\d+) - - \[\d{2}/(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] "([A-Z]+) (\S+) (HTTP/1\.0|HTTP/1\.1|HTTP/2\.0)" (\d{3}) (\d+|-) "((?:[\x20-\x21\x23-\x5B\x5D-\x7E]|\\x[0-9A-F]{2})*)" "((?:[\x20-\x21\x23-\x5B\x5D-\x7E]|\\x[0-9A-F]{2})*)"$"#;

#[tokio::test]
async fn combined_lines_are_exactly_apaches_and_goaccess_reads_them() {
    let b = Backend::start("one").await;
    let p = TestPorter::start(&yaml(&b, "  format: combined\n  path: access.log\n")).await;
    let http = p.http.unwrap();
    let c = plain_client();
    let r = c
        .get(format!("http://{http}/page?q=1"))
        .header("referer", "https://ref.example/")
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64) \"quoted\" \\ back")
        .send()
        .await
        .unwrap();
    let page_bytes = r.bytes().await.unwrap().len();
    assert_eq!(c.head(format!("http://{http}/")).send().await.unwrap().status(), 200);
    assert_eq!(c.post(format!("http://{http}/echo")).body("abc").send().await.unwrap().status(), 200);
    assert_eq!(c.get(format!("http://{http}/dead/")).send().await.unwrap().status(), 502);
    // HTTP/2 over TLS: the request line says HTTP/2.0, as nginx and Apache write it.
    let tls = client_for(p.https.unwrap(), &["localhost"]);
    let r = tls.get(p.https_url("/h2")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    r.bytes().await.unwrap();

    let log = p.dir.path().join("access.log");
    let lines = lines(&log, 5).await;
    assert_eq!(lines.len(), 5);
    let shape = regex::Regex::new(COMBINED).unwrap();
    let parsed: Vec<regex::Captures> =
        lines.iter().map(|l| shape.captures(l).unwrap_or_else(|| panic!("not combined: {l}"))).collect();
    let line = |path: &str| parsed.iter().find(|c| &c[4] == path).unwrap_or_else(|| panic!("no {path}: {lines:?}"));
    let page = line("/page?q=1");
    assert_eq!((&page[1], &page[3], &page[5], &page[6]), ("127.0.0.1", "GET", "HTTP/1.1", "200"));
    assert_eq!(page[7].parse::<usize>().unwrap(), page_bytes);
    assert_eq!(&page[8], "https://ref.example/");
    assert_eq!(&page[9], r"Mozilla/5.0 (X11; Linux x86_64) \x22quoted\x22 \x5C back");
    let head = line("/");
    assert_eq!((&head[3], &head[6], &head[7], &head[8]), ("HEAD", "200", "-", "-"), "Apache's - for no body");
    assert_eq!((&line("/echo")[3], &line("/echo")[7]), ("POST", "3"));
    assert_eq!(&line("/dead/")[6], "502");
    assert_eq!(&line("/h2")[5], "HTTP/2.0");

    // The real parser: GoAccess from Debian, with its predefined COMBINED format.
    let Some(goaccess) = crate::deploy_files::tool_or_skip("goaccess", "goaccess", "access-log combined") else {
        return;
    };
    let report = p.dir.path().join("report.json");
    let out = Command::new(goaccess)
        .arg(&log)
        .args(["--log-format=COMBINED", "--no-global-config", "-o"])
        .arg(&report)
        .output()
        .unwrap();
    assert!(out.status.success(), "goaccess: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let general = &report["general"];
    assert_eq!(general["total_requests"], 5, "{general}");
    assert_eq!(general["valid_requests"], 5, "{general}");
    assert_eq!(general["failed_requests"], 0, "{general}");
    let sent: u64 = parsed.iter().map(|c| c[7].parse::<u64>().unwrap_or(0)).sum();
    assert_eq!(general["bandwidth"], sent, "GoAccess read every %b");
    p.stop().await;
}

#[tokio::test]
async fn text_lines_keep_the_tracing_layout_and_quote_the_logfmt_way() {
    let b = Backend::start("one").await;
    let p = TestPorter::start(&yaml(&b, "  path: access.log\n")).await;
    let http = p.http.unwrap();
    let (port, _) =
        raw(http, "GET /a%20b?x=1 HTTP/1.1\r\nHost: h.example\r\nUser-Agent: two words\r\nConnection: close\r\n\r\n")
            .await;
    let lines = lines(&p.dir.path().join("access.log"), 1).await;
    let line = &lines[0];
    let prefix =
        regex::Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z  INFO porter::access: request ").unwrap();
    assert!(prefix.is_match(line), "{line}");
    for field in [
        format!(" client_ip=127.0.0.1 client_port={port} method=GET protocol=HTTP/1.1 tls=- host=h.example "),
        // `=` in a value: quoted, as logfmt readers need.
        " path=\"/a%20b?x=1\" status=200 ".to_string(),
        " request_bytes=0 ".to_string(),
        format!(" upstream={} upstream_status=200 upstream_connect_ms=", b.addr),
        " route=*/ policy=- referer=- user_agent=\"two words\" request_id=".to_string(),
    ] {
        assert!(line.contains(&field), "{field:?} not in {line}");
    }
    assert!(regex::Regex::new(r" duration_ms=\d+\.\d{3}$").unwrap().is_match(line), "{line}");
    p.stop().await;
}

#[tokio::test]
async fn enabled_false_writes_nothing_and_a_reload_changes_format_and_file() {
    let b = Backend::start("one").await;
    let base = yaml(&b, "  enabled: false\n  path: access.log\n");
    let p = TestPorter::start(&base).await;
    let c = plain_client();
    let get = |path: &'static str| {
        let (c, url) = (c.clone(), format!("http://{}{path}", p.http.unwrap()));
        async move { assert_eq!(c.get(url).send().await.unwrap().status(), 200) }
    };
    get("/off").await;
    let first = p.dir.path().join("access.log");
    assert!(!first.exists(), "a log that is off opens no file");

    p.reload(&base.replace("  enabled: false\n", "  format: json\n"));
    get("/json").await;
    assert_eq!(lines(&first, 1).await.len(), 1);
    let line: serde_json::Value = serde_json::from_str(&lines(&first, 1).await[0]).unwrap();
    assert_eq!(line["path"], "/json");

    let second = p.dir.path().join("other.log");
    p.reload(&base.replace("  enabled: false\n", "  format: combined\n").replace("access.log", "other.log"));
    get("/combined").await;
    let moved = lines(&second, 1).await;
    assert!(regex::Regex::new(COMBINED).unwrap().is_match(&moved[0]), "{moved:?}");
    assert_eq!(lines(&first, 1).await.len(), 1, "the old file gets nothing more");

    // A file that cannot be opened refuses the reload; the running log carries on.
    let bad = base.replace("  enabled: false\n", "").replace("access.log", "no/such/folder/x.log");
    let path = p.dir.path().join("porter.yaml");
    std::fs::write(&path, &bad).unwrap();
    let config = porter::Config::load(&path).unwrap();
    let err = p.porter().reload(&config).unwrap_err().to_string();
    assert!(err.contains("access_log.path") && err.contains("no/such/folder"), "{err}");
    get("/still").await;
    assert_eq!(lines(&second, 2).await.len(), 2);
    p.stop().await;
}
