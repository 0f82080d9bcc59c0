//! TLS for the TCP modes: a client that verifies nothing (a load generator, like wrk
//! and h2load), offering the key exchange groups `--kx` names, resuming sessions only
//! with `--resume`.

use std::io;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_rustls::TlsConnector;

use crate::{Kx, Target};

/// Accepts any certificate and signature: load generator only.
#[derive(Debug)]
pub(crate) struct NoVerify(pub(crate) Vec<SignatureScheme>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.clone()
    }
}

fn tls_connector(resume: bool, kx: Kx) -> io::Result<TlsConnector> {
    use rustls::crypto::aws_lc_rs::{default_provider, kx_group};
    let mut provider = default_provider();
    provider.kx_groups = match kx {
        Kx::Pq => vec![kx_group::X25519MLKEM768, kx_group::X25519],
        Kx::X25519 => vec![kx_group::X25519],
    };
    let provider = Arc::new(provider);
    let schemes = provider.signature_verification_algorithms.supported_schemes();
    let mut config = rustls::ClientConfig::builder_with_provider(provider as Arc<CryptoProvider>)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(schemes)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = if resume { Resumption::in_memory_sessions(1024) } else { Resumption::disabled() };
    Ok(TlsConnector::from(Arc::new(config)))
}

pub(crate) fn tls_parts(target: &Target, resume: bool) -> io::Result<Option<(TlsConnector, ServerName<'static>)>> {
    match &target.sni {
        None => Ok(None),
        Some(sni) => {
            let name = ServerName::try_from(sni.clone()).map_err(io::Error::other)?;
            Ok(Some((tls_connector(resume, target.kx)?, name)))
        }
    }
}
