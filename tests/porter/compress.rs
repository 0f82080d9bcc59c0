//! Route compression (docs/configuration.md, Compression): zstd, br and gzip by
//! the client's Accept-Encoding and q-values, streamed, over HTTP/1.1 and
//! HTTP/2, and every answer that must be left alone left alone. Decoded by
//! curl (`--compressed`) and by the Rust decoders, never trusted blindly.
//! Streaming (a paused stream flushed, 200 MB in flat memory): `compress_streaming.rs`.

use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::harness::*;

/// Text that compresses about as well as a real page.
fn page(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!("<tr><td>row {i}</td><td class=\"v\">{}</td></tr>\n", i * 7919 % 10007).as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

/// A server of the answers compression must and must not touch:
/// - `/page/N` `text/html`, N bytes with a Content-Length and a strong ETag
/// - `/json/N` `application/json`, `/png/N` `image/png`
/// - `/stream/N` `text/plain`, N bytes in 64 KiB chunks, no length
/// - `/encoded` already `Content-Encoding: gzip`; `/no-transform` with `Cache-Control: no-transform`
/// - `/status/S` status S (204, 304) with a text type; `/range`: 206 to a Range request
/// - `/events`: `text/event-stream`, one event, a pause of 3 s, another event
async fn origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service =
                    service_fn(|req: Request<Incoming>| async move { Ok::<_, std::convert::Infallible>(answer(req)) });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    addr
}

type Body = BoxBody;

fn full(bytes: Vec<u8>) -> Body {
    BoxBody::new(Full::new(Bytes::from(bytes)).map_err(|never| match never {}))
}

fn answer(req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (kind, arg) = (parts.next().unwrap_or(""), parts.next().unwrap_or("0"));
    let n: usize = arg.parse().unwrap_or(0);
    let typed = |ct: &str, body: Body| {
        let mut r = Response::new(body);
        r.headers_mut().insert("content-type", ct.parse().unwrap());
        r
    };
    match kind {
        "page" => {
            let mut r = typed("text/html; charset=utf-8", full(page(n)));
            r.headers_mut().insert("etag", "\"v1-page\"".parse().unwrap());
            r.headers_mut().insert("accept-ranges", "bytes".parse().unwrap());
            r
        }
        "json" => typed("application/json", full(page(n))),
        "png" => typed("image/png", full(page(n))),
        "stream" => {
            // One chunk made once and sent again and again (its bytes repeat every 64 KiB).
            let chunk = Bytes::from(page(64 * 1024));
            let stream = futures_util::stream::unfold(0usize, move |sent| {
                let chunk = chunk.clone();
                async move {
                    if sent >= n {
                        return None;
                    }
                    let take = (n - sent).min(chunk.len());
                    Some((Ok::<_, std::io::Error>(Frame::data(chunk.slice(..take))), sent + take))
                }
            });
            typed("text/plain", BoxBody::new(StreamBody::new(stream)))
        }
        "encoded" => {
            let mut r = typed("text/html", full(page(4096)));
            r.headers_mut().insert("content-encoding", "gzip".parse().unwrap());
            r
        }
        "no-transform" => {
            let mut r = typed("text/html", full(page(4096)));
            r.headers_mut().insert("cache-control", "public, no-transform".parse().unwrap());
            r
        }
        "status" => {
            let mut r = typed("text/html", full(Vec::new()));
            *r.status_mut() = hyper::StatusCode::from_u16(n as u16).unwrap();
            r
        }
        "range" => {
            let mut r = typed("text/html", full(page(1000)));
            if req.headers().contains_key("range") {
                *r.status_mut() = hyper::StatusCode::PARTIAL_CONTENT;
                r.headers_mut().insert("content-range", "bytes 0-999/8000".parse().unwrap());
            }
            r
        }
        "events" => {
            let stream = futures_util::stream::unfold(0u8, |step| async move {
                match step {
                    0 => Some((Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(b"data: first\n\n"))), 1)),
                    1 => {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        Some((Ok(Frame::data(Bytes::from_static(b"data: second\n\n"))), 2))
                    }
                    _ => None,
                }
            });
            typed("text/event-stream", BoxBody::new(StreamBody::new(stream)))
        }
        _ => typed("text/plain", full(b"?\n".to_vec())),
    }
}

