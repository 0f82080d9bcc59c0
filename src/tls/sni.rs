//! The certificate the client's SNI names exactly, handed from the resolver
//! to the client's TLS stream (`net::tls_stream`) for the 421 check.
//!
//! `UnbufferedServerConnection` has no `server_name()`, and parsing the
//! ClientHello again by hand would duplicate rustls; the resolver runs
//! synchronously inside `process_tls_records` on the connection's thread (for
//! full and resumed handshakes alike), so the stream clears the slot before
//! that call and takes it right after.

use std::cell::Cell;
use std::sync::Arc;

use super::LoadedCert;

thread_local! {
    static SNI_CERT: Cell<Option<Option<Arc<LoadedCert>>>> = const { Cell::new(None) };
}

/// Called by porter's certificate resolver with the certificate exactly named by the SNI.
pub(crate) fn note(cert: Option<Arc<LoadedCert>>) {
    SNI_CERT.with(|slot| slot.set(Some(cert)));
}

/// Empties the slot before the handshake's records are processed.
pub(crate) fn clear() {
    SNI_CERT.with(|slot| slot.set(None));
}

/// What the resolver left since [`clear`]: `None` when it did not run.
pub(crate) fn take() -> Option<Option<Arc<LoadedCert>>> {
    SNI_CERT.with(|slot| slot.take())
}
