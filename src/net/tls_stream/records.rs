//! Records written into an outgoing buffer: handshake messages encoded,
//! plaintext encrypted.

use std::cell::RefCell;
use std::io::{self, IoSlice};

use rustls::unbuffered::{EncodeError, EncryptError};

use super::buffers::{Buf, MAX_PLAIN, OVERHEAD};

thread_local! {
    /// Small pieces of a vectored write gathered into one record.
    static GATHER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Writes one record or message into `out` with `f`, growing it if rustls asks for more room.
pub(super) fn fill_out<E>(
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

pub(super) fn encode_need(e: &EncodeError) -> Option<usize> {
    match e {
        EncodeError::InsufficientSize(s) => Some(s.required_size),
        _ => None,
    }
}

pub(super) fn encrypt_need(e: &EncryptError) -> Option<usize> {
    match e {
        EncryptError::InsufficientSize(s) => Some(s.required_size),
        _ => None,
    }
}

pub(super) fn tls_error(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Encrypts from `bufs` into `out` as many records as fit, each up to 16 KiB of
/// plaintext; small slices are gathered into one record rather than one each.
pub(super) fn encrypt_slices(
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