fn yaml(origin: SocketAddr, compress: &str) -> String {
    format!(
        "{}http:\n  redirect: false\nupstreams:\n  web:\n    servers:\n      - url: \"http://{origin}\"\n\
         routes:\n  - path: /plain/\n    upstream: web\n    strip_prefix: true\n  - upstream: web\n    compress: {compress}\n",
        listen_block()
    )
}

pub(crate) async fn start(compress: &str) -> TestPorter {
    let origin = origin().await;
    let dir = tempfile::tempdir().unwrap();
    write_cert(&dir.path().join("certs"), "localhost", &["localhost"]);
    TestPorter::start_in(dir, &yaml(origin, compress)).await
}

fn decode(encoding: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "gzip" => {
            flate2::read::GzDecoder::new(body).read_to_end(&mut out).unwrap();
        }
        "br" => {
            brotli::Decompressor::new(body, 4096).read_to_end(&mut out).unwrap();
        }
        "zstd" => out = zstd::stream::decode_all(body).unwrap(),
        other => panic!("unexpected encoding {other:?}"),
    }
    out
}

async fn get(client: &reqwest::Client, url: &str, accept: Option<&str>) -> (reqwest::header::HeaderMap, u16, Vec<u8>) {
    let mut request = client.get(url);
    if let Some(accept) = accept {
        request = request.header("accept-encoding", accept);
    }
    let r = request.send().await.unwrap();
    let (headers, status) = (r.headers().clone(), r.status().as_u16());
    (headers, status, r.bytes().await.unwrap().to_vec())
}

pub(crate) fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn each_algorithm_by_accept_encoding_over_http1_and_http2() {
    let p = start("true").await;
    let plain = plain_client();
    let tls = client_for(p.https.unwrap(), &["localhost"]);
    let want = page(50_000);
    for (client, url, version) in [
        (&plain, p.http_url("/page/50000"), reqwest::Version::HTTP_11),
        (&tls, p.https_url("/page/50000"), reqwest::Version::HTTP_2),
    ] {
        for (accept, expected) in [
            ("gzip, deflate, br, zstd", "zstd"),
            ("gzip, deflate, br", "br"),
            ("gzip", "gzip"),
            ("br;q=0.5, gzip;q=0.9, zstd;q=0.1", "gzip"),
            ("zstd;q=0, *", "br"),
        ] {
            let r = client.get(&url).header("accept-encoding", accept).send().await.unwrap();
            assert_eq!(r.version(), version);
            let headers = r.headers().clone();
            let body = r.bytes().await.unwrap();
            assert_eq!(header(&headers, "content-encoding"), Some(expected), "{accept} over {version:?}");
            assert_eq!(header(&headers, "content-length"), None, "no length for a compressed body");
            assert_eq!(header(&headers, "vary"), Some("Accept-Encoding"));
            assert_eq!(header(&headers, "etag"), Some("W/\"v1-page\""), "the ETag is weakened");
            assert_eq!(header(&headers, "accept-ranges"), None);
            assert!(body.len() * 4 < want.len(), "{expected}: {} bytes from {}", body.len(), want.len());
            assert_eq!(decode(expected, &body), want, "{expected} over {version:?}");
        }
        // No Accept-Encoding, or only q=0: the body as it is, still with Vary.
        for accept in [None, Some("gzip;q=0, br;q=0, zstd;q=0"), Some("identity")] {
            let (headers, status, body) = get(client, &url, accept).await;
            assert_eq!(status, 200);
            assert_eq!(header(&headers, "content-encoding"), None, "{accept:?}");
            assert_eq!(header(&headers, "vary"), Some("Accept-Encoding"));
            assert_eq!(header(&headers, "etag"), Some("\"v1-page\""));
            assert_eq!(body, want);
        }
    }
    // A route without compress: untouched.
    let (headers, _, body) = get(&plain, &p.http_url("/plain/page/50000"), Some("gzip")).await;
    assert_eq!(header(&headers, "content-encoding"), None);
    assert_eq!(header(&headers, "vary"), None);
    assert_eq!(header(&headers, "content-length"), Some("50000"));
    assert_eq!(body, want);
    p.stop().await;
}

