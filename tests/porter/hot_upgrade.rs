//! docs/configuration.md, Command line (SIGUSR2) and docs/deploy.md, Upgrading porter: upgrading
//! the binary refuses no connection and fails no request. The real binary takes its listening
//! sockets from systemd socket activation (`LISTEN_FDS`), and hands them to a new process on
//! SIGUSR2 while a load of new connections runs and a WebSocket stays open on the old process;
//! HTTP/3's UDP socket is handed over the same way.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::deploy_files::tool_or_skip;
use crate::harness::*;
use crate::http3::{h3_yaml, H3Client};
use crate::lifecycle::{free_port, signal, Running};

/// Collects the child's stderr lines (the old process's and, after an upgrade, the new one's: it inherits the pipe).
pub(crate) fn running(child: std::process::Child) -> Running {
    Running::logging(child, None)
}

fn config(dir: &std::path::Path, http: &str, admin: &str, backend: &Backend) -> std::path::PathBuf {
    config_with_https(dir, "", http, admin, backend)
}

/// `https`: a listener line (`  https: "ADDR"\n`) or nothing.
fn config_with_https(
    dir: &std::path::Path,
    https: &str,
    http: &str,
    admin: &str,
    backend: &Backend,
) -> std::path::PathBuf {
    let path = dir.join("porter.yaml");
    std::fs::write(
        &path,
        format!(
            "listen:\n{https}  http: \"{http}\"\n  admin: \"{admin}\"\nhttp:\n  redirect: false\nshutdown_timeout: 30s\nlimits:\n  header_read_timeout: 30s\n\
             tls:\n  certs: \"{}\"\nupstreams:\n  web:\n    servers:\n      - url: \"{}\"\nroutes:\n  - upstream: web\n",
            dir.join("certs").display(),
            backend.url()
        ),
    )
    .unwrap();
    path
}

async fn get(url: String) -> reqwest::Response {
    let client = http_client().no_proxy().timeout(Duration::from_secs(10)).build().unwrap();
    client.get(url).send().await.unwrap()
}

/// One fd passed as systemd passes it (fd 3, `LISTEN_PID` the process itself, no
/// name of a listener): porter takes it by its address instead of binding, which
/// would fail, since the test still holds the socket.
#[tokio::test]
async fn systemd_socket_by_address_is_used_instead_of_binding() {
    let backend = Backend::start("one").await;
    let dir = tempfile::tempdir().unwrap();
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let path = config(dir.path(), &addr.to_string(), "127.0.0.1:0", &backend);
    // The shell moves the socket from stdin to fd 3 and becomes porter (same pid).
    let child = Command::new("sh")
        .arg("-c")
        .arg(r#"export LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=porter.socket; exec "$0" "$@" 3<&0 0</dev/null"#)
        .arg(env!("CARGO_BIN_EXE_porter"))
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(socket.try_clone().unwrap())))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let porter = running(child);
    porter.wait_for_line("listening for HTTP", Duration::from_secs(10)).await;
    let line = porter.wait_for_line("listen.http: socket from systemd", Duration::from_secs(1)).await;
    assert!(line.contains(&addr.to_string()), "{line}");
    for _ in 0..3 {
        let r = get(format!("http://{addr}/hello")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-backend"], "one");
    }
    drop(socket);
}

/// systemd's own tool: two sockets named `http` and `admin` (FileDescriptorName=),
/// listened on before porter runs; the first connection starts porter, and waits in
/// the backlog meanwhile instead of being refused.
#[tokio::test]
async fn systemd_socket_activate_named_sockets_serve_from_the_first_connection() {
    let Some(tool) = tool_or_skip("systemd-socket-activate", "Debian package systemd", "socket activation") else {
        return;
    };
    let backend = Backend::start("one").await;
    let dir = tempfile::tempdir().unwrap();
    let (http, admin) = (free_port(), free_port());
    // The configuration names other ports: sockets named by systemd are used whatever their address.
    let path = config(dir.path(), "127.0.0.1:0", "127.0.0.1:0", &backend);
    let child = Command::new(tool)
        .arg(format!("--listen=127.0.0.1:{http}"))
        .arg(format!("--listen=127.0.0.1:{admin}"))
        .arg("--fdname=http:admin")
        .arg("--setenv=RUST_LOG=info")
        .arg(env!("CARGO_BIN_EXE_porter"))
        .arg("--config")
        .arg(&path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let porter = running(child);
    porter.wait_for_line(&format!("127.0.0.1:{admin}"), Duration::from_secs(10)).await;
    // porter is not running yet: this connection starts it.
    let r = get(format!("http://127.0.0.1:{http}/first")).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().starts_with("one GET /first"));
    let r = get(format!("http://127.0.0.1:{admin}/healthz")).await;
    assert_eq!(r.status(), 200);
    porter.wait_for_line("listen.admin: socket from systemd", Duration::from_secs(1)).await;
    // One socket per name; nothing was bound by porter itself.
    let lines = porter.1.lock().unwrap().join("\n");
    assert!(lines.contains(&format!("address=127.0.0.1:{http}")), "{lines}");
    assert!(!lines.contains("address=127.0.0.1:0"), "{lines}");
}

