//! The one rustls crypto provider porter uses, for its listeners and for
//! its own connections to https:// upstreams: aws-lc-rs, with the hybrid
//! post-quantum key exchange X25519MLKEM768 offered and preferred first.
//!
//! Browsers (Chrome, Firefox, Safari) send an X25519MLKEM768 key share by
//! default; a server that prefers it gives those clients "harvest now,
//! decrypt later" protection at the price of ~2.3 KB more handshake bytes
//! and one ML-KEM encapsulation. Clients that only send classical shares
//! still get X25519 (then P-256, P-384) without a HelloRetryRequest.
//! The order is written out here rather than taken from rustls' cargo
//! features, so that a feature flip elsewhere cannot silently drop PQ.

use std::sync::{Arc, OnceLock};

use rustls::crypto::aws_lc_rs::{self, kx_group};
use rustls::crypto::{CryptoProvider, SupportedKxGroup};

/// Key exchange groups in porter's order of preference.
pub(crate) static KX_GROUPS: &[&dyn SupportedKxGroup] =
    &[kx_group::X25519MLKEM768, kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];

/// The provider (built once; cheap to clone the `Arc`). Never installed as
/// the process default: every config names it explicitly.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(CryptoProvider { kx_groups: KX_GROUPS.to_vec(), ..aws_lc_rs::default_provider() }))
        .clone()
}

#[cfg(test)]
mod tests {
    use rustls::NamedGroup;

    #[test]
    fn post_quantum_hybrid_is_offered_first() {
        let names: Vec<NamedGroup> = super::provider().kx_groups.iter().map(|g| g.name()).collect();
        assert_eq!(
            names,
            [NamedGroup::X25519MLKEM768, NamedGroup::X25519, NamedGroup::secp256r1, NamedGroup::secp384r1]
        );
    }
}
