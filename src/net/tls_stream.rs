//! A TLS server connection over TCP that holds no buffer while idle.
//!
//! Built on rustls' unbuffered API: porter owns the ciphertext buffers. The
//! incoming and outgoing record buffers come from a small per-thread pool only
//! while they hold bytes and go back as soon as they are empty; waiting for the
//! client's next request needs none (readiness, not a read). What an idle
//! connection keeps is the rustls session (keys, AEAD contexts) and the socket.
//!
//! rustls 0.23 hands decrypted records over as owned chunks: a record the
//! caller's buffer cannot take whole keeps its rest in `plain` until read.

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::proxy_protocol::ClientStream;
use crate::tls::{sni, LoadedCert};

/// Largest record on the wire: 16 KiB of plaintext plus header, padding and tag.
const MAX_RECORD: usize = 16384 + 256 + 5;
/// A record buffer holds two whole records: up to 32 KiB per read or write call.
const BUF_SIZE: usize = 2 * MAX_RECORD;
/// Plaintext encrypted into one record.
const MAX_PLAIN: usize = 16384;
/// Room kept per record for header, content type and tag (29 bytes at most in use).
const OVERHEAD: usize = 64;
const POOL_PER_THREAD: usize = 32;

thread_local! {
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    /// Small pieces of a vectored write gathered into one record.
    static GATHER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Bytes `start..end` of a pooled, fully initialised buffer.
struct Buf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl Buf {
    fn take() -> Buf {
        let data = POOL.with(|p| p.borrow_mut().pop()).unwrap_or_else(|| vec![0; BUF_SIZE]);
        Buf { data, start: 0, end: 0 }
    }

    fn give_back(self) {
        if self.data.len() == BUF_SIZE {
            POOL.with(|p| {
                let mut pool = p.borrow_mut();
                if pool.len() < POOL_PER_THREAD {
                    pool.push(self.data);
                }
            });
        }
    }
}

/// Gives a buffer back once nothing is left in it.
fn release_if_empty(slot: &mut Option<Buf>) {
    if slot.as_ref().is_some_and(|b| b.start == b.end) {
        slot.take().expect("checked").give_back();
    }
}

/// Writes one record or message into `out` with `f`, growing it if rustls asks for more room.
fn fill_out<E>(
    out: &mut Buf,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, E>,
    need: impl Fn(&E) -> Option<usize>,
) -> Result<(), E> {
    match f(&mut out.data[out.end..]) {
        Ok(n) => out.end += n,
        Err(e) => {
            let Some(required) = need(&e) else { return Err(e) };
            out.data.resize(out.end + required, 0);
            out.end += f(&mut out.data[out.end..])?;
        }
    }
    Ok(())
}

fn encode_need(e: &EncodeError) -> Option<usize> {
    match e {
        EncodeError::InsufficientSize(s) => Some(s.required_size),
        _ => None,
    }
}

fn encrypt_need(e: &EncryptError) -> Option<usize> {
    match e {
        EncryptError::InsufficientSize(s) => Some(s.required_size),
        _ => None,
    }
}

fn tls_error(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// What a call into the state machine is for.
enum Want<'a, 'b> {
    Handshake,
    /// Decrypt into the buffer (the rest of a record into `plain`).
    Read(&'a mut ReadBuf<'b>),
    /// Only learn whether plaintext is ready (it stays inside rustls).
    Peek,
    Write(&'a [IoSlice<'b>]),
    Close,
}

enum Outcome {
    /// Handshake complete; plaintext ready; written; close_notify queued.
    Done(usize),
    /// The peer's close_notify, or both sides closed.
    Eof,
    /// Nothing more without bytes from the socket.
    NeedInput,
}

pub(crate) struct TlsServerStream {
    io: ClientStream,
    conn: UnbufferedServerConnection,
    incoming: Option<Buf>,
    outgoing: Option<Buf>,
    /// Decrypted bytes not yet read, from `plain_pos`.
    plain: Vec<u8>,
    plain_pos: usize,
    peer_closed: bool,
    close_queued: bool,
    failed: bool,
    sni_cert: Option<Arc<LoadedCert>>,
}

impl TlsServerStream {
    pub(crate) fn new(config: Arc<ServerConfig>, io: ClientStream) -> Result<TlsServerStream, rustls::Error> {
        Ok(TlsServerStream {
            io,
            conn: UnbufferedServerConnection::new(config)?,
            incoming: None,
            outgoing: None,
            plain: Vec::new(),
            plain_pos: 0,
            peer_closed: false,
            close_queued: false,
            failed: false,
            sni_cert: None,
        })
    }

    pub(crate) fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    pub(crate) fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.conn.protocol_version()
    }

    /// The loaded certificate the client's SNI names exactly, if any (once, after the handshake).
    pub(crate) fn take_sni_cert(&mut self) -> Option<Arc<LoadedCert>> {
        self.sni_cert.take()
    }

    /// Runs the handshake to its end (the client's Finished received, session
    /// tickets and the server's last flight written).
    pub(crate) async fn handshake(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_handshake(cx)).await
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match self.step(Want::Handshake)? {
                Outcome::Done(_) => return self.poll_flush_out(cx),
                Outcome::Eof => return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into())),
                Outcome::NeedInput => {
                    if !ready!(self.poll_fill(cx))? {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "connection closed during the TLS handshake",
                        )));
                    }
                }
            }
        }
    }

    /// Ready when a read would return data or the end, without holding a buffer to wait.
    pub(crate) fn poll_wait_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.plain_pos < self.plain.len() || self.peer_closed || self.failed {
            return Poll::Ready(Ok(()));
        }
        loop {
            match self.step(Want::Peek) {
                Err(_) | Ok(Outcome::Done(_)) | Ok(Outcome::Eof) => return Poll::Ready(Ok(())),
                // A read reports the end (clean or not) and any error.
                Ok(Outcome::NeedInput) => match ready!(self.poll_fill(cx)) {
                    Ok(true) => continue,
                    Ok(false) | Err(_) => return Poll::Ready(Ok(())),
                },
            }
        }
    }

    /// Advances the state machine for `want` until it is served or needs input.
    fn step(&mut self, mut want: Want<'_, '_>) -> io::Result<Outcome> {
        if self.failed {
            return Err(tls_error("TLS connection failed earlier"));
        }
        let handshaking = matches!(want, Want::Handshake);
        loop {
            if handshaking {
                sni::clear();
            }
            let input: &mut [u8] = match &mut self.incoming {
                Some(b) => &mut b.data[b.start..b.end],
                None => &mut [],
            };
            let UnbufferedStatus { mut discard, state } = self.conn.process_tls_records(input);
            if handshaking {
                if let Some(cert) = sni::take() {
                    self.sni_cert = cert;
                }
            }
            let outcome = match state {
                Err(e) => {
                    self.discard(discard);
                    return Err(self.fail(e));
                }
                Ok(ConnectionState::EncodeTlsData(mut enc)) => {
                    let out = self.outgoing.get_or_insert_with(Buf::take);
                    fill_out(out, |b| enc.encode(b), encode_need).map_err(tls_error)?;
                    None
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    // The bytes stay in `outgoing`, written before the next wait for input.
                    transmit.done();
                    None
                }
                Ok(ConnectionState::ReadTraffic(mut traffic)) => match &mut want {
                    Want::Handshake | Want::Peek => Some(Outcome::Done(0)),
                    Want::Read(dst) => {
                        let before = dst.filled().len();
                        while dst.remaining() > 0 {
                            let Some(record) = traffic.next_record() else { break };
                            let record = record.map_err(tls_error)?;
                            discard += record.discard;
                            let n = record.payload.len().min(dst.remaining());
                            dst.put_slice(&record.payload[..n]);
                            if n < record.payload.len() {
                                self.plain.clear();
                                self.plain.extend_from_slice(&record.payload[n..]);
                                self.plain_pos = 0;
                            }
                        }
                        Some(Outcome::Done(dst.filled().len() - before))
                    }
                    Want::Write(_) | Want::Close => {
                        // Writing needs the WriteTraffic state rustls gives only once its
                        // plaintext is taken: keep it for the next read.
                        while let Some(record) = traffic.next_record() {
                            let record = record.map_err(tls_error)?;
                            discard += record.discard;
                            if self.plain_pos == self.plain.len() {
                                self.plain.clear();
                                self.plain_pos = 0;
                            }
                            self.plain.extend_from_slice(record.payload);
                        }
                        None
                    }
                },
                Ok(ConnectionState::PeerClosed) => {
                    self.peer_closed = true;
                    match want {
                        Want::Write(_) | Want::Close => None,
                        _ => Some(Outcome::Eof),
                    }
                }
                Ok(ConnectionState::Closed) => {
                    self.peer_closed = true;
                    match want {
                        Want::Write(_) => return Err(io::ErrorKind::BrokenPipe.into()),
                        Want::Close => Some(Outcome::Done(0)),
                        _ => Some(Outcome::Eof),
                    }
                }
                Ok(ConnectionState::BlockedHandshake) => Some(Outcome::NeedInput),
                Ok(ConnectionState::WriteTraffic(mut traffic)) => match &want {
                    Want::Write(bufs) => {
                        let out = self.outgoing.get_or_insert_with(Buf::take);
                        let n = encrypt_slices(&mut traffic, out, bufs)?;
                        Some(Outcome::Done(n))
                    }
                    Want::Close => {
                        let out = self.outgoing.get_or_insert_with(Buf::take);
                        fill_out(out, |b| traffic.queue_close_notify(b), encrypt_need).map_err(tls_error)?;
                        self.close_queued = true;
                        Some(Outcome::Done(0))
                    }
                    // TLS 1.3 lets the server write before the client's Finished: the
                    // handshake is over only when rustls says so (below).
                    Want::Handshake | Want::Read(_) | Want::Peek => Some(Outcome::NeedInput),
                },
                Ok(_) => return Err(tls_error("unexpected TLS state (early data is not enabled)")),
            };
            self.discard(discard);
            match outcome {
                // Handshake over and every message it queued (session tickets) encoded.
                Some(Outcome::NeedInput) if handshaking && !self.conn.is_handshaking() => return Ok(Outcome::Done(0)),
                Some(outcome) => return Ok(outcome),
                None => continue,
            }
        }
    }

    fn discard(&mut self, n: usize) {
        if let Some(b) = &mut self.incoming {
            b.start += n;
        }
        release_if_empty(&mut self.incoming);
    }

    /// After a fatal error rustls has queued an alert: encode it and try one write,
    /// without waiting (the connection is closed next).
    fn fail(&mut self, e: rustls::Error) -> io::Error {
        self.failed = true;
        // The input is dropped unread: processing it again would repeat the error.
        if let Some(b) = self.incoming.take() {
            b.give_back();
        }
        for _ in 0..4 {
            match self.conn.process_tls_records(&mut []).state {
                Ok(ConnectionState::EncodeTlsData(mut enc)) => {
                    let out = self.outgoing.get_or_insert_with(Buf::take);
                    if fill_out(out, |b| enc.encode(b), encode_need).is_err() {
                        break;
                    }
                }
                _ => break,
            }
        }
        let _ = self.poll_flush_out(&mut Context::from_waker(std::task::Waker::noop()));
        tls_error(e)
    }

    /// Reads more ciphertext, first writing what is owed (a handshake flight, tickets,
    /// a key update). `false` is the end of the stream. Waits holding no buffer.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        if let Poll::Ready(Err(e)) = self.poll_flush_out(cx) {
            return Poll::Ready(Err(e));
        }
        if self.incoming.is_none() {
            ready!(self.io.poll_wait_readable(cx))?;
        }
        let buf = self.incoming.get_or_insert_with(Buf::take);
        if buf.start > 0 && buf.data.len() - buf.end < MAX_RECORD {
            buf.data.copy_within(buf.start..buf.end, 0);
            buf.end -= buf.start;
            buf.start = 0;
        }
        if buf.end == buf.data.len() {
            // A handshake message spanning more records than the buffer holds.
            buf.data.resize(buf.data.len() + BUF_SIZE, 0);
        }
        let mut read = ReadBuf::new(&mut buf.data[buf.end..]);
        let polled = Pin::new(&mut self.io).poll_read(cx, &mut read);
        let n = read.filled().len();
        buf.end += n;
        let result = match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(Ok(n > 0)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        };
        release_if_empty(&mut self.incoming);
        result
    }

    /// Writes `outgoing` to the socket; ready once it is empty (and given back).
    fn poll_flush_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(out) = &mut self.outgoing {
            if out.start == out.end {
                break;
            }
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &out.data[out.start..out.end]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            out.start += n;
        }
        release_if_empty(&mut self.outgoing);
        Poll::Ready(Ok(()))
    }

    fn poll_write_slices(&mut self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        if bufs.iter().all(|b| b.is_empty()) {
            return Poll::Ready(Ok(0));
        }
        // Written bytes wait in `outgoing`; beyond one record's worth, wait for the socket.
        if self.poll_flush_out(cx)?.is_pending() {
            let out = self.outgoing.as_mut().expect("pending bytes");
            if out.data.len() - out.end < MAX_RECORD {
                if out.start > 0 {
                    out.data.copy_within(out.start..out.end, 0);
                    out.end -= out.start;
                    out.start = 0;
                }
                if out.data.len() - out.end < MAX_RECORD {
                    return Poll::Pending;
                }
            }
        }
        let n = match self.step(Want::Write(bufs))? {
            Outcome::Done(n) => n,
            // Still in the handshake (not reachable after `handshake`).
            _ => return Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        };
        // Send now; what the socket does not take is written by the next call or flush.
        if let Poll::Ready(Err(e)) = self.poll_flush_out(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }
}