#[tokio::test]
async fn what_must_not_be_compressed_is_not() {
    let p = start("true").await;
    let c = plain_client();
    let all = Some("gzip, br, zstd");
    // Below min_size (1 KiB by default), judged by Content-Length.
    let (headers, _, body) = get(&c, &p.http_url("/page/1000"), all).await;
    assert_eq!(header(&headers, "content-encoding"), None);
    assert_eq!(body, page(1000));
    // A type outside `types`.
    let (headers, _, body) = get(&c, &p.http_url("/png/20000"), all).await;
    assert_eq!(header(&headers, "content-encoding"), None);
    assert_eq!(header(&headers, "vary"), None);
    assert_eq!(body.len(), 20000);
    // Already encoded: never twice.
    let (headers, _, body) = get(&c, &p.http_url("/encoded"), all).await;
    assert_eq!(header(&headers, "content-encoding"), Some("gzip"));
    assert_eq!(body, page(4096), "the server's bytes, not gzip of them");
    // Cache-Control: no-transform.
    let (headers, _, body) = get(&c, &p.http_url("/no-transform"), all).await;
    assert_eq!(header(&headers, "content-encoding"), None);
    assert_eq!(body, page(4096));
    // 204 and 304.
    for status in [204u16, 304] {
        let (headers, got, body) = get(&c, &p.http_url(&format!("/status/{status}")), all).await;
        assert_eq!(got, status);
        assert_eq!(header(&headers, "content-encoding"), None);
        assert!(body.is_empty());
    }
    // A Range request (the server answers 206), and HEAD.
    let r = c
        .get(p.http_url("/range"))
        .header("accept-encoding", "gzip")
        .header("range", "bytes=0-999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(header(r.headers(), "content-encoding"), None);
    assert_eq!(r.bytes().await.unwrap().len(), 1000);
    let r = c.head(p.http_url("/page/50000")).header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(header(r.headers(), "content-encoding"), None);
    assert_eq!(header(r.headers(), "content-length"), Some("50000"));
    // JSON is compressed, and so is a body of unknown length.
    let (headers, _, body) = get(&c, &p.http_url("/json/5000"), Some("gzip")).await;
    assert_eq!(header(&headers, "content-encoding"), Some("gzip"));
    assert_eq!(decode("gzip", &body), page(5000));
    let (headers, _, body) = get(&c, &p.http_url("/stream/300000"), Some("br")).await;
    assert_eq!(header(&headers, "content-encoding"), Some("br"));
    assert_eq!(decode("br", &body).len(), 300000);
    p.stop().await;
}

#[tokio::test]
async fn settings_choose_algorithms_types_min_size_and_level() {
    let p = start("{ algorithms: [gzip, br], min_size: 100, types: [\"image/png\"], level: { gzip: 9, br: 5 } }").await;
    let c = plain_client();
    // Equal q-values: the route's order decides (gzip before br here).
    let (headers, _, body) = get(&c, &p.http_url("/png/500"), Some("zstd, br, gzip")).await;
    assert_eq!(header(&headers, "content-encoding"), Some("gzip"));
    assert_eq!(decode("gzip", &body), page(500));
    // zstd is not offered by this route: the client's first choice is skipped.
    let (headers, _, body) = get(&c, &p.http_url("/png/500"), Some("zstd, br")).await;
    assert_eq!(header(&headers, "content-encoding"), Some("br"));
    assert_eq!(decode("br", &body), page(500));
    let (headers, _, body) = get(&c, &p.http_url("/png/500"), Some("zstd;q=1, gzip;q=0.5")).await;
    assert_eq!(header(&headers, "content-encoding"), Some("gzip"));
    assert_eq!(decode("gzip", &body), page(500));
    // text/html is not in this route's types.
    let (headers, _, _) = get(&c, &p.http_url("/page/5000"), Some("gzip")).await;
    assert_eq!(header(&headers, "content-encoding"), None);
    p.stop().await;
}

#[tokio::test]
async fn curl_compressed_decodes_every_algorithm() {
    let p = start("true").await;
    let url = p.http_url("/page/30000");
    for encoding in ["gzip", "br", "zstd"] {
        let args =
            ["-sS", "--max-time", "10", "--compressed", "-H", &format!("Accept-Encoding: {encoding}"), "-D", "-", &url]
                .map(String::from);
        // Off the runtime's thread: porter runs on it.
        let out = tokio::task::spawn_blocking(move || std::process::Command::new("curl").args(args).output());
        let out = match out.await.unwrap() {
            Ok(out) => out,
            Err(e) => {
                assert!(std::env::var_os("CI").is_none(), "curl is needed in CI: {e}");
                eprintln!("SKIPPED: curl not found ({e})");
                return;
            }
        };
        assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.to_ascii_lowercase().contains(&format!("content-encoding: {encoding}")), "{head}");
        assert_eq!(body.as_bytes(), page(30000), "curl decoded {encoding}");
    }
    p.stop().await;
}

