//! The shared test harness: porter started in-process from a YAML string on
//! ephemeral ports, real test backends on 127.0.0.1, certificates made with
//! rcgen, and HTTP clients that connect to porter with a chosen SNI.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub type BoxBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// How a test backend answers.
#[derive(Clone, Default)]
pub struct Behaviour {
    /// Wait this long before sending the response head.
    pub delay: Option<Duration>,
    /// Status for `/healthz` (default 200).
    pub health_status: Option<u16>,
}

/// What a test backend speaks.
#[derive(Clone, Default)]
pub enum Wire {
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge only (an HTTP/1.1 request is a protocol error to it).
    H2c,
    /// TLS with this config; ALPN picks HTTP/2 or HTTP/1.1.
    Tls(Arc<rustls::ServerConfig>),
}

/// A real HTTP server on 127.0.0.1 (HTTP/1.1 unless started with another [`Wire`])
/// that says who it is and what it received.
///
/// - every response has `x-backend: NAME` and `x-version: ` the request's HTTP version;
/// - `GET /echo-headers` (and any other path) answers `NAME METHOD PATH` then the request
///   headers one per line, lower-case `name: value`;
/// - `POST /echo` streams the request body back, as it arrives;
/// - `GET /bytes/N` streams N bytes of 'x' in 64 KiB chunks.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    accepts: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
    /// Requests per path, for tests that count probes.
    paths: Arc<Mutex<std::collections::HashMap<String, u64>>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    pub behaviour: Arc<Mutex<Behaviour>>,
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        Backend::start_with(name, Behaviour::default()).await
    }

    pub async fn start_with(name: &str, behaviour: Behaviour) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Backend::serve(name, listener, behaviour, Wire::Http1)
    }

    pub async fn start_wire(name: &str, wire: Wire) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Backend::serve(name, listener, Behaviour::default(), wire)
    }

    /// Starts again on a given address with a given wire (after [`Backend::stop`]).
    pub async fn start_wire_on(name: &str, addr: SocketAddr, wire: Wire) -> Backend {
        let listener = TcpListener::bind(addr).await.unwrap();
        Backend::serve(name, listener, Behaviour::default(), wire)
    }

    /// Starts again on a given address (after [`Backend::stop`]), e.g. to bring a server back.
    pub async fn start_on(name: &str, addr: SocketAddr) -> Backend {
        let listener = TcpListener::bind(addr).await.unwrap();
        Backend::serve(name, listener, Behaviour::default(), Wire::Http1)
    }

    fn serve(name: &str, listener: TcpListener, behaviour: Behaviour, wire: Wire) -> Backend {
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(AtomicU64::new(0));
        let behaviour = Arc::new(Mutex::new(behaviour));
        let paths = Arc::new(Mutex::new(std::collections::HashMap::new()));
        let (stop, mut stop_rx) = tokio::sync::watch::channel(false);
        let (a, r, b, n) = (accepts.clone(), requests.clone(), behaviour.clone(), name.to_string());
        let p = paths.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => match accepted { Ok(x) => x, Err(_) => continue },
                    _ = stop_rx.changed() => break,
                };
                a.fetch_add(1, Ordering::SeqCst);
                let (r, b, n, p, wire) = (r.clone(), b.clone(), n.clone(), p.clone(), wire.clone());
                conns.spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (r, b, n) = (r.clone(), b.clone(), n.clone());
                        *p.lock().unwrap().entry(req.uri().path().to_string()).or_default() += 1;
                        async move {
                            r.fetch_add(1, Ordering::SeqCst);
                            Ok::<_, std::convert::Infallible>(answer(&n, req, &b).await)
                        }
                    });
                    match wire {
                        Wire::Http1 => serve_http1(stream, service).await,
                        Wire::H2c => serve_h2(stream, service).await,
                        Wire::Tls(config) => {
                            let Ok(tls) = tokio_rustls::TlsAcceptor::from(config).accept(stream).await else { return };
                            if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                                serve_h2(tls, service).await
                            } else {
                                serve_http1(tls, service).await
                            }
                        }
                    }
                });
            }
            // Dropping the set aborts every open connection: the server is gone.
            conns.abort_all();
        });
        Backend { name: name.to_string(), addr, accepts, requests, paths, stop, task, behaviour }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// TCP connections accepted so far.
    pub fn accepts(&self) -> u64 {
        self.accepts.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Requests received for exactly `path` so far.
    pub fn requests_to(&self, path: &str) -> u64 {
        self.paths.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// Closes the listener and every open connection.
    pub async fn stop(self) -> SocketAddr {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        self.addr
    }
}

async fn serve_http1<IO, S>(io: IO, service: S)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<BoxBody>, Error = std::convert::Infallible>,
    S::Future: Send + 'static,
{
    let _ =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), service).with_upgrades().await;
}