/// Encrypts from `bufs` into `out` as many records as fit, each up to 16 KiB of
/// plaintext; small slices are gathered into one record rather than one each.
fn encrypt_slices(
    traffic: &mut rustls::unbuffered::WriteTraffic<'_, rustls::server::ServerConnectionData>,
    out: &mut Buf,
    bufs: &[IoSlice<'_>],
) -> io::Result<usize> {
    let mut written = 0;
    let (mut i, mut offset) = (0, 0);
    while i < bufs.len() {
        let room = (out.data.len() - out.end).saturating_sub(OVERHEAD).min(MAX_PLAIN);
        if room == 0 {
            break;
        }
        let first = &bufs[i][offset..];
        if first.is_empty() {
            i += 1;
            offset = 0;
            continue;
        }
        let rest: usize = bufs[i + 1..].iter().map(|b| b.len()).sum();
        if first.len() >= room || rest == 0 {
            // One slice fills the record: encrypt from it directly.
            let n = first.len().min(room);
            fill_out(out, |b| traffic.encrypt(&first[..n], b), encrypt_need).map_err(tls_error)?;
            written += n;
            offset += n;
            continue;
        }
        let taken = GATHER.with(|gather| -> io::Result<usize> {
            let mut gather = gather.borrow_mut();
            gather.clear();
            while i < bufs.len() && gather.len() < room {
                let piece = &bufs[i][offset..];
                let n = piece.len().min(room - gather.len());
                gather.extend_from_slice(&piece[..n]);
                offset += n;
                if offset == bufs[i].len() {
                    i += 1;
                    offset = 0;
                }
            }
            fill_out(out, |b| traffic.encrypt(&gather, b), encrypt_need).map_err(tls_error)?;
            Ok(gather.len())
        })?;
        written += taken;
    }
    Ok(written)
}

impl AsyncRead for TlsServerStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, dst: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.plain_pos < this.plain.len() {
            let n = (this.plain.len() - this.plain_pos).min(dst.remaining());
            dst.put_slice(&this.plain[this.plain_pos..this.plain_pos + n]);
            this.plain_pos += n;
            if this.plain_pos == this.plain.len() {
                // Let the memory go: an idle connection keeps no plaintext buffer.
                this.plain = Vec::new();
                this.plain_pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        if this.peer_closed || dst.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            match this.step(Want::Read(dst))? {
                Outcome::Done(_) | Outcome::Eof => return Poll::Ready(Ok(())),
                Outcome::NeedInput => {
                    if !ready!(this.poll_fill(cx))? {
                        // The TCP end without close_notify: the end of input at a record
                        // boundary, a truncation inside one.
                        if this.incoming.is_some() {
                            return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                        }
                        this.peer_closed = true;
                        return Poll::Ready(Ok(()));
                    }
                }
            }
        }
    }
}

