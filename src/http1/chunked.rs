//! The chunked transfer coding of a request body (RFC 9112 §7.1), decoded as
//! the bytes arrive, by the same rules hyper enforces, so the two engines
//! agree on where every message ends (the differential fuzz target checks it):
//! hex sizes without overflow, whitespace only after the size, extensions
//! ignored but never containing a bare LF and at most 16 KiB per body, every
//! line ended by CRLF, trailers at most 16 KiB and 100 fields.
//!
//! The decoder works on borrowed input and reports where the data bytes are,
//! so the caller hands them on without copying.

use std::ops::Range;

use bytes::BytesMut;
use http::{HeaderMap, HeaderName, HeaderValue};

const EXTENSIONS_LIMIT: u64 = 16 * 1024;
const TRAILER_LIMIT: usize = 16 * 1024;
const TRAILER_FIELDS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    Size,
    SizeLws,
    Extension,
    SizeLf,
    Body,
    BodyCr,
    BodyLf,
    Trailer,
    TrailerLf,
    EndCr,
    EndLf,
    End,
}

/// Malformed chunked framing: the message's end cannot be known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkError(pub &'static str);

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed chunked body: {}", self.0)
    }
}
impl std::error::Error for ChunkError {}

/// What [`Chunked::step`] found in its input.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Control bytes consumed (`consumed` of the input), no data yet: feed more.
    NeedMore { consumed: usize },
    /// Data at `range` of the input; the input up to `range.end` is consumed.
    Data { range: Range<usize> },
    /// The body ended after `consumed` bytes of the input.
    End { consumed: usize },
}

#[derive(Debug, Clone)]
pub(crate) struct Chunked {
    state: State,
    size: u64,
    extensions: u64,
    trailers: Option<BytesMut>,
    trailer_lines: usize,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked::new()
    }
}

impl Chunked {
    pub(crate) fn new() -> Chunked {
        Chunked { state: State::Start, size: 0, extensions: 0, trailers: None, trailer_lines: 0 }
    }

    /// Advances over `input` until data, the end, or the end of the input.
    pub(crate) fn step(&mut self, input: &[u8]) -> Result<Step, ChunkError> {
        let mut at = 0;
        while at < input.len() {
            if self.state == State::Body {
                let n = self.size.min((input.len() - at) as u64) as usize;
                self.size -= n as u64;
                if self.size == 0 {
                    self.state = State::BodyCr;
                }
                return Ok(Step::Data { range: at..at + n });
            }
            let b = input[at];
            at += 1;
            self.state = self.byte(b)?;
            if self.state == State::End {
                return Ok(Step::End { consumed: at });
            }
        }
        Ok(Step::NeedMore { consumed: at })
    }

    /// Runs over bytes already at hand without keeping the data: an error in
    /// them means the request can be refused before anything is forwarded.
    pub(crate) fn check(mut self, mut input: &[u8]) -> Result<(), ChunkError> {
        loop {
            match self.step(input)? {
                Step::NeedMore { .. } | Step::End { .. } => return Ok(()),
                Step::Data { range } => input = &input[range.end..],
            }
        }
    }

