//! The same server bytes read by porter's own HTTP/1.1 client
//! (`upstream::http1`: the response head parser and the body decoder, over a
//! real loopback connection) and by hyper's client (`client::conn::http1`,
//! over an in-memory pipe), each after sending the same request. Where a
//! response ends decides what the next request on a pooled connection reads,
//! so any disagreement on framing is a response-splitting hazard; [`compare`]
//! reports it. The cargo-fuzz target `h1_response_differential` feeds it random
//! input; the unit tests below replay the cases that matter.
//!
//! Input: the first byte chooses the request's method (even, as `H`: HEAD;
//! odd, as `G`: GET);
//! the rest is what the server sends before it closes its side.
//!
//! Compared: whether a response head was accepted, its status, whether its
//! body was read whole (not cut, not malformed), the body's bytes, and whether
//! the connection may carry another request afterwards (keep-alive, and no
//! stray bytes after the response). The differences porter makes by design are
//! all in [`allowed`].

use std::cell::RefCell;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;

use crate::body::RequestBody;
use crate::upstream::http1::{Conn, Framing, SendError, ServerIo, Timeouts};

/// How one side read the server's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// No response head: refused, or the server closed before one was whole.
    NoHead,
    /// A head, then a body that was cut short or malformed.
    BodyFailed { status: u16 },
    /// A whole response; `reusable`: the connection could carry the next request.
    Complete { status: u16, body: Vec<u8>, reusable: bool },
}

impl Read {
    fn status(&self) -> Option<u16> {
        match self {
            Read::NoHead => None,
            Read::BodyFailed { status } | Read::Complete { status, .. } => Some(*status),
        }
    }
}

/// Splits fuzzer input into the request's method and the server's bytes.
pub fn split(input: &[u8]) -> (Method, &[u8]) {
    match input.split_first() {
        Some((&b, rest)) if b & 1 == 0 => (Method::HEAD, rest),
        Some((_, rest)) => (Method::GET, rest),
        None => (Method::GET, input),
    }
}

thread_local! {
    // One runtime per thread, reused: building one per input would dominate a fuzz run.
    static RUNTIME: RefCell<tokio::runtime::Runtime> = RefCell::new(
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime"),
    );
}

/// Both readings of `input`: (porter, hyper).
pub fn reads(input: &[u8]) -> (Read, Read) {
    let (method, server) = split(input);
    let server = Bytes::copy_from_slice(server);
    RUNTIME.with(|rt| {
        rt.borrow().block_on(async {
            let porter = porter_reads(&method, server.clone()).await;
            let hyper = hyper_reads(&method, server).await;
            (porter, hyper)
        })
    })
}

/// The request both clients send (porter's own head, as `write_request_head` makes it).
fn request_head(method: &Method) -> &'static [u8] {
    if *method == Method::HEAD {
        b"HEAD / HTTP/1.1\r\nhost: fuzz.test\r\n\r\n"
    } else {
        b"GET / HTTP/1.1\r\nhost: fuzz.test\r\n\r\n"
    }
}

/// porter's reading: `Conn::send` on a loopback connection to a server that
/// writes `server` and closes its side, then the body read from the
/// `ResponseStream` to its end. Reusable when porter would pool the connection
/// (`take_reusable`) and the next request on it reads only the close, as the
/// pool's probe (`is_usable`) would see.
async fn porter_reads(method: &Method, server: Bytes) -> Read {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let peer = tokio::spawn(async move {
        let Ok((mut tcp, _)) = listener.accept().await else { return };
        read_request(&mut tcp).await;
        let _ = tcp.write_all(&server).await;
        let _ = tcp.shutdown().await;
        // Read the requests until porter closes, so no write of porter's fails early.
        let _ = tokio::io::copy(&mut tcp, &mut tokio::io::sink()).await;
    });
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect to 127.0.0.1");
    let conn = Conn::new(ServerIo::Plain(tcp), addr);
    // The server always closes: no read waits for these.
    let limit = Duration::from_secs(30);
    let timeouts = Timeouts { response_header: limit, send: limit, read: limit };
    let sent = conn.send(request_head(method), &mut RequestBody::empty(), Framing::None, method, timeouts).await;
    let read = match sent {
        Err(_) => Read::NoHead,
        Ok((parts, mut stream)) => {
            let status = parts.status.as_u16();
            let mut body = Vec::new();
            let mut failed = false;
            while let Some(frame) = stream.frame().await {
                match frame {
                    Ok(frame) => {
                        if let Some(data) = frame.data_ref() {
                            body.extend_from_slice(data);
                        }
                    }
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            if failed {
                Read::BodyFailed { status }
            } else {
                let reusable = match stream.take_reusable() {
                    None => false,
                    Some(conn) => {
                        let next = conn
                            .send(request_head(method), &mut RequestBody::empty(), Framing::None, method, timeouts)
                            .await;
                        matches!(next, Err(SendError::Closed { .. }))
                    }
                };
                Read::Complete { status, body, reusable }
            }
        }
    };
    let _ = peer.await;
    read
}

/// Reads one request head (neither client sends a body), as a server does
/// before it answers.
async fn read_request(io: &mut (impl tokio::io::AsyncRead + Unpin)) {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::with_capacity(128);
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 64];
        match io.read(&mut byte).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&byte[..n]),
        }
    }
}

