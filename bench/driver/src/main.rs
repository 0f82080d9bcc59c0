//! Load driver for porter's benchmark harness (`bench/bench.py`), for the two
//! jobs that wrk and h2load cannot do with the control the harness needs:
//!
//! * `connect`: closed-loop load where every request is made on a new
//!   connection (`Connection: close`, read to EOF), over TLS (rustls,
//!   aws-lc-rs) or plain TCP. `--kx pq` offers X25519MLKEM768 first, with an
//!   X25519 share alongside (as browsers do: a server without ML-KEM picks
//!   X25519 with no extra round trip); `--kx x25519` offers X25519 only. The
//!   group each handshake settled on is counted and reported. Session resumption is explicit: without `--resume` the
//!   client keeps no session at all (every handshake is a full TLS 1.3
//!   handshake); with `--resume` it keeps rustls' in-memory session cache, so
//!   after the first handshake each new connection offers a ticket / session
//!   id and the server may resume. The number of handshakes actually resumed
//!   is counted and reported.
//! * `rate` (src/rate.rs): open-loop load at a fixed request rate over
//!   keep-alive connections, latency counted from when each request was due.
//! * `h3` and `h3-handshakes` (src/h3.rs): HTTP/3 over QUIC, many streams on
//!   a few connections, or a new QUIC connection per request.
//! * `idle`: opens N keep-alive connections (plain or TLS), makes one
//!   request on each, then holds them open and idle; prints `READY {json}`
//!   and waits for a line on stdin (or `--hold` seconds), then closes all.
//!
//! The client never checks the server's certificate or signatures (like wrk
//! and h2load): it is a load generator for a machine-local benchmark.
//! Output is one JSON object per run on stdout.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod h3;
mod idle;
mod rate;
mod tally;
mod tls;

use clap::{Parser, Subcommand};
use rustls::pki_types::ServerName;
use rustls::HandshakeKind;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use tally::{gather, print_tally, Tally};
use tls::{tls_parts, NoVerify};

#[derive(Parser)]
#[command(about = "porter bench load driver")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct Target {
    /// Server address, e.g. 127.0.0.1:18443.
    #[arg(long)]
    addr: SocketAddr,
    /// Speak TLS (with this SNI name) instead of plain TCP.
    #[arg(long)]
    sni: Option<String>,
    /// Host header value (default: the SNI name, else the address).
    #[arg(long)]
    host: Option<String>,
    /// Request path.
    #[arg(long, default_value = "/")]
    path: String,
    /// Per-request (connect + handshake + response) timeout in seconds.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Key exchange groups the TLS client offers.
    #[arg(long, value_enum, default_value_t = Kx::Pq)]
    kx: Kx,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq)]
enum Kx {
    /// X25519MLKEM768 first, then X25519 (both key shares sent).
    Pq,
    /// X25519 only (classic).
    X25519,
}

/// A closed loop of new connections: how many in flight, for how long.
#[derive(clap::Args)]
struct ClosedLoop {
    /// Concurrent connections in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
}

