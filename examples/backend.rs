//! A small, fast HTTP backend for demos and for porter's benchmark harness
//! (`bench/`).
//!
//! ```text
//! cargo run --release --example backend -- \
//!     --listen 127.0.0.1:9001=a --listen 127.0.0.1:9002=b [--body-size N] [--threads N]
//! ```
//!
//! Listeners are given with `--listen ADDR=NAME`, repeated. `--listen ADDR`
//! without `=NAME` takes its name from the `--name` given in the same position
//! (`--listen 127.0.0.1:9001 --name a --listen 127.0.0.1:9002 --name b`), or
//! else `a`, `b`, `c`... by position.
//!
//! Every request gets `200` with header `x-backend: NAME` and the body
//! `backend NAME: METHOD PATH\n`, or, with `--body-size N`, N bytes of `x`
//! (one shared buffer, no per-request copy). `GET /healthz` always gets
//! `200 ok`. A request body is read and thrown away before the response is
//! sent, so keep-alive survives requests with bodies.
//!
//! Connections speak HTTP/1.1 with keep-alive, or HTTP/2 over cleartext (h2c,
//! prior knowledge) — hyper-util's auto builder tells them apart from the
//! first bytes. `--threads 1` (the default) runs everything on a
//! current-thread tokio runtime; `--threads N` uses a multi-thread runtime
//! with N workers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

#[derive(Parser, Debug)]
#[command(about = "Fast demo/benchmark HTTP backend (HTTP/1.1 + h2c)")]
struct Args {
    /// Address to listen on, as ADDR or ADDR=NAME; repeatable.
    #[arg(long = "listen", required = true)]
    listen: Vec<String>,

    /// Name for the --listen in the same position (when it has no `=NAME`).
    #[arg(long = "name")]
    name: Vec<String>,

    /// Answer every request (but /healthz) with this many bytes of 'x'.
    #[arg(long = "body-size")]
    body_size: Option<usize>,

    /// Runtime worker threads; 1 = current-thread runtime.
    #[arg(long = "threads", default_value_t = 1)]
    threads: usize,
}

/// What one listener answers with; shared by all its connections.
struct Site {
    name: String,
    x_backend: HeaderValue,
    fixed_body: Option<Bytes>,
}

static TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain");
static OCTET_STREAM: HeaderValue = HeaderValue::from_static("application/octet-stream");

fn parse_listeners(args: &Args) -> Result<Vec<(SocketAddr, String)>, String> {
    let mut out = Vec::with_capacity(args.listen.len());
    for (i, spec) in args.listen.iter().enumerate() {
        let (addr, name) = match spec.split_once('=') {
            Some((addr, name)) => (addr, name.to_string()),
            None => {
                let name = args.name.get(i).cloned().unwrap_or_else(|| {
                    let letter = (b'a' + (i % 26) as u8) as char;
                    letter.to_string()
                });
                (spec.as_str(), name)
            }
        };
        let addr: SocketAddr = addr.parse().map_err(|e| format!("--listen {spec}: bad address: {e}"))?;
        if name.is_empty() {
            return Err(format!("--listen {spec}: empty name"));
        }
        out.push((addr, name));
    }
    Ok(out)
}

async fn handle(site: Arc<Site>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, mut body) = req.into_parts();
    // Drain any request body so the connection can be reused.
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            break;
        }
    }
    let healthz = parts.method == Method::GET && parts.uri.path() == "/healthz";
    let (payload, ctype) = if healthz {
        (Bytes::from_static(b"ok"), &TEXT_PLAIN)
    } else if let Some(fixed) = &site.fixed_body {
        (fixed.clone(), &OCTET_STREAM)
    } else {
        let text = format!("backend {}: {} {}\n", site.name, parts.method, parts.uri.path());
        (Bytes::from(text), &TEXT_PLAIN)
    };
    let mut resp = Response::new(Full::new(payload));
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, ctype.clone());
    headers.insert("x-backend", site.x_backend.clone());
    Ok(resp)
}

async fn serve(listener: TcpListener, site: Arc<Site>) {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("backend {}: accept: {e}", site.name);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let site = site.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(site.clone(), req));
            // Errors here are client resets and the like: nothing to do.
            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

async fn run(listeners: Vec<(SocketAddr, String)>, body_size: Option<usize>) -> std::io::Result<()> {
    let fixed_body = body_size.map(|n| Bytes::from(vec![b'x'; n]));
    let mut tasks = Vec::new();
    for (addr, name) in listeners {
        let listener = TcpListener::bind(addr).await?;
        let x_backend =
            HeaderValue::from_str(&name).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        eprintln!("backend {name}: listening on http://{addr}");
        let site = Arc::new(Site { name, x_backend, fixed_body: fixed_body.clone() });
        tasks.push(tokio::spawn(serve(listener, site)));
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = futures_all(tasks) => {}
    }
    Ok(())
}

async fn futures_all(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

fn main() {
    let args = Args::parse();
    let listeners = match parse_listeners(&args) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("backend: {e}");
            std::process::exit(2);
        }
    };
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads).enable_all().build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("backend: runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(listeners, args.body_size)) {
        eprintln!("backend: {e}");
        std::process::exit(1);
    }
}