async fn serve_h2<IO, S>(io: IO, service: S)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<BoxBody>, Error = std::convert::Infallible>,
    S::Future: Send + 'static,
{
    let builder = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    let _ = builder.serve_connection(TokioIo::new(io), service).await;
}

async fn answer(name: &str, mut req: Request<Incoming>, behaviour: &Mutex<Behaviour>) -> Response<BoxBody> {
    let behaviour = behaviour.lock().unwrap().clone();
    let version = format!("{:?}", req.version());
    if let Some(protocol) = req.headers().get("upgrade").cloned() {
        // Switch protocols and echo every byte back, prefixed once with the backend's name.
        let upgrade = hyper::upgrade::on(&mut req);
        let greeting = format!("{name}:");
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let mut io = TokioIo::new(upgraded);
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = io.write_all(greeting.as_bytes()).await;
            let mut buf = [0u8; 4096];
            while let Ok(n) = io.read(&mut buf).await {
                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
        let mut r = Response::new(full(""));
        *r.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut().insert("upgrade", protocol);
        r.headers_mut().insert("connection", "upgrade".parse().unwrap());
        return r;
    }
    if let Some(delay) = behaviour.delay {
        tokio::time::sleep(delay).await;
    }
    let path = req.uri().path().to_string();
    let mut response = if path == "/healthz" {
        let mut r = Response::new(full("ok\n"));
        *r.status_mut() = hyper::StatusCode::from_u16(behaviour.health_status.unwrap_or(200)).unwrap();
        r
    } else if path == "/echo" {
        let body = req.into_body().map_err(std::io::Error::other);
        Response::new(BoxBody::new(body))
    } else if let Some(n) = path.strip_prefix("/bytes/") {
        let total: usize = n.parse().unwrap();
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let stream = futures_util::stream::unfold(total, move |left| {
            let chunk = chunk.clone();
            async move {
                if left == 0 {
                    return None;
                }
                let take = left.min(chunk.len());
                Some((Ok::<_, std::io::Error>(Frame::data(chunk.slice(..take))), left - take))
            }
        });
        Response::new(BoxBody::new(StreamBody::new(stream)))
    } else {
        let mut text = format!("{name} {} {}\n", req.method(), req.uri());
        for (k, v) in req.headers() {
            text.push_str(&format!("{}: {}\n", k, v.to_str().unwrap_or("?")));
        }
        Response::new(full(text))
    };
    response.headers_mut().insert("x-backend", name.parse().unwrap());
    response.headers_mut().insert("x-version", version.parse().unwrap());
    response
}

fn full(text: impl Into<Bytes>) -> BoxBody {
    BoxBody::new(Full::new(text.into()).map_err(|never| match never {}))
}

/// A porter started from YAML, with its temp dir (certs live in `dir/certs`).
pub struct TestPorter {
    pub porter: Option<porter::Porter>,
    pub dir: tempfile::TempDir,
    pub https: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
}

impl TestPorter {
    /// `yaml` may use `{certs}` for the certificate folder; listeners should use port 0.
    pub async fn start(yaml: &str) -> TestPorter {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("certs")).unwrap();
        TestPorter::start_in(dir, yaml).await
    }

    pub async fn start_in(dir: tempfile::TempDir, yaml: &str) -> TestPorter {
        TestPorter::start_tweaked(dir, yaml, |_| {}).await
    }

    /// Like `start_in`, with the loaded configuration adjusted first: for the
    /// few settings the library takes that YAML does not (e.g. `AcmeConfig::retry_min`).
    pub async fn start_tweaked(
        dir: tempfile::TempDir,
        yaml: &str,
        tweak: impl FnOnce(&mut porter::Config),
    ) -> TestPorter {
        let path = dir.path().join("porter.yaml");
        std::fs::write(&path, yaml).unwrap();
        let mut config = porter::Config::load(&path).unwrap_or_else(|e| panic!("test config invalid: {e}"));
        tweak(&mut config);
        let porter = porter::start(config).await.unwrap();
        TestPorter { https: porter.https_addr, http: porter.http_addr, porter: Some(porter), dir }
    }

    /// Rewrites the config file with `yaml` and reloads porter from it, as SIGHUP does.
    pub fn reload(&self, yaml: &str) {
        let path = self.dir.path().join("porter.yaml");
        std::fs::write(&path, yaml).unwrap();
        let config = porter::Config::load(&path).unwrap_or_else(|e| panic!("test config invalid: {e}"));
        self.porter.as_ref().unwrap().reload(&config).unwrap();
    }

    pub fn certs_dir(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    pub fn https_url(&self, path: &str) -> String {
        format!("https://localhost:{}{}", self.https.unwrap().port(), path)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://localhost:{}{}", self.http.unwrap().port(), path)
    }

    /// A URL on the admin listener (`listen.admin` must be set).
    pub fn admin_url(&self, path: &str) -> String {
        let admin = self.porter.as_ref().and_then(|p| p.admin_addr).expect("listen.admin is set");
        format!("http://{admin}{path}")
    }

    pub async fn stop(mut self) {
        if let Some(porter) = self.porter.take() {
            porter.shutdown(Duration::from_secs(5)).await;
        }
    }

    /// Stops porter and hands back its folder, for a restart on the same files.
    pub async fn stop_keep_dir(mut self) -> tempfile::TempDir {
        if let Some(porter) = self.porter.take() {
            porter.shutdown(Duration::from_secs(5)).await;
        }
        self.dir
    }

    pub fn porter(&self) -> &porter::Porter {
        self.porter.as_ref().expect("porter running")
    }
}

/// Listeners on ephemeral ports and a certs folder, the common head of test configs.
pub fn listen_block() -> &'static str {
    "listen:\n  https: \"127.0.0.1:0\"\n  http: \"127.0.0.1:0\"\ntls:\n  certs: certs\n"
}

