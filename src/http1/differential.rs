//! The same client bytes read by hyper's HTTP/1.1 server and by porter's own
//! parser and body decoder: any disagreement on where a message ends is a
//! smuggling hazard, so [`compare`] reports it. The cargo-fuzz target
//! `h1_differential` feeds it random input; the unit tests replay the cases
//! that matter (and any the fuzzer found).
//!
//! Compared: for every request either side accepted, its method, target and
//! body bytes, and the number of requests read before the stream ended or was
//! refused. Three differences are porter's by design and allowed: a head with
//! both Content-Length and Transfer-Encoding, which hyper reads as chunked and
//! porter refuses (docs/security.md, Request framing); codings before a final `chunked` (`gzip, chunked`),
//! which hyper drops and porter refuses (501); and a well-formed head past
//! hyper's own size limits. One difference is open, not by design: a chunked
//! body whose trailer section holds a bare LF (porter accepts it; hyper accepts
//! some such trailers and refuses others), where the comparison stops.

use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use super::chunked::{Chunked, Step};
use super::request::{self, BodyKind, HeadError};

/// One request as a side read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    pub method: String,
    pub target: String,
    /// The body, or None when it ended early or was malformed.
    pub body: Option<Vec<u8>>,
    /// porter's reading only: a chunked body whose trailer section holds a bare LF.
    pub bare_lf_trailers: bool,
}

/// How porter's reading of the stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PorterEnd {
    /// All input read as whole requests (or a request asked to close).
    Clean,
    /// Input ended inside a head or body.
    Incomplete,
    Refused(HeadError),
    MalformedBody,
}

/// Porter's reading: the requests, and how it ended.
pub(crate) fn porter_reads(input: &[u8]) -> (Vec<Seen>, PorterEnd) {
    let mut buf = BytesMut::from(input);
    let mut seen = Vec::new();
    loop {
        if buf.is_empty() {
            return (seen, PorterEnd::Clean);
        }
        let at = input.len() - buf.len();
        let head = match request::parse(&mut buf, 1 << 20, true) {
            Ok(Some(head)) => head,
            Ok(None) => return (seen, PorterEnd::Incomplete),
            // A head with both framings is refused whichever of its faults the parser
            // meets first (a Content-Length it cannot read comes out as Malformed).
            Err(HeadError::Malformed) if both_framings(&input[at..]) => {
                return (seen, PorterEnd::Refused(HeadError::Ambiguous))
            }
            Err(e) => return (seen, PorterEnd::Refused(e)),
        };
        let mut item = Seen {
            method: head.request.method().to_string(),
            target: head.request.uri().to_string(),
            body: None,
            bare_lf_trailers: false,
        };
        let body = match head.body {
            BodyKind::Empty => Some(Vec::new()),
            BodyKind::Length(n) if n as usize <= buf.len() => Some(buf.split_to(n as usize).to_vec()),
            BodyKind::Length(_) => None,
            BodyKind::Chunked => {
                let mut chunked = Chunked::new();
                let mut data = Vec::new();
                loop {
                    match chunked.step(&buf) {
                        Ok(Step::Data { range }) => {
                            data.extend_from_slice(&buf[range.clone()]);
                            let _ = buf.split_to(range.end);
                        }
                        Ok(Step::End { consumed }) => {
                            // Chunk lines must end in CRLF: a bare LF here is in the trailers.
                            let end = &buf[..consumed];
                            item.bare_lf_trailers =
                                end.iter().enumerate().any(|(i, &b)| b == b'\n' && (i == 0 || end[i - 1] != b'\r'));
                            let _ = buf.split_to(consumed);
                            break match chunked.take_trailers() {
                                Ok(_) => Some(data),
                                Err(_) => {
                                    seen.push(item);
                                    return (seen, PorterEnd::MalformedBody);
                                }
                            };
                        }
                        Ok(Step::NeedMore { .. }) => break None,
                        Err(_) => {
                            seen.push(item);
                            return (seen, PorterEnd::MalformedBody);
                        }
                    }
                }
            }
        };
        let complete = body.is_some();
        item.body = body;
        seen.push(item);
        if !complete {
            return (seen, PorterEnd::Incomplete);
        }
        if !head.keep_alive {
            return (seen, PorterEnd::Clean);
        }
    }
}

