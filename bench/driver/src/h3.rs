//! HTTP/3 load (quinn + h3, the crates porter serves with, on aws-lc-rs):
//!
//! * `h3`: closed loop over C QUIC connections (each on its own UDP socket)
//!   with S request streams in flight on each: every stream task sends a GET,
//!   reads the whole answer and sends the next, until the duration is over or
//!   `--requests` answers were counted. Latency is from opening the stream to
//!   the last byte of the body.
//! * `h3-handshakes`: a new QUIC connection (full TLS 1.3 handshake, no
//!   resumption, no 0-RTT) for every request, K in flight; latency covers the
//!   handshake, the HTTP/3 session set-up and the one GET.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use rustls::crypto::CryptoProvider;

use crate::{gather, print_tally, NoVerify, Tally, Target};

type SendRequest = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

fn client_config() -> io::Result<quinn::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let schemes = provider.signature_verification_algorithms.supported_schemes();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider as Arc<CryptoProvider>)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(schemes)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    // Every handshake a full one (as `connect` without --resume).
    tls.resumption = rustls::client::Resumption::disabled();
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(io::Error::other)?;
    Ok(quinn::ClientConfig::new(Arc::new(crypto)))
}

fn endpoint(config: &quinn::ClientConfig) -> io::Result<quinn::Endpoint> {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap())?;
    endpoint.set_default_client_config(config.clone());
    Ok(endpoint)
}

struct Session {
    send: SendRequest,
    connection: quinn::Connection,
    driver: tokio::task::JoinHandle<()>,
}

async fn connect(endpoint: &quinn::Endpoint, target: &Target) -> Result<Session, String> {
    let sni = target.sni.as_deref().unwrap_or("localhost");
    let connection = endpoint.connect(target.addr, sni).map_err(|e| e.to_string())?.await.map_err(|e| e.to_string())?;
    let (mut driver, send) =
        h3::client::new(h3_quinn::Connection::new(connection.clone())).await.map_err(|e| e.to_string())?;
    let driver = tokio::spawn(async move {
        let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    Ok(Session { send, connection, driver })
}

fn request(target: &Target) -> http::Request<()> {
    let authority = target
        .host
        .clone()
        .unwrap_or_else(|| format!("{}:{}", target.sni.as_deref().unwrap_or("localhost"), target.addr.port()));
    http::Request::get(format!("https://{authority}{}", target.path)).body(()).unwrap()
}

/// One GET on `send`: Ok(true) for a 200 with its body read to the end.
async fn get(send: &mut SendRequest, req: &http::Request<()>) -> Result<bool, String> {
    let mut r = http::Request::new(());
    *r.method_mut() = req.method().clone();
    *r.uri_mut() = req.uri().clone();
    let mut stream = send.send_request(r).await.map_err(|e| e.to_string())?;
    stream.finish().await.map_err(|e| e.to_string())?;
    let response = stream.recv_response().await.map_err(|e| e.to_string())?;
    while let Some(mut chunk) = stream.recv_data().await.map_err(|e| e.to_string())? {
        chunk.advance(chunk.remaining());
    }
    Ok(response.status() == http::StatusCode::OK)
}

fn record(t: &mut Tally, t0: Instant, r: Result<Result<bool, String>, tokio::time::error::Elapsed>) {
    match r {
        Ok(Ok(true)) => {
            t.ok += 1;
            t.lat_us.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
        }
        Ok(Ok(false)) => t.non200 += 1,
        Ok(Err(e)) => {
            t.errors += 1;
            t.first_error.get_or_insert(e);
        }
        Err(_) => {
            t.errors += 1;
            t.first_error.get_or_insert_with(|| "timeout".into());
        }
    }
}

/// One request, timed into `t`; after a failure, a millisecond's pause (no busy loop
/// against a target that refuses).
async fn timed(t: &mut Tally, timeout: Duration, request: impl Future<Output = Result<bool, String>>) {
    let t0 = Instant::now();
    let r = tokio::time::timeout(timeout, request).await;
    let failed = !matches!(r, Ok(Ok(_)));
    record(t, t0, r);
    if failed {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// `h3`: C connections x S concurrent streams, until `duration` or `requests`.
pub async fn run(target: Target, connections: usize, streams: usize, duration: f64, requests: u64) -> io::Result<()> {
    let config = client_config()?;
    let timeout = Duration::from_secs_f64(target.timeout);
    let req = Arc::new(request(&target));
    let target = Arc::new(target);
    // Connections are set up before the clock starts: this mode measures requests.
    let mut sessions = Vec::with_capacity(connections);
    for _ in 0..connections {
        let ep = endpoint(&config)?;
        let s = tokio::time::timeout(timeout, connect(&ep, &target))
            .await
            .map_err(|_| io::Error::other("QUIC handshake timed out"))?
            .map_err(io::Error::other)?;
        sessions.push((ep, s));
    }
    // Requests started, shared by all streams: stops at exactly `requests` (0: no limit).
    let started = Arc::new(AtomicU64::new(0));
    let limit = if requests == 0 { u64::MAX } else { requests };
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(duration);
    let mut handles = Vec::with_capacity(connections * streams);
    for (_, s) in &sessions {
        for _ in 0..streams {
            let (mut send, req, started) = (s.send.clone(), req.clone(), started.clone());
            handles.push(tokio::spawn(async move {
                let mut t = Tally::default();
                while Instant::now() < deadline && started.fetch_add(1, Ordering::Relaxed) < limit {
                    timed(&mut t, timeout, get(&mut send, &req)).await;
                }
                t
            }));
        }
    }
    let all = gather(handles).await?;
    let elapsed = start.elapsed().as_secs_f64();
    for (ep, s) in sessions {
        s.connection.close(0u32.into(), b"done");
        s.driver.abort();
        ep.wait_idle().await;
    }
    print_tally(all, elapsed);
    Ok(())
}

/// `h3-handshakes`: a new QUIC connection per request, `concurrency` in flight.
pub async fn run_handshakes(target: Target, concurrency: usize, duration: f64) -> io::Result<()> {
    let config = client_config()?;
    let timeout = Duration::from_secs_f64(target.timeout);
    let req = Arc::new(request(&target));
    let target = Arc::new(target);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(duration);
    let mut handles = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        // One UDP socket per worker, reused for its successive connections.
        let ep = endpoint(&config)?;
        let (req, target) = (req.clone(), target.clone());
        handles.push(tokio::spawn(async move {
            let mut t = Tally::default();
            while Instant::now() < deadline {
                let request = async {
                    let mut s = connect(&ep, &target).await?;
                    let ok = get(&mut s.send, &req).await;
                    s.connection.close(0u32.into(), b"done");
                    s.driver.abort();
                    ok
                };
                timed(&mut t, timeout, request).await;
            }
            t
        }));
    }
    print_tally(gather(handles).await?, start.elapsed().as_secs_f64());
    Ok(())
}
