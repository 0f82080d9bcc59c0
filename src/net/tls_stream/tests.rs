//! The TLS stream against a real rustls client over loopback.

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
