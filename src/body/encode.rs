//! Streaming compression of a response body (route `compress:`, see
//! docs/configuration.md, Compression): each frame from the server goes
//! through the encoder as it arrives, and what the encoder has produced goes
//! on to the client. Nothing waits for the whole body, so memory per response
//! is the encoder's window and tables, whatever the body's length.
//!
//! When the server pauses (its body is not ready), whatever input the encoder
//! holds is flushed (a deflate sync flush, a brotli or zstd block flush), so
//! a slow stream (server-sent events, a long report written as it goes)
//! reaches the client as it is written, at a small cost in ratio.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{BufMut, Bytes, BytesMut};

pub(crate) use crate::config::Encoding;

/// Compressed responses and their bytes before and after, by encoding, since the
/// process started (`/metrics`: the compression ratio per algorithm).
#[derive(Debug)]
pub(crate) struct Totals {
    responses: [AtomicU64; 3],
    bytes_in: [AtomicU64; 3],
    bytes_out: [AtomicU64; 3],
}

pub(crate) static TOTALS: Totals = Totals {
    responses: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
    bytes_in: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
    bytes_out: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
};

impl Totals {
    pub(crate) fn record(&self, encoding: Encoding, encoder: &Encoder) {
        let i = encoding as usize;
        self.responses[i].fetch_add(1, Ordering::Relaxed);
        self.bytes_in[i].fetch_add(encoder.bytes_in, Ordering::Relaxed);
        self.bytes_out[i].fetch_add(encoder.bytes_out, Ordering::Relaxed);
    }

    /// (responses, bytes in, bytes out) for `encoding`.
    pub(crate) fn get(&self, encoding: Encoding) -> (u64, u64, u64) {
        let i = encoding as usize;
        let load = |a: &[AtomicU64; 3]| a[i].load(Ordering::Relaxed);
        (load(&self.responses), load(&self.bytes_in), load(&self.bytes_out))
    }
}

/// The window of the brotli and zstd encoders, as a power of two: 256 KiB bounds the
/// memory each compressed response holds (gzip's is 32 KiB by the format).
const WINDOW_LOG: u32 = 18;

/// An encoder's output sink: what it wrote since the last [`Encoder::take`].
type Sink = bytes::buf::Writer<BytesMut>;

enum Inner {
    Gzip(flate2::write::GzEncoder<Sink>),
    Brotli(Option<Box<brotli::CompressorWriter<Sink>>>),
    Zstd(zstd::stream::write::Encoder<'static, Sink>),
}

/// One response's encoder.
pub(crate) struct Encoder {
    inner: Inner,
    /// Input written since the last flush or finish.
    dirty: bool,
    /// Bytes in and out, for the compression-ratio metrics.
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder").field("bytes_in", &self.bytes_in).field("bytes_out", &self.bytes_out).finish()
    }
}