#[tokio::test]
async fn a_named_block_compresses_and_a_route_turns_it_off() {
    let origin = origin().await;
    let yaml = format!(
        "{}http:\n  redirect: false\nupstreams:\n  web:\n    servers:\n      - url: \"http://{origin}\"\n\
         policies:\n  gz:\n    compress: {{ algorithms: [gzip] }}\n\
         routes:\n  - path: /off/\n    upstream: web\n    strip_prefix: true\n    policies: [gz]\n    compress: false\n\
         \x20 - upstream: web\n    policies: [gz]\n",
        listen_block()
    );
    let p = TestPorter::start(&yaml).await;
    let c = plain_client();
    let (headers, _, body) = get(&c, &p.http_url("/page/20000"), Some("zstd, br, gzip")).await;
    assert_eq!(header(&headers, "content-encoding"), Some("gzip"), "the block's algorithms");
    assert_eq!(decode("gzip", &body), page(20000));
    let (headers, _, body) = get(&c, &p.http_url("/off/page/20000"), Some("gzip")).await;
    assert_eq!(header(&headers, "content-encoding"), None, "compress: false wins over the block");
    assert_eq!(header(&headers, "vary"), None);
    assert_eq!(body, page(20000));
    p.stop().await;
}

#[tokio::test]
async fn a_bad_compress_setting_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("porter.yaml");
    for (compress, field, words) in [
        ("{ algorithms: [gzip, deflate] }", "routes[0].compress.algorithms[1]", "deflate"),
        ("{ level: 12 }", "routes[0].compress.level", "out of range"),
        ("{ level: { br: 20 } }", "routes[0].compress.level.br", "out of range"),
        ("{ types: [\"html\"] }", "routes[0].compress.types[0]", "not a media type"),
        ("{ min_size: lots }", "routes[0].compress.min_size", "lots"),
        ("{ algoritms: [gzip] }", "algoritms", "unknown field"),
        ("sometimes", "routes[0].compress", "true, false, or a map"),
    ] {
        let yaml = format!(
            "upstreams:\n  web:\n    servers:\n      - url: \"http://127.0.0.1:9\"\nroutes:\n  - upstream: web\n    compress: {compress}\n"
        );
        std::fs::write(&path, yaml).unwrap();
        let error = porter::Config::load(&path).unwrap_err().to_string();
        assert!(error.contains(":7:") && error.contains(field) && error.contains(words), "{compress}: {error}");
    }
}