#[derive(Subcommand)]
enum Cmd {
    /// New connection per request, closed loop, for a fixed duration.
    Connect {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        load: ClosedLoop,
        /// Keep and offer TLS sessions (resumption); default: none.
        #[arg(long)]
        resume: bool,
    },
    /// Fixed request rate over keep-alive connections, for a fixed duration.
    Rate {
        #[command(flatten)]
        target: Target,
        /// Requests per second, over all connections.
        #[arg(long, default_value_t = 10_000.0)]
        rate: f64,
        /// Keep-alive connections (one request in flight on each).
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
    },
    /// HTTP/3: C QUIC connections x S concurrent GET streams, closed loop.
    H3 {
        #[command(flatten)]
        target: Target,
        /// QUIC connections (each on its own UDP socket).
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Concurrent request streams on each connection.
        #[arg(long, default_value_t = 16)]
        streams: usize,
        /// Seconds to run at most.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// Stop after this many requests (0: run for the whole duration).
        #[arg(long, default_value_t = 0)]
        requests: u64,
    },
    /// HTTP/3 with a new QUIC connection (full handshake) per request, closed loop.
    H3Handshakes {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        load: ClosedLoop,
    },
    /// Open N keep-alive connections, one request each, hold them idle.
    Idle {
        #[command(flatten)]
        target: Target,
        /// Connections to open.
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        /// Connections being opened at once.
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
        /// Longest time to hold them (seconds) if stdin stays open.
        #[arg(long, default_value_t = 120.0)]
        hold: f64,
    },
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What a TLS handshake settled on.
#[derive(Clone, Copy, Default)]
struct Hs {
    resumed: bool,
    pq: bool,
}

/// Connects (and handshakes); returns the stream and what TLS negotiated.
async fn open(target: &Target, tls: Option<&(TlsConnector, ServerName<'static>)>) -> io::Result<(Box<dyn Io>, Hs)> {
    let tcp = TcpStream::connect(target.addr).await?;
    tcp.set_nodelay(true)?;
    match tls {
        None => Ok((Box::new(tcp), Hs::default())),
        Some((connector, name)) => {
            let stream = connector.connect(name.clone(), tcp).await?;
            let conn = stream.get_ref().1;
            let hs = Hs {
                resumed: conn.handshake_kind() == Some(HandshakeKind::Resumed),
                pq: conn.negotiated_key_exchange_group().map(|g| g.name()) == Some(rustls::NamedGroup::X25519MLKEM768),
            };
            Ok((Box::new(stream), hs))
        }
    }
}

fn request_bytes(target: &Target, close: bool) -> Vec<u8> {
    let host = target
        .host
        .clone()
        .or_else(|| target.sni.clone().map(|s| format!("{s}:{}", target.addr.port())))
        .unwrap_or_else(|| target.addr.to_string());
    let conn = if close { "close" } else { "keep-alive" };
    format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: porter-bench-driver\r\nConnection: {conn}\r\n\r\n",
        target.path
    )
    .into_bytes()
}

fn is_200(head: &[u8]) -> bool {
    head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200")
}

/// One request on a new connection, read to EOF.
async fn one_closed(
    target: &Target,
    tls: Option<&(TlsConnector, ServerName<'static>)>,
    req: &[u8],
    buf: &mut Vec<u8>,
) -> io::Result<(bool, Hs)> {
    let (mut stream, hs) = open(target, tls).await?;
    stream.write_all(req).await?;
    buf.clear();
    match stream.read_to_end(buf).await {
        Ok(_) => {}
        // A server that closes TCP without close_notify after a complete
        // response is fine for this purpose.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !buf.is_empty() => {}
        Err(e) => return Err(e),
    }
    Ok((is_200(buf), hs))
}

async fn run_connect(target: Target, concurrency: usize, duration: f64, resume: bool) -> io::Result<()> {
    let tls = Arc::new(tls_parts(&target, resume)?);
    let req: Arc<[u8]> = request_bytes(&target, true).into();
    let target = Arc::new(target);
    let timeout = Duration::from_secs_f64(target.timeout);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(duration);
    let mut handles = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        // With resumption, each worker has its own session cache, so it
        // resumes with the ticket from its own previous connection (as wrk
        // does with SSL_clear); one shared cache holds only a few tickets per
        // server name and would fall back to full handshakes under concurrency.
        let tls = if resume { Arc::new(tls_parts(&target, true)?) } else { tls.clone() };
        let (req, target) = (req.clone(), target.clone());
        handles.push(tokio::spawn(async move {
            let mut t = Tally::default();
            let mut buf = Vec::with_capacity(4096);
            while Instant::now() < deadline {
                let t0 = Instant::now();
                match tokio::time::timeout(timeout, one_closed(&target, tls.as_ref().as_ref(), &req, &mut buf)).await {
                    Ok(Ok((ok, hs))) => {
                        if ok {
                            t.ok += 1;
                            t.lat_us.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        } else {
                            t.non200 += 1;
                        }
                        t.resumed += hs.resumed as u64;
                        t.pq += hs.pq as u64;
                    }
                    Ok(Err(e)) => {
                        t.errors += 1;
                        t.first_error.get_or_insert_with(|| e.to_string());
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err(_) => {
                        t.errors += 1;
                        t.first_error.get_or_insert_with(|| "timeout".into());
                    }
                }
            }
            t
        }));
    }
    print_tally(gather(handles).await?, start.elapsed().as_secs_f64());
    Ok(())
}

/// Reads one HTTP/1.1 response (Content-Length or chunked) and leaves the
/// connection open.
async fn read_one_response(stream: &mut BufReader<Box<dyn Io>>) -> io::Result<bool> {
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    let ok = is_200(line.as_bytes());
    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    loop {
        line.clear();
        if stream.read_line(&mut line).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let k = k.trim();
            if k.eq_ignore_ascii_case("content-length") {
                content_length = v.trim().parse().ok();
            } else if k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            }
        }
    }
    if chunked {
        loop {
            line.clear();
            stream.read_line(&mut line).await?;
            let size =
                usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16).map_err(io::Error::other)?;
            let mut skip = vec![0u8; size + 2];
            stream.read_exact(&mut skip).await?;
            if size == 0 {
                break;
            }
        }
    } else if let Some(n) = content_length {
        let mut skip = vec![0u8; n];
        stream.read_exact(&mut skip).await?;
    }
    Ok(ok)
}

fn main() {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let r = rt.block_on(async {
        match cli.cmd {
            Cmd::Connect { target, load, resume } => run_connect(target, load.concurrency, load.duration, resume).await,
            Cmd::Rate { target, rate, connections, duration } => rate::run(target, rate, connections, duration).await,
            Cmd::H3 { target, connections, streams, duration, requests } => {
                h3::run(target, connections, streams, duration, requests).await
            }
            Cmd::H3Handshakes { target, load } => h3::run_handshakes(target, load.concurrency, load.duration).await,
            Cmd::Idle { target, count, concurrency, hold } => idle::run(target, count, concurrency, hold).await,
        }
    });
    if let Err(e) = r {
        eprintln!("porter-bench-driver: {e}");
        std::process::exit(1);
    }
}
