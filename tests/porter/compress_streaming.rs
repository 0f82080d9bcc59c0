//! Route compression (docs/configuration.md, Compression) streams: what a server flushed
//! before pausing reaches the client compressed before the response ends, and a 200 MB
//! response goes through with flat memory.

use std::time::Duration;

use crate::compress::{header, start};
use crate::harness::*;

#[tokio::test]
async fn a_paused_stream_reaches_the_client_before_it_ends() {
    let p = start("true").await;
    let c = plain_client();
    let mut r = c.get(p.http_url("/events")).header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(header(r.headers(), "content-encoding"), Some("gzip"));
    // The first event was flushed when the server paused: it decodes before the second is sent.
    let started = std::time::Instant::now();
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    while !decoder.get_ref().ends_with(b"\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(2), r.chunk()).await.expect("flushed in time").unwrap();
        use std::io::Write;
        decoder.write_all(&chunk.expect("more body")).unwrap();
        decoder.flush().unwrap();
    }
    assert_eq!(decoder.get_ref().as_slice(), b"data: first\n\n");
    assert!(started.elapsed() < Duration::from_secs(2), "not held until the end");
    while let Some(chunk) = r.chunk().await.unwrap() {
        use std::io::Write;
        decoder.write_all(&chunk).unwrap();
    }
    assert_eq!(decoder.finish().unwrap(), b"data: first\n\ndata: second\n\n");
    p.stop().await;
}

/// Resident memory of this process (porter runs inside the test), from /proc.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_200_mb_response_streams_with_flat_memory() {
    let p = start("true").await;
    let c = plain_client();
    const TOTAL: usize = 200 * 1024 * 1024;
    for encoding in ["gzip", "zstd"] {
        let mut r =
            c.get(p.http_url(&format!("/stream/{TOTAL}"))).header("accept-encoding", encoding).send().await.unwrap();
        assert_eq!(header(r.headers(), "content-encoding"), Some(encoding));
        let before = rss_kib();
        let mut peak = before;
        let mut compressed = 0usize;
        let mut decoded = 0usize;
        let mut gz = flate2::write::GzDecoder::new(Counter(0));
        let mut zs = zstd::stream::write::Decoder::new(Counter(0)).unwrap();
        let mut chunks = 0u64;
        while let Some(chunk) = r.chunk().await.unwrap() {
            use std::io::Write;
            compressed += chunk.len();
            match encoding {
                "gzip" => gz.write_all(&chunk).unwrap(),
                _ => zs.write_all(&chunk).unwrap(),
            }
            chunks += 1;
            if chunks.is_multiple_of(64) {
                peak = peak.max(rss_kib());
            }
        }
        use std::io::Write;
        match encoding {
            "gzip" => decoded += gz.finish().unwrap().0,
            _ => {
                zs.flush().unwrap();
                decoded += zs.get_ref().0;
            }
        }
        assert_eq!(decoded, TOTAL, "{encoding}: every byte arrived");
        assert!(compressed * 4 < TOTAL, "{encoding}: {compressed} bytes on the wire");
        // 200 MB went through: memory grew by at most a few encoder windows and buffers.
        let grown = peak.saturating_sub(before);
        eprintln!("{encoding}: 200 MiB in {compressed} bytes; RSS {before} KiB before, peak {peak} KiB (+{grown} KiB)");
        assert!(grown < 48 * 1024, "{encoding}: RSS grew by {grown} KiB while streaming 200 MiB");
    }
    p.stop().await;
}

/// A writer that counts and drops what it is given.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
