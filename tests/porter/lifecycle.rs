//! docs/configuration.md, Command line: the real binary — SIGTERM lets a request in flight finish,
//! refuses new connections, exits 0; SIGHUP reloads; a bad config at start exits 1.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::*;

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The porter binary, killed when dropped, with every line it has logged so far.
pub(crate) struct Running(pub std::process::Child, pub Arc<Mutex<Vec<String>>>);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    /// Collects the child's stderr lines from here on (after an upgrade the new process's
    /// too: it inherits the pipe); with `ready`, first waits up to 10 s for a line
    /// containing it.
    pub(crate) fn logging(mut child: std::process::Child, ready: Option<&'static str>) -> Running {
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let collected = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if ready.is_some_and(|ready| line.contains(ready)) {
                    let _ = tx.send(());
                }
                collected.lock().unwrap().push(line);
            }
        });
        if let Some(ready) = ready {
            rx.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|_| panic!("porter logged no {ready:?}"));
        }
        Running(child, lines)
    }

    /// Waits up to `within` for a logged line containing `needle`; returns it.
    pub(crate) async fn wait_for_line(&self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(line) = self.1.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            assert!(Instant::now() < deadline, "no log line with {needle:?}:\n{}", self.1.lock().unwrap().join("\n"));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub(crate) fn signal(child: &std::process::Child, name: &str) {
    let status = Command::new("kill").arg(format!("-{name}")).arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
}

/// Starts the binary and waits until it logs that it listens on plaintext.
pub(crate) fn spawn_porter(config: &std::path::Path) -> Running {
    spawn_porter_env(config, &[])
}

/// [`spawn_porter`] with extra environment variables.
pub(crate) fn spawn_porter_env(config: &std::path::Path, env: &[(&str, &str)]) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_porter"))
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Running::logging(child, Some("listening for HTTP"))
}

pub(crate) fn write_config(
    dir: &std::path::Path,
    port: u16,
    backend: &Backend,
    weight_line: &str,
) -> std::path::PathBuf {
    let path = dir.join("porter.yaml");
    std::fs::write(
        &path,
        format!(
            "listen:\n  http: \"127.0.0.1:{port}\"\nhttp:\n  redirect: false\nshutdown_timeout: 10s\nupstreams:\n  web:\n    servers:\n      - url: \"{}\"\n{weight_line}routes:\n  - upstream: web\n",
            backend.url()
        ),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn sigterm_finishes_the_request_in_flight_then_exits_zero() {
    let slow =
        Backend::start_with("slow", Behaviour { delay: Some(Duration::from_millis(1500)), ..Default::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, &slow, "");
    let mut porter = spawn_porter(&config);

    let url = format!("http://127.0.0.1:{port}/slow");
    let in_flight = tokio::spawn(async move { plain_client().get(url).send().await.map(|r| r.status().as_u16()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&porter.0, "TERM");

    let status = in_flight.await.unwrap().expect("the request in flight was cut");
    assert_eq!(status, 200);
    // New connections are refused once porter stops accepting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err(), "still accepting after SIGTERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(status) = porter.0.try_wait().unwrap() {
            break status.code();
        }
        assert!(Instant::now() < deadline, "porter did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn sighup_reloads_and_a_bad_reload_keeps_serving() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, &a, "");
    let porter = spawn_porter(&config);
    let url = format!("http://127.0.0.1:{port}/");
    let c = plain_client();
    let who = |r: reqwest::Response| r.headers()["x-backend"].to_str().unwrap().to_string();
    assert_eq!(who(c.get(&url).send().await.unwrap()), "a");

    write_config(dir.path(), port, &b, "");
    signal(&porter.0, "HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while who(c.get(&url).send().await.unwrap()) != "b" {
        assert!(Instant::now() < deadline, "reload not applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    std::fs::write(&config, "upstreams: [this is not valid\n").unwrap();
    signal(&porter.0, "HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..5 {
        assert_eq!(who(c.get(&url).send().await.unwrap()), "b", "a bad reload must keep the old config");
    }
}

#[test]
fn a_bad_config_at_start_exits_one_with_the_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("porter.yaml");
    std::fs::write(
        &path,
        "listen:\n  http: \"127.0.0.1:0\"\nupstreams:\n  web:\n    servers: []\nroutes:\n  - upstream: web\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_porter")).arg("--config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("porter.yaml:5:"), "{stderr}");
    assert!(stderr.contains("upstreams.web.servers"), "{stderr}");
}

#[tokio::test]
async fn sigterm_waits_for_an_open_websocket_tunnel() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ws = Backend::start("ws").await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, &ws, "");
    let mut porter = spawn_porter(&config);

    let mut tunnel = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tunnel
        .write_all(b"GET /chat HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"ws:") {
        let n = tokio::time::timeout(Duration::from_secs(5), tunnel.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }

    signal(&porter.0, "TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Still running, and the tunnel still carries bytes both ways.
    assert!(porter.0.try_wait().unwrap().is_none(), "porter exited with a tunnel open");
    tunnel.write_all(b"after sigterm").await.unwrap();
    let mut echoed = Vec::new();
    while !echoed.ends_with(b"after sigterm") {
        let n = tokio::time::timeout(Duration::from_secs(5), tunnel.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0);
        echoed.extend_from_slice(&buf[..n]);
    }
    // Closing the tunnel lets porter finish.
    drop(tunnel);
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(status) = porter.0.try_wait().unwrap() {
            break status.code();
        }
        assert!(Instant::now() < deadline, "porter did not exit after the tunnel closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(code, Some(0));
}

/// A listener that cannot take its address fails the start with a typed error naming
/// the listener, the address and the cause (docs/configuration.md, Command line).
#[tokio::test]
async fn a_taken_address_fails_the_start_naming_the_listener_address_and_cause() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "listen:\n  http: \"{addr}\"\nupstreams:\n  web:\n    servers:\n      - url: http://127.0.0.1:9\nroutes:\n  - path: /\n    upstream: web\n"
    );
    let config = porter::Config::from_yaml(&yaml, &dir.path().join("porter.yaml")).unwrap();
    let error = porter::start(config).await.err().expect("the address is taken: the start must fail");
    match &error {
        porter::StartError::Bind { what, address, cause } => {
            assert_eq!((*what, *address), ("http", porter::BindAddress::Tcp(addr)));
            assert_eq!(cause.kind(), std::io::ErrorKind::AddrInUse, "{cause}");
        }
        other => panic!("expected a bind error, got {other:?}"),
    }
    assert!(error.to_string().starts_with(&format!("cannot listen for http on {addr}: ")), "{error}");
    assert!(std::error::Error::source(&error).is_some(), "the cause is the error's source");
}