/// The most common test config: both listeners, plaintext serving routes (no redirect),
/// one upstream `web` over `servers`, and a catch-all route to it.
pub fn proxy_yaml(servers: &[(&Backend, u32)]) -> String {
    format!(
        "{}http:\n  redirect: false\nupstreams:\n{}routes:\n  - upstream: web\n",
        listen_block(),
        upstream_block("web", servers)
    )
}

/// One upstream named `name` over `backends` with the given weights.
pub fn upstream_block(name: &str, servers: &[(&Backend, u32)]) -> String {
    let mut s = format!("  {name}:\n    servers:\n");
    for (b, w) in servers {
        s.push_str(&format!("      - url: \"{}\"\n        weight: {w}\n", b.url()));
    }
    s
}

/// Writes `NAME.crt` + `NAME.key` for `names` into `dir`; returns the certificate's DER.
pub fn write_cert(dir: &Path, file_stem: &str, names: &[&str]) -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.self_signed(&key).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(format!("{file_stem}.crt")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{file_stem}.key")), key.serialize_pem()).unwrap();
    cert.der().to_vec()
}

/// reqwest's client builder with porter's crypto provider (aws-lc-rs) installed as
/// the process default first: reqwest is built without a provider of its own (its
/// choice would be ring, a second crypto library in the test build). Every client
/// comes from here; clippy.toml refuses `reqwest::Client::builder`/`new` elsewhere.
#[allow(clippy::disallowed_methods)]
pub fn http_client() -> reqwest::ClientBuilder {
    // Err: already installed (by an earlier call, or by a test with its own provider).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
}

/// A client that trusts anything (test certs are self-signed), keeps connections alive,
/// and sends every host name in `resolve` to `addr` (so SNI and Host are that name).
pub fn client_for(addr: SocketAddr, resolve: &[&str]) -> reqwest::Client {
    let mut builder = http_client()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .tls_info(true)
        .no_proxy();
    for host in resolve {
        builder = builder.resolve(host, addr);
    }
    builder.build().unwrap()
}

/// Plain client: no redirects followed, no proxy.
pub fn plain_client() -> reqwest::Client {
    http_client().redirect(reqwest::redirect::Policy::none()).no_proxy().build().unwrap()
}

/// An HTTP/1.1 client request to porter over a hyper connection; for tests that need
/// exact control of headers (reqwest adds some).
pub async fn raw_http1(addr: SocketAddr, req: Request<Full<Bytes>>) -> Response<Bytes> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let response = sender.send_request(req).await.unwrap();
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

/// Lines `name: value` of an echo-headers answer, lower-case names.
pub fn echoed_header<'a>(body: &'a str, name: &str) -> Vec<&'a str> {
    body.lines().filter_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": "))).collect()
}