#[derive(Default)]
struct Load {
    ok: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    stop: AtomicBool,
}

/// One request per new connection, in a loop, until `stop`: every connection that is
/// not accepted and every answer that is not a whole 200 is counted.
async fn load_loop(port: u16, load: Arc<Load>) {
    while !load.stop.load(Ordering::Relaxed) {
        let mut stream = match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(stream) => stream,
            Err(e) => {
                eprintln!("connect: {e}");
                load.refused.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        let exchange = async {
            stream.write_all(b"GET /load HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n").await?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        };
        match tokio::time::timeout(Duration::from_secs(10), exchange).await {
            Ok(Ok(answer)) if whole_200(&answer) => {
                load.ok.fetch_add(1, Ordering::Relaxed);
            }
            outcome => {
                eprintln!("failed request: {:?}", outcome.map(|r| r.map(|a| String::from_utf8_lossy(&a).into_owned())));
                load.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A 200 answer with all of its body (the length its head says), from the backend.
fn whole_200(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return false };
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|n| n.trim().parse::<usize>()));
    head.starts_with("HTTP/1.1 200") && length == Some(Ok(body.len())) && body.starts_with("ws GET /load")
}

/// HTTP/2 over TLS on one kept connection, requests in a loop until `stop`: a GOAWAY
/// from the draining process sends the client to a new connection (the new process).
async fn h2_loop(client: reqwest::Client, url: String, load: Arc<Load>) {
    while !load.stop.load(Ordering::Relaxed) {
        let outcome = match client.get(&url).send().await {
            Ok(r) if r.status() == 200 && r.version() == reqwest::Version::HTTP_2 => {
                r.text().await.map_err(|e| e.to_string())
            }
            Ok(r) => Err(format!("{} {:?}", r.status(), r.version())),
            Err(e) => Err(format!("{e:?}")),
        };
        match outcome {
            Ok(body) if body.starts_with("ws GET /load") => load.ok.fetch_add(1, Ordering::Relaxed),
            outcome => {
                eprintln!("failed HTTP/2 request: {outcome:?}");
                load.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// A process this test did not start (the new porter): terminated when dropped.
pub(crate) struct Successor(pub(crate) u32);

impl Successor {
    fn alive(&self) -> bool {
        // Gone, or a zombie waiting for whoever adopted it.
        std::fs::read_to_string(format!("/proc/{}/stat", self.0))
            .map(|stat| !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
            .unwrap_or(false)
    }
}

impl Drop for Successor {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-KILL").arg(self.0.to_string()).status();
    }
}

/// SIGUSR2 to `old`; the new process it handed its listeners over to.
pub(crate) async fn upgrade(old: &Running) -> Successor {
    signal(&old.0, "USR2");
    let line = old.wait_for_line("handed the listeners over to process", Duration::from_secs(30)).await;
    Successor(line.rsplit("process ").next().unwrap().split(';').next().unwrap().trim().parse().unwrap())
}

/// Waits for `old` to exit (off the runtime's threads); its exit code.
pub(crate) async fn exit_code(old: Running) -> Option<i32> {
    tokio::task::spawn_blocking(move || {
        let mut old = old;
        old.0.wait().map(|s| s.code())
    })
    .await
    .unwrap()
    .unwrap()
}

async fn read_until(stream: &mut tokio::net::TcpStream, needle: &[u8]) {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(needle.len()).any(|w| w == needle) {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed; got {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn sigusr2_upgrade_under_load_refuses_nothing_and_the_old_websocket_keeps_working() {
    let backend = Backend::start("ws").await;
    let dir = tempfile::tempdir().unwrap();
    let (port, admin, tls) = (free_port(), free_port(), free_port());
    let https = format!("  https: \"127.0.0.1:{tls}\"\n");
    let path =
        config_with_https(dir.path(), &https, &format!("127.0.0.1:{port}"), &format!("127.0.0.1:{admin}"), &backend);
    // systemd's notification socket: the old process must hand MAINPID to the new one.
    let notify_path = dir.path().join("notify");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_porter"))
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "info")
        .env("NOTIFY_SOCKET", &notify_path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut old = running(child);
    let mut message = [0u8; 256];
    let n = notify.recv(&mut message).unwrap();
    assert_eq!(&message[..n], b"READY=1\n");

    // A WebSocket on the old process.
    let mut ws = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    ws.write_all(b"GET /chat HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut ws, b"ws:").await;

    let load = Arc::new(Load::default());
    let mut clients: Vec<_> = (0..4).map(|_| tokio::spawn(load_loop(port, load.clone()))).collect();
    let h2 = Arc::new(Load::default());
    let client = client_for(format!("127.0.0.1:{tls}").parse().unwrap(), &["example.com"]);
    let url = format!("https://example.com:{tls}/load");
    clients.extend((0..2).map(|_| tokio::spawn(h2_loop(client.clone(), url.clone(), h2.clone()))));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before = load.ok.load(Ordering::Relaxed);
    assert!(before > 0, "the load runs before the upgrade");

    // A connection the old process accepts before the upgrade, whose request comes after it
    // (within header_read_timeout, 30 s here: a loaded machine may take a while to upgrade).
    let mut late = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let upgraded = Instant::now();
    let new = upgrade(&old).await;
    let pid = new.0;
    let took = upgraded.elapsed();
    let n = notify.recv(&mut message).unwrap();
    assert_eq!(std::str::from_utf8(&message[..n]).unwrap(), format!("MAINPID={pid}\n"));
    assert!(new.alive());

    // The old process drains but the WebSocket on it carries on both ways.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(old.0.try_wait().unwrap().is_none(), "the old process exited with a WebSocket open");
    ws.write_all(b"after the upgrade").await.unwrap();
    read_until(&mut ws, b"after the upgrade").await;
    // The connection accepted before the hand-over still gets its answer, and then closes.
    late.write_all(b"GET /load HTTP/1.1\r\nHost: example.com\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), late.read_to_end(&mut answer)).await.unwrap().unwrap();
    assert!(whole_200(&answer), "{}", String::from_utf8_lossy(&answer));
    assert!(String::from_utf8_lossy(&answer).contains("connection: close"), "{}", String::from_utf8_lossy(&answer));
    // The new process answers health checks (the old one stopped accepting on admin too).
    for _ in 0..5 {
        assert_eq!(get(format!("http://127.0.0.1:{admin}/healthz")).await.status(), 200);
    }

    // Closing it lets the old process finish, and exit 0, while the load goes on.
    drop(ws);
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(status) = old.0.try_wait().unwrap() {
            break status.code();
        }
        assert!(Instant::now() < deadline, "the old process did not exit after its WebSocket closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(code, Some(0));
    let at_exit = load.ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(600)).await;
    load.stop.store(true, Ordering::Relaxed);
    h2.stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let (ok, refused, failed) =
        (load.ok.load(Ordering::Relaxed), load.refused.load(Ordering::Relaxed), load.failed.load(Ordering::Relaxed));
    eprintln!(
        "upgrade under load: {ok} requests on {} new connections ({before} before the upgrade, {} after the old \
         process exited), {refused} refused connections, {failed} failed requests; the new process took over \
         {took:?} after SIGUSR2",
        ok + refused + failed,
        ok - at_exit
    );
    let (h2_ok, h2_failed) = (h2.ok.load(Ordering::Relaxed), h2.failed.load(Ordering::Relaxed));
    eprintln!("HTTP/2 over TLS on kept connections meanwhile: {h2_ok} requests, {h2_failed} failed");
    assert_eq!((refused, failed), (0, 0), "no connection refused and no request failed");
    assert_eq!(h2_failed, 0, "no HTTP/2 request failed");
    assert!(h2_ok > 0);
    assert!(ok > at_exit, "the new process serves after the old one exited");

    // The new process is a porter like any other: SIGTERM stops it.
    assert!(Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while new.alive() {
        assert!(Instant::now() < deadline, "the new process did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    old.wait_for_line("upgrade: the new process serves on the listeners", Duration::from_secs(1)).await;
    // No READY=1 from the new process: systemd's MAINPID moved with the message above.
    notify.set_nonblocking(true).unwrap();
    let rest: Vec<String> = std::iter::from_fn(|| {
        notify.recv(&mut message).ok().map(|n| String::from_utf8_lossy(&message[..n]).into_owned())
    })
    .collect();
    assert!(!rest.iter().any(|m| m.contains("READY=1")), "{rest:?}");
}

/// A new process that cannot start (here: the file became invalid) exits; the old one
/// keeps every listener and serves on, and a later upgrade still works.
#[tokio::test]
async fn a_failed_upgrade_leaves_the_old_process_serving() {
    let backend = Backend::start("one").await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = config(dir.path(), &format!("127.0.0.1:{port}"), "127.0.0.1:0", &backend);
    let good = std::fs::read_to_string(&path).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_porter"))
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut old = running(child);
    old.wait_for_line("listening for HTTP", Duration::from_secs(10)).await;

    std::fs::write(&path, good.replace("routes:", "routez:")).unwrap();
    signal(&old.0, "USR2");
    let line = old.wait_for_line("upgrade failed, this process keeps serving", Duration::from_secs(30)).await;
    assert!(line.contains("ended before taking over"), "{line}");
    assert!(old.0.try_wait().unwrap().is_none());
    let r = get(format!("http://127.0.0.1:{port}/still")).await;
    assert_eq!(r.status(), 200);

    // Fixed, the next upgrade goes through.
    std::fs::write(&path, good).unwrap();
    let new = upgrade(&old).await;
    assert_eq!(exit_code(old).await, Some(0));
    let r = get(format!("http://127.0.0.1:{port}/after")).await;
    assert_eq!(r.status(), 200);
    drop(new);
}

/// docs/deploy.md, Upgrading porter: SIGUSR2 hands the UDP socket to the new binary,
/// which serves new QUIC connections at once; the old process's QUIC connections are
/// closed (their next packet gets the new process's stateless reset), not left hanging.
#[tokio::test]
async fn sigusr2_hands_the_udp_socket_to_the_new_process() {
    let backend = Backend::start("web").await;
    let dir = tempfile::tempdir().unwrap();
    write_cert(&dir.path().join("certs"), "localhost", &["localhost"]);
    let port = crate::lifecycle::free_port();
    let path = dir.path().join("porter.yaml");
    let yaml = h3_yaml(&[(&backend, 1)], "shutdown_timeout: 5s\n")
        .replace("https: \"127.0.0.1:0\"", &format!("https: \"127.0.0.1:{port}\""))
        .replace("certs: certs", &format!("certs: \"{}\"", dir.path().join("certs").display()));
    std::fs::write(&path, yaml).unwrap();
    let old = crate::lifecycle::spawn_porter(&path);
    old.wait_for_line("listening for HTTP/3", Duration::from_secs(10)).await;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let url = format!("https://localhost:{port}/");
    let before = H3Client::connect(addr, "localhost").await;
    assert_eq!(before.get(&url).await.status(), 200);

    let new = upgrade(&old).await;
    old.wait_for_line("HTTP/3: UDP socket from the previous porter process", Duration::from_secs(1)).await;

    let after = H3Client::connect(addr, "localhost").await;
    assert_eq!(after.get(&url).await.status(), 200, "the new process serves HTTP/3 on the same socket");
    // The old connection does not hang: it is closed (or reset) within moments.
    let old_request =
        tokio::time::timeout(Duration::from_secs(10), before.request(Request::get(&url).body(Bytes::new()).unwrap()))
            .await;
    assert!(matches!(old_request, Ok(Err(_))), "the old process's QUIC connection was not closed");
    assert_eq!(exit_code(old).await, Some(0));
    assert_eq!(after.get(&url).await.status(), 200, "still served after the old process exited");
    drop(new);
}