impl Encoder {
    /// `length`: the body's length when the server said it; a short body gets a smaller window.
    pub(crate) fn new(encoding: Encoding, level: u32, length: Option<u64>) -> std::io::Result<Encoder> {
        let sink = BytesMut::with_capacity(16 * 1024).writer();
        // No window larger than the body (at least 1 KiB): less memory for small responses.
        let window = length.map_or(WINDOW_LOG, |n| (64 - n.max(1).leading_zeros()).clamp(10, WINDOW_LOG));
        let inner = match encoding {
            Encoding::Gzip => Inner::Gzip(flate2::write::GzEncoder::new(sink, flate2::Compression::new(level))),
            Encoding::Brotli => {
                let window = window.max(16); // brotli's smallest window (lgwin) that streams well
                Inner::Brotli(Some(Box::new(brotli::CompressorWriter::new(sink, 16 * 1024, level, window))))
            }
            Encoding::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(sink, level as i32)?;
                encoder.window_log(window)?;
                Inner::Zstd(encoder)
            }
        };
        Ok(Encoder { inner, dirty: false, bytes_in: 0, bytes_out: 0 })
    }

    /// Compresses `data`; returns what the encoder produced, if anything yet.
    pub(crate) fn write(&mut self, data: &[u8]) -> std::io::Result<Option<Bytes>> {
        if data.is_empty() {
            return Ok(None);
        }
        self.bytes_in += data.len() as u64;
        self.dirty = true;
        match &mut self.inner {
            Inner::Gzip(e) => e.write_all(data)?,
            Inner::Brotli(Some(e)) => e.write_all(data)?,
            Inner::Brotli(None) => return Err(finished()),
            Inner::Zstd(e) => e.write_all(data)?,
        }
        Ok(self.take())
    }

    /// Pushes out everything written so far (the server paused); None when nothing was pending.
    pub(crate) fn flush(&mut self) -> std::io::Result<Option<Bytes>> {
        if !std::mem::take(&mut self.dirty) {
            return Ok(None);
        }
        match &mut self.inner {
            Inner::Gzip(e) => e.flush()?,
            Inner::Brotli(Some(e)) => e.flush()?,
            Inner::Brotli(None) => return Err(finished()),
            Inner::Zstd(e) => e.flush()?,
        }
        Ok(self.take())
    }

    /// Ends the stream (the server's body ended): the encoder's last bytes.
    pub(crate) fn finish(&mut self) -> std::io::Result<Option<Bytes>> {
        self.dirty = false;
        match &mut self.inner {
            Inner::Gzip(e) => e.try_finish()?,
            Inner::Brotli(e) => {
                let Some(writer) = e.take() else { return Ok(None) };
                let sink = writer.into_inner();
                let out = sink.into_inner().freeze();
                self.bytes_out += out.len() as u64;
                return Ok((!out.is_empty()).then_some(out));
            }
            Inner::Zstd(e) => e.do_finish()?,
        }
        Ok(self.take())
    }

    fn take(&mut self) -> Option<Bytes> {
        let sink = match &mut self.inner {
            Inner::Gzip(e) => e.get_mut(),
            Inner::Brotli(Some(e)) => e.get_mut(),
            Inner::Brotli(None) => return None,
            Inner::Zstd(e) => e.get_mut(),
        };
        let buffer = sink.get_mut();
        if buffer.is_empty() {
            return None;
        }
        let out = buffer.split().freeze();
        self.bytes_out += out.len() as u64;
        Some(out)
    }
}

fn finished() -> std::io::Error {
    std::io::Error::other("compressed body already finished")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn text() -> Vec<u8> {
        (0..4000).flat_map(|i| format!("<li>item {i} of a long list</li>\n").into_bytes()).collect()
    }

    fn roundtrip(encoding: Encoding) {
        let input = text();
        let mut encoder = Encoder::new(encoding, encoding.default_level(), None).unwrap();
        let mut out = Vec::new();
        for (i, chunk) in input.chunks(7000).enumerate() {
            out.extend(encoder.write(chunk).unwrap().unwrap_or_default());
            if i % 3 == 0 {
                out.extend(encoder.flush().unwrap().unwrap_or_default());
            }
        }
        out.extend(encoder.flush().unwrap().unwrap_or_default());
        assert!(encoder.flush().unwrap().is_none(), "nothing written since: nothing to flush");
        out.extend(encoder.finish().unwrap().unwrap_or_default());
        assert_eq!(encoder.bytes_in, input.len() as u64);
        assert_eq!(encoder.bytes_out, out.len() as u64);
        assert!(out.len() * 5 < input.len(), "{encoding:?}: {} -> {}", input.len(), out.len());
        let mut decoded = Vec::new();
        match encoding {
            Encoding::Gzip => {
                flate2::read::GzDecoder::new(&out[..]).read_to_end(&mut decoded).unwrap();
            }
            Encoding::Brotli => {
                brotli::Decompressor::new(&out[..], 4096).read_to_end(&mut decoded).unwrap();
            }
            Encoding::Zstd => decoded = zstd::stream::decode_all(&out[..]).unwrap(),
        }
        assert_eq!(decoded, input, "{encoding:?}");
    }

    #[test]
    fn every_encoding_round_trips_with_flushes() {
        for encoding in Encoding::ALL {
            roundtrip(encoding);
        }
    }

    #[test]
    fn a_flush_makes_what_was_written_decodable() {
        // A paused stream: the client must be able to read what was sent so far.
        let mut encoder = Encoder::new(Encoding::Gzip, 1, None).unwrap();
        let mut out = Vec::new();
        out.extend(encoder.write(b"data: first event\n\n").unwrap().unwrap_or_default());
        out.extend(encoder.flush().unwrap().expect("flushed bytes"));
        let mut decoder = flate2::write::GzDecoder::new(Vec::new());
        decoder.write_all(&out).unwrap();
        decoder.flush().unwrap();
        assert_eq!(decoder.get_ref().as_slice(), b"data: first event\n\n");
    }
}