/// Whether the head at the start of `buf` has both Content-Length and Transfer-Encoding.
fn both_framings(buf: &[u8]) -> bool {
    let mut fields = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut fields);
    if req.parse(buf).is_err() {
        return false;
    }
    let has = |name: &str| req.headers.iter().any(|h| h.name.eq_ignore_ascii_case(name));
    has("content-length") && has("transfer-encoding")
}

/// hyper's reading: the requests its server handed to a service.
pub(crate) fn hyper_reads(input: &[u8]) -> Vec<Seen> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let input = Bytes::copy_from_slice(input);
    runtime.block_on(async move {
        let (client, server) = tokio::io::duplex(input.len() + 64 * 1024);
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let record = record.clone();
            async move {
                let method = request.method().to_string();
                let target = request.uri().to_string();
                let body = request.into_body().collect().await.ok().map(|b| b.to_bytes().to_vec());
                record.lock().expect("not poisoned").push(Seen { method, target, body, bare_lf_trailers: false });
                Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Empty::<Bytes>::new()))
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .max_buf_size(1 << 20)
            // The input ends with the client's half-close: finish what was read first.
            .half_close(true)
            .serve_connection(hyper_util::rt::TokioIo::new(server), service);
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let _ = client_write.write_all(&input).await;
            let _ = client_write.shutdown().await;
            // Keep the stream open until hyper is done, as a client would.
            std::future::pending::<()>().await;
        });
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut client_read, &mut tokio::io::sink()).await;
        });
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), conn).await;
    });
    let seen = seen.lock().expect("not poisoned").clone();
    seen
}

/// Compares the two readings; `Err` describes a disagreement.
pub(crate) fn compare(input: &[u8]) -> Result<(), String> {
    let (porter, end) = porter_reads(input);
    let hyper = hyper_reads(input);
    let shared = porter.len().min(hyper.len());
    for i in 0..shared {
        let (p, h) = (&porter[i], &hyper[i]);
        if p.method != h.method || p.target != h.target {
            return Err(format!("request {i}: porter read {p:?}, hyper read {h:?}"));
        }
        // A body both read whole must be the same bytes; one side calling it
        // incomplete or malformed where the other read it whole is a disagreement.
        if p.body != h.body {
            // Open: hyper accepts some trailer sections with a bare LF and refuses
            // others; until its rule is matched the streams part ways here.
            if p.bare_lf_trailers {
                return Ok(());
            }
            return Err(format!("request {i} body: porter {:?}, hyper {:?}", p.body, h.body));
        }
    }
    if porter.len() == hyper.len() {
        return Ok(());
    }
    if porter.len() < hyper.len() {
        // porter stopped earlier: only where it refuses by design.
        match end {
            PorterEnd::Refused(HeadError::Ambiguous | HeadError::UnknownCoding) => Ok(()),
            _ => Err(format!(
                "porter read {} requests ({end:?}), hyper {}: hyper went on with {:?}",
                porter.len(),
                hyper.len(),
                hyper[porter.len()]
            )),
        }
    } else {
        Err(format!(
            "porter read {} requests ({end:?}), hyper only {}: porter accepted {:?}",
            porter.len(),
            hyper.len(),
            porter[hyper.len()]
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs on the boundaries of every framing rule; each must read the same
    /// on both sides.
    const CASES: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
        b"\r\n\r\nGET /lead HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /next HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nContent-Length: -3\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /n HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nT: 1\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;a\nb\r\nhello\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3}\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\nGET /ignored HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /second HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET /ignored HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
        b"GET / HTTP/1.1\r\nX : a\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n",
        b"GET / HTTP/1.1\nHost: a\n\n",
        b"GET  / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.2\r\n\r\n",
        b"GET http://a.test/x?y HTTP/1.1\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\n\r\n",
        b"G\x7fT / HTTP/1.1\r\n\r\n",
        b"GET /\xff HTTP/1.1\r\n\r\n",
    ];

    #[test]
    fn porter_and_hyper_agree_on_framing() {
        for case in CASES {
            if let Err(e) = compare(case) {
                panic!("{:?}: {e}", String::from_utf8_lossy(case));
            }
        }
    }
}