/// How far hyper's side got, shared with the task reading the response.
#[derive(Debug, Default)]
struct Progress {
    read: Option<Read>,
}

/// Lets every task that can run, run: hyper's connection, the response task
/// and the pipe are all in memory on this thread, so after this nothing moves
/// until the pipe gets more bytes or closes.
async fn settle() {
    for _ in 0..64 {
        tokio::task::yield_now().await;
    }
}

/// hyper's reading: its client connection over an in-memory pipe. The server's
/// bytes arrive first without a close; whether the response ends there and the
/// connection stays open decides `reusable`. Then the server closes its side,
/// which ends a body read until close (or cuts one short).
async fn hyper_reads(method: &Method, server: Bytes) -> Read {
    let (client, pipe) = tokio::io::duplex(server.len() + 64 * 1024);
    let (mut pipe_read, mut pipe_write) = tokio::io::split(pipe);
    // The server reads the request before it answers: hyper's client refuses
    // bytes that come while no request is out.
    let (requested, request_read) = tokio::sync::oneshot::channel();
    let drain = tokio::spawn(async move {
        read_request(&mut pipe_read).await;
        let _ = requested.send(());
        let _ = tokio::io::copy(&mut pipe_read, &mut tokio::io::sink()).await;
    });
    let Ok((mut sender, conn)) =
        hyper::client::conn::http1::handshake::<_, http_body_util::Empty<Bytes>>(hyper_util::rt::TokioIo::new(client))
            .await
    else {
        unreachable!("an in-memory handshake does no I/O")
    };
    let conn = tokio::spawn(conn);
    let request = http::Request::builder()
        .method(method.clone())
        .uri("/")
        .header(http::header::HOST, "fuzz.test")
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("a valid request");
    let response = sender.send_request(request);
    let progress = Arc::new(Mutex::new(Progress::default()));
    let record = progress.clone();
    let reader = tokio::spawn(async move {
        let read = match response.await {
            Err(_) => Read::NoHead,
            Ok(response) => {
                let status = response.status().as_u16();
                match response.into_body().collect().await {
                    Ok(body) => Read::Complete { status, body: body.to_bytes().to_vec(), reusable: false },
                    Err(_) => Read::BodyFailed { status },
                }
            }
        };
        record.lock().expect("not poisoned").read = Some(read);
    });
    let _ = request_read.await;
    let _ = pipe_write.write_all(&server).await;
    settle().await;
    // Complete before any close, and hyper still holds the connection open for the next request.
    let reusable = matches!(progress.lock().expect("not poisoned").read, Some(Read::Complete { .. }))
        && !conn.is_finished()
        && !sender.is_closed();
    let _ = pipe_write.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(10), reader).await;
    drop(sender);
    conn.abort();
    drain.abort();
    let read = progress.lock().expect("not poisoned").read.take();
    match read {
        Some(Read::Complete { status, body, .. }) => Read::Complete { status, body, reusable },
        Some(read) => read,
        None => panic!("hyper's client neither answered nor failed after the server closed"),
    }
}

/// What the response head says about framing, read with httparse (the parser
/// under both sides) for the allowed differences.
#[derive(Debug, Default)]
struct Head {
    http10: bool,
    status: u16,
    /// Content-Length fields, and whether every one is a single plain decimal
    /// number, all equal.
    lengths: usize,
    lengths_plain_and_equal: bool,
    transfer_encoding: bool,
    /// A Transfer-Encoding value with a byte outside visible ASCII.
    transfer_encoding_opaque: bool,
    len: usize,
}

