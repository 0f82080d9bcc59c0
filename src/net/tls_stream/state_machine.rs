//! rustls' unbuffered state machine, driven for one purpose at a time.

use std::io::{self, IoSlice};
use std::task::Context;

use rustls::unbuffered::{ConnectionState, UnbufferedStatus};
use tokio::io::ReadBuf;

use super::buffers::{release_if_empty, Buf};
use super::records::{encode_need, encrypt_need, encrypt_slices, fill_out, tls_error};
use super::TlsServerStream;
use crate::tls::sni;

/// What a call into the state machine is for.
pub(super) enum Want<'a, 'b> {
    Handshake,
    /// Decrypt into the buffer (the rest of a record into `plain`).
    Read(&'a mut ReadBuf<'b>),
    /// Only learn whether plaintext is ready (it stays inside rustls).
    Peek,
    Write(&'a [IoSlice<'b>]),
    Close,
}

pub(super) enum Outcome {
    /// Handshake complete; plaintext ready; written; close_notify queued.
    Done(usize),
    /// The peer's close_notify, or both sides closed.
    Eof,
    /// Nothing more without bytes from the socket.
    NeedInput,
}

impl TlsServerStream {
    /// Advances the state machine for `want` until it is served or needs input.
    pub(super) fn step(&mut self, mut want: Want<'_, '_>) -> io::Result<Outcome> {
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

    pub(super) fn discard(&mut self, n: usize) {
        if let Some(b) = &mut self.incoming {
            b.start += n;
        }
        release_if_empty(&mut self.incoming);
    }

    /// After a fatal error rustls has queued an alert: encode it and try one write,
    /// without waiting (the connection is closed next).
    pub(super) fn fail(&mut self, e: rustls::Error) -> io::Error {
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
}
