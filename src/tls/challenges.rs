//! The answers to ACME challenges while an order is open, kept in memory and
//! read by the listeners: HTTP-01 key authorizations by token (the http
//! listener), TLS-ALPN-01 certificates by domain (the certificate resolver,
//! when a client offers only the `acme-tls/1` ALPN). A leaf: it knows nothing
//! of orders or listeners. Only challenge requests reach it, never ordinary
//! traffic, so a plain mutex is fine. It sits in `tls` because the resolver
//! owns it; `acme` (above) fills it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use rustls::sign::CertifiedKey;

/// RFC 8737 §6.2: the ALPN protocol of a TLS-ALPN-01 validation handshake.
pub(crate) const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

#[derive(Default)]
pub(crate) struct Challenges {
    http01: Mutex<HashMap<String, String>>,
    tls_alpn01: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for Challenges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Challenges").finish_non_exhaustive()
    }
}

impl Challenges {
    /// The key authorization to answer at `/.well-known/acme-challenge/TOKEN`.
    pub(crate) fn http01(&self, token: &str) -> Option<String> {
        self.http01.lock().unwrap_or_else(PoisonError::into_inner).get(token).cloned()
    }

    /// The validation certificate for `domain` (lower-case SNI).
    pub(crate) fn tls_alpn01(&self, domain: &str) -> Option<Arc<CertifiedKey>> {
        self.tls_alpn01.lock().unwrap_or_else(PoisonError::into_inner).get(domain).cloned()
    }

    pub(crate) fn set_http01(&self, token: &str, key_authorization: &str) {
        let mut map = self.http01.lock().unwrap_or_else(PoisonError::into_inner);
        map.insert(token.to_string(), key_authorization.to_string());
    }

    pub(crate) fn remove_http01(&self, token: &str) {
        self.http01.lock().unwrap_or_else(PoisonError::into_inner).remove(token);
    }

    pub(crate) fn set_tls_alpn01(&self, domain: &str, cert: Arc<CertifiedKey>) {
        self.tls_alpn01.lock().unwrap_or_else(PoisonError::into_inner).insert(domain.to_string(), cert);
    }

    pub(crate) fn remove_tls_alpn01(&self, domain: &str) {
        self.tls_alpn01.lock().unwrap_or_else(PoisonError::into_inner).remove(domain);
    }
}