/// The final (non-1xx) head at the start of `data`, when httparse reads it whole.
fn final_head(mut data: &[u8]) -> Option<Head> {
    loop {
        let mut fields = [httparse::EMPTY_HEADER; 128];
        let mut res = httparse::Response::new(&mut fields);
        let Ok(httparse::Status::Complete(len)) = res.parse(data) else { return None };
        let status = res.code?;
        if (100..200).contains(&status) && status != 101 {
            data = &data[len..];
            continue;
        }
        let mut head =
            Head { http10: res.version == Some(0), status, lengths_plain_and_equal: true, len, ..Head::default() };
        let mut first: Option<&[u8]> = None;
        for field in res.headers.iter() {
            if field.name.eq_ignore_ascii_case("content-length") {
                head.lengths += 1;
                let value = field.value.trim_ascii();
                let plain = !value.is_empty() && value.iter().all(u8::is_ascii_digit);
                let equal = first.is_none_or(|f| f == value);
                head.lengths_plain_and_equal &= plain && equal;
                first.get_or_insert(value);
            } else if field.name.eq_ignore_ascii_case("transfer-encoding") {
                head.transfer_encoding = true;
                head.transfer_encoding_opaque |= !field.value.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b));
            }
        }
        return Some(head);
    }
}

/// The differences porter makes by design, in one place. `porter` and `hyper`
/// already disagree; `Some(why)` when that disagreement is allowed.
pub fn allowed(input: &[u8], porter: &Read, hyper: &Read) -> Option<&'static str> {
    let (_, server) = split(input);
    let head = final_head(server)?;
    if *porter == Read::NoHead {
        // A switch to another protocol nobody asked for: porter answers 502
        // (upgrades go over hyper's client).
        if head.status == 101 {
            return Some("porter refuses a 101 to a request that asked for no upgrade");
        }
        // docs/security.md, Who is blamed: a response porter cannot frame is refused, never guessed at:
        // both Content-Length and Transfer-Encoding, or Content-Length that is not
        // one plain number (hyper reads "3, 3", and ignores the field on a
        // bodiless response).
        if head.lengths > 0 && (head.transfer_encoding || !head.lengths_plain_and_equal) {
            return Some("porter refuses a response it cannot frame by one Content-Length");
        }
        // Codings are tokens; hyper reads a body whose Transfer-Encoding it cannot
        // read as text to close, porter refuses the response.
        if head.transfer_encoding_opaque {
            return Some("porter refuses a Transfer-Encoding that is not visible ASCII");
        }
        // porter's own limit on a response head (hyper's is larger).
        if head.len > 64 * 1024 {
            return Some("porter refuses a response head over 64 KiB");
        }
    }
    // RFC 9112 §6.1: an HTTP/1.0 response with Transfer-Encoding has faulty
    // framing; hyper refuses it, porter may read it but must not reuse the connection.
    if head.http10 && head.transfer_encoding && *hyper == Read::NoHead {
        let reused = matches!(porter, Read::Complete { reusable: true, .. });
        return (!reused).then_some("porter reads an HTTP/1.0 response with Transfer-Encoding, then closes");
    }
    None
}

/// Compares the two readings of `input`; `Err` describes a disagreement that
/// [`allowed`] does not cover.
pub fn compare(input: &[u8]) -> Result<(), String> {
    let (porter, hyper) = reads(input);
    if agree(&porter, &hyper) || allowed(input, &porter, &hyper).is_some() {
        return Ok(());
    }
    Err(format!("porter read {porter:?}, hyper read {hyper:?}"))
}

/// Whether the two readings agree: both without a head; both failing in the body
/// (a cut or malformed body); or the same status, body bytes and reuse decision.
/// A head one side refused and the other read with a body it then failed on
/// ends the same way for a client (502, or a cut response): not a framing split.
fn agree(porter: &Read, hyper: &Read) -> bool {
    match (porter, hyper) {
        (Read::NoHead, Read::NoHead) => true,
        (Read::NoHead, Read::BodyFailed { .. }) | (Read::BodyFailed { .. }, Read::NoHead) => true,
        _ if porter.status() != hyper.status() => false,
        (Read::BodyFailed { .. }, Read::BodyFailed { .. }) => true,
        _ => porter == hyper,
    }
}

#[cfg(test)]
mod tests;