impl AsyncWrite for TlsServerStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_slices(cx, &[IoSlice::new(data)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_slices(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_flush_out(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_queued && !this.failed {
            this.close_queued = true;
            this.step(Want::Close)?;
        }
        ready!(this.poll_flush_out(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::tls::{server_config, CertResolver, CertStore};

    /// A record bigger than the reader's buffer: the rest waits decrypted, is readable
    /// without the socket, and once read the stream holds no buffer at all.
    #[tokio::test]
    async fn the_rest_of_a_record_is_readable_at_once_and_then_no_buffer_is_held() {
        let resolver = CertResolver::new(CertStore::self_signed_localhost());
        let config = server_config(resolver, crate::config::TlsVersion::V1_2);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut client = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .dangerous()
                .with_custom_certificate_verifier(crate::tls::testutil::accept_any())
                .with_no_client_auth();
            client.alpn_protocols = vec![b"http/1.1".to_vec()];
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client)).connect(name, tcp).await.unwrap();
            tls.write_all(b"0123456789abcdefghij").await.unwrap();
            let mut rest = Vec::new();
            // Ends cleanly only with porter's close_notify.
            tls.read_to_end(&mut rest).await.unwrap();
            rest
        });
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = TlsServerStream::new(config, ClientStream::new(tcp)).unwrap();
        tls.handshake().await.unwrap();
        assert_eq!(tls.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert!(tls.take_sni_cert().is_some(), "the resolver left the SNI's certificate");
        let mut small = [0u8; 8];
        tls.read_exact(&mut small).await.unwrap();
        assert_eq!(&small, b"01234567");
        let mut cx = Context::from_waker(Waker::noop());
        assert!(tls.poll_wait_readable(&mut cx).is_ready(), "decrypted bytes wait: readable without the socket");
        let mut rest = [0u8; 12];
        tls.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"89abcdefghij");
        assert!(tls.poll_wait_readable(&mut cx).is_pending(), "nothing more sent");
        assert!(tls.incoming.is_none() && tls.outgoing.is_none() && tls.plain.capacity() == 0, "idle holds a buffer");
        tls.shutdown().await.unwrap();
        assert_eq!(client.await.unwrap(), b"");
    }
}
