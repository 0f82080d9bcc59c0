//! The response-framing cases replayed through both clients, and the comparison's own checks.

use super::*;

/// Inputs on the boundaries of every response framing rule (first byte:
/// `G` sends GET, `H` HEAD); each must read the same on both sides or differ
/// only as [`allowed`] says. The same inputs seed the fuzz corpus
/// (`fuzz/corpus/h1_response_differential/`).
pub(crate) const CASES: &[&[u8]] = &[
    b"GHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"GHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\n\r\n",
    b"GHTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
    b"GHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"GHTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    b"GHTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    b"GHTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc",
    b"GHTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\nabc",
    b"GHTTP/1.1 200 OK\r\nTransfer-Encoding: gz\xff\xffip, chunked\r\n\r\n.\r\nhi\r\n0\r\n\r\n",
    b"GHTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    b"GHTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi",
    b"GHTTP/1.1 200 OK\r\n\r\nuntil the close",
    b"GHTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi",
    b"GHTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi",
    b"GHTTP/1.0 200 OK\r\n\r\nuntil the close",
    b"GHTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    b"GHTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    b"GHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nT: 1\r\n\r\n",
    b"GHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
    b"GHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
    b"GHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
    b"GHTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nuntil the close",
    b"GHTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    b"GHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    b"GHTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    b"GHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
    b"GHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    b"GHTTP/1.1 100 Continue\r\n\r\n",
    b"GHTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
    b"GHTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello",
    b"GHTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
    b"HHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
    b"HHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"HHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GHTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n",
    b"GHTTP/1.1 200 OK\nContent-Length: 2\n\nhi",
    b"GHTTP/1.1 999 Odd\r\nContent-Length: 0\r\n\r\n",
    b"GHTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n",
    b"GHTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
    b"GHTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"GHTTP/1.1 200 OK\r\nContent-Le",
    b"G",
    b"",
];

#[test]
fn porter_and_hyper_agree_on_response_framing() {
    for case in CASES {
        if let Err(e) = compare(case) {
            panic!("{:?}: {e}", String::from_utf8_lossy(case));
        }
    }
}

/// The comparison itself sees a split: two readings that differ in any
/// compared part are a disagreement.
#[test]
fn disagreements_are_reported() {
    let complete = |status, body: &[u8], reusable| Read::Complete { status, body: body.to_vec(), reusable };
    assert!(agree(&complete(200, b"hi", true), &complete(200, b"hi", true)));
    assert!(!agree(&complete(200, b"hi", true), &complete(200, b"hi", false)));
    assert!(!agree(&complete(200, b"hi", true), &complete(200, b"ho", true)));
    assert!(!agree(&complete(200, b"", true), &complete(204, b"", true)));
    assert!(!agree(&complete(200, b"hi", false), &Read::BodyFailed { status: 200 }));
    assert!(!agree(&complete(200, b"hi", false), &Read::NoHead));
    let plain = b"GHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
    assert_eq!(allowed(plain, &Read::NoHead, &complete(200, b"hi", true)), None);
}

/// What each side reads for a few inputs, so the comparison is known to
/// look at real readings rather than two equal failures.
#[test]
fn both_sides_read_what_the_server_sent() {
    let complete = |status, body: &[u8], reusable| Read::Complete { status, body: body.to_vec(), reusable };
    let cases: [(&[u8], Read); 7] = [
        (b"GHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", complete(200, b"hello", true)),
        (
            b"GHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            complete(201, b"hello", true),
        ),
        (b"GHTTP/1.1 200 OK\r\n\r\nuntil the close", complete(200, b"until the close", false)),
        (b"GHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\n\r\n", complete(200, b"hello", false)),
        (b"GHTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", Read::BodyFailed { status: 200 }),
        (b"HHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", complete(200, b"", true)),
        (b"GHTTP/1.1 200 OK\r\nContent-Le", Read::NoHead),
    ];
    for (input, read) in cases {
        assert_eq!(reads(input), (read.clone(), read), "{input:?}");
    }
}