    /// The trailer fields, once the body has ended with some.
    pub(crate) fn take_trailers(&mut self) -> Result<Option<HeaderMap>, ChunkError> {
        let Some(raw) = self.trailers.take() else { return Ok(None) };
        let mut fields = [httparse::EMPTY_HEADER; TRAILER_FIELDS];
        let parsed = match httparse::parse_headers(&raw, &mut fields) {
            Ok(httparse::Status::Complete((_, fields))) => fields,
            _ => return Err(ChunkError("invalid trailer fields")),
        };
        let mut trailers = HeaderMap::with_capacity(parsed.len());
        for field in parsed {
            let name = HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| ChunkError("invalid trailer name"))?;
            let value = HeaderValue::from_bytes(field.value).map_err(|_| ChunkError("invalid trailer value"))?;
            trailers.append(name, value);
        }
        Ok(Some(trailers))
    }

    fn byte(&mut self, b: u8) -> Result<State, ChunkError> {
        Ok(match self.state {
            State::Start => {
                self.add_digit(b).ok_or(ChunkError("missing size digit"))??;
                State::Size
            }
            State::Size => match b {
                b'\t' | b' ' => State::SizeLws,
                b';' => State::Extension,
                b'\r' => State::SizeLf,
                _ => {
                    self.add_digit(b).ok_or(ChunkError("invalid size"))??;
                    State::Size
                }
            },
            State::SizeLws => match b {
                b'\t' | b' ' => State::SizeLws,
                b';' => State::Extension,
                b'\r' => State::SizeLf,
                _ => return Err(ChunkError("invalid whitespace after the size")),
            },
            State::Extension => match b {
                b'\r' => State::SizeLf,
                b'\n' => return Err(ChunkError("extension contains a newline")),
                _ => {
                    self.extensions += 1;
                    if self.extensions >= EXTENSIONS_LIMIT {
                        return Err(ChunkError("extensions over limit"));
                    }
                    State::Extension
                }
            },
            State::SizeLf => match b {
                b'\n' if self.size == 0 => State::EndCr,
                b'\n' => State::Body,
                _ => return Err(ChunkError("size line without LF")),
            },
            State::BodyCr => match b {
                b'\r' => State::BodyLf,
                _ => return Err(ChunkError("chunk data without CR")),
            },
            State::BodyLf => match b {
                b'\n' => {
                    self.size = 0;
                    State::Start
                }
                _ => return Err(ChunkError("chunk data without LF")),
            },
            State::Trailer => {
                self.push_trailer(b)?;
                if b == b'\r' {
                    State::TrailerLf
                } else {
                    State::Trailer
                }
            }
            State::TrailerLf => match b {
                b'\n' => {
                    if self.trailer_lines >= TRAILER_FIELDS {
                        return Err(ChunkError("too many trailer fields"));
                    }
                    self.trailer_lines += 1;
                    self.push_trailer(b)?;
                    State::EndCr
                }
                _ => return Err(ChunkError("trailer line without LF")),
            },
            State::EndCr => match b {
                b'\r' => {
                    if self.trailers.is_some() {
                        self.push_trailer(b)?;
                    }
                    State::EndLf
                }
                _ => {
                    self.trailers.get_or_insert_with(|| BytesMut::with_capacity(64));
                    self.push_trailer(b)?;
                    State::Trailer
                }
            },
            State::EndLf => match b {
                b'\n' => {
                    if self.trailers.is_some() {
                        self.push_trailer(b)?;
                    }
                    State::End
                }
                _ => return Err(ChunkError("last chunk without LF")),
            },
            State::Body | State::End => unreachable!("handled by step"),
        })
    }

    /// Adds a hex digit to the size: None when `b` is not one.
    fn add_digit(&mut self, b: u8) -> Option<Result<(), ChunkError>> {
        let digit = (b as char).to_digit(16)?;
        Some(
            self.size
                .checked_mul(16)
                .and_then(|s| s.checked_add(u64::from(digit)))
                .map(|s| self.size = s)
                .ok_or(ChunkError("size overflows")),
        )
    }

    fn push_trailer(&mut self, b: u8) -> Result<(), ChunkError> {
        let buf = self.trailers.as_mut().expect("trailers started");
        if buf.len() >= TRAILER_LIMIT {
            return Err(ChunkError("trailers over limit"));
        }
        buf.extend_from_slice(&[b]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `split` bytes: the data, and trailers.
    fn decode(input: &[u8], split: usize) -> Result<(Vec<u8>, Option<HeaderMap>, usize), ChunkError> {
        let mut c = Chunked::new();
        let mut data = Vec::new();
        let mut fed = 0;
        let mut pending: Vec<u8> = Vec::new();
        while fed < input.len() || !pending.is_empty() {
            let end = (fed + split).min(input.len());
            pending.extend_from_slice(&input[fed..end]);
            fed = end;
            loop {
                match c.step(&pending)? {
                    Step::NeedMore { consumed } => {
                        pending.drain(..consumed);
                        break;
                    }
                    Step::Data { range } => {
                        data.extend_from_slice(&pending[range.clone()]);
                        pending.drain(..range.end);
                    }
                    Step::End { consumed } => {
                        let rest = input.len() - fed + pending.len() - consumed;
                        return Ok((data, c.take_trailers()?, rest));
                    }
                }
            }
            if fed == input.len() {
                break;
            }
        }
        Err(ChunkError("incomplete"))
    }

    #[test]
    fn data_extensions_and_trailers_at_every_split() {
        let body = b"5;name=val\r\nhello\r\nA \t;x\r\n0123456789\r\n0\r\nX-T: 1\r\nY-T: two\r\n\r\nNEXT";
        for split in 1..=body.len() {
            let (data, trailers, rest) = decode(body, split).unwrap();
            assert_eq!(data, b"hello0123456789", "split {split}");
            let trailers = trailers.unwrap();
            assert_eq!(trailers["x-t"], "1");
            assert_eq!(trailers["y-t"], "two");
            assert_eq!(rest, 4);
        }
        let (data, trailers, rest) = decode(b"0\r\n\r\n", 1).unwrap();
        assert!(data.is_empty() && trailers.is_none() && rest == 0);
    }

    #[test]
    fn malformed_framing_is_refused() {
        for bad in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"2\r\nabcd\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5;ext\nhello\r\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"5 5\r\nhello\r\n0\r\n\r\n",
            b"fffffffffffffffff\r\n",
            b"0\r\nX: 1\r\nY\r\r",
        ] {
            assert!(decode(bad, bad.len()).is_err(), "{:?}", String::from_utf8_lossy(bad));
            assert!(Chunked::new().check(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(Chunked::new().check(b"5\r\nhel").is_ok(), "incomplete is not malformed");
    }
}
