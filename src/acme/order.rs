//! One certificate order (RFC 8555 §7.4) for one name: new order, answer each
//! authorization's challenge (HTTP-01 or TLS-ALPN-01, RFC 8737) through
//! [`Challenges`], wait for the CA to validate, finalize with a CSR for a
//! fresh ECDSA P-256 key, download the chain. The answers are withdrawn when
//! the order ends, however it ends.

use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, CertificateIdentifier, ChallengeType, Identifier, NewOrder, OrderStatus, RetryPolicy,
};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::config::AcmeChallenge;
use crate::tls::challenges::Challenges;

/// An order as a whole, so a CA that never finishes cannot hold the lock forever.
pub(super) const ORDER_TIMEOUT: Duration = Duration::from_secs(300);

/// Why an order failed; `unknown_account` when the CA no longer knows the
/// stored account (RFC 8555 `accountDoesNotExist`, or `unauthorized` on it).
#[derive(Debug)]
pub(super) struct OrderError {
    pub message: String,
    pub unknown_account: bool,
}

impl From<String> for OrderError {
    fn from(message: String) -> Self {
        OrderError { message, unknown_account: false }
    }
}

pub(super) struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
    pub cert_url: String,
}

/// Removes the answers this order published, on every exit path.
struct Published<'a> {
    challenges: &'a Challenges,
    tokens: Vec<String>,
    alpn_domains: Vec<String>,
}

impl Drop for Published<'_> {
    fn drop(&mut self) {
        for token in &self.tokens {
            self.challenges.remove_http01(token);
        }
        for domain in &self.alpn_domains {
            self.challenges.remove_tls_alpn01(domain);
        }
    }
}

/// What an order asks for: a certificate for `domain`, proven by a `kind` challenge
/// answered through `challenges`, replacing the certificate `replaces` names (ARI).
#[derive(Clone, Copy)]
pub(super) struct Wanted<'a> {
    pub domain: &'a str,
    pub kind: AcmeChallenge,
    pub challenges: &'a Challenges,
    pub replaces: Option<&'a CertificateIdentifier<'static>>,
}

pub(super) async fn issue(account: &Account, wanted: Wanted<'_>) -> Result<Issued, OrderError> {
    match tokio::time::timeout(ORDER_TIMEOUT, run(account, wanted)).await {
        Ok(result) => result,
        Err(_) => Err(format!("the order did not complete within {ORDER_TIMEOUT:?}").into()),
    }
}

async fn run(account: &Account, wanted: Wanted<'_>) -> Result<Issued, OrderError> {
    let Wanted { domain, kind, challenges, replaces } = wanted;
    let identifiers = [Identifier::Dns(domain.to_string())];
    // A renewal names the certificate it replaces (ARI, RFC 9773 §5). Should
    // the CA refuse that (already replaced, unknown to it), a plain order follows:
    // the certificate matters more than the hint.
    let replacing = match replaces {
        Some(id) => match account.new_order(&NewOrder::new(&identifiers).replaces(id.clone())).await {
            Ok(order) => Some(order),
            Err(e) => {
                tracing::info!(%domain, id = %id, "acme: the CA refused the order as a replacement ({e}); ordering without `replaces`");
                None
            }
        },
        None => None,
    };
    let mut order = match replacing {
        Some(order) => order,
        None => account.new_order(&NewOrder::new(&identifiers)).await.map_err(|e| OrderError {
            unknown_account: matches!(&e, instant_acme::Error::Api(p) if p.r#type.as_deref().is_some_and(|t| {
                t == "urn:ietf:params:acme:error:accountDoesNotExist" || t == "urn:ietf:params:acme:error:unauthorized"
            })),
            message: format!("new order: {e}"),
        })?,
    };
    let mut published = Published { challenges, tokens: Vec::new(), alpn_domains: Vec::new() };
    let challenge_type = match kind {
        AcmeChallenge::Http01 => ChallengeType::Http01,
        AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.map_err(|e| format!("authorization: {e}"))?;
        match authz.status {
            AuthorizationStatus::Valid => continue, // validated recently for this account
            AuthorizationStatus::Pending => {}
            other => return Err(format!("authorization is {other:?}").into()),
        }
        let mut challenge = authz
            .challenge(challenge_type.clone())
            .ok_or_else(|| format!("the CA offers no {} challenge", kind.as_str()))?;
        let key_authorization = challenge.key_authorization();
        match kind {
            AcmeChallenge::Http01 => {
                challenges.set_http01(&challenge.token, key_authorization.as_str());
                published.tokens.push(challenge.token.clone());
            }
            AcmeChallenge::TlsAlpn01 => {
                let cert = tls_alpn01_cert(domain, key_authorization.digest().as_ref())?;
                challenges.set_tls_alpn01(domain, cert);
                published.alpn_domains.push(domain.to_string());
            }
        }
        challenge.set_ready().await.map_err(|e| format!("challenge: {e}"))?;
    }

    let polling =
        RetryPolicy::new().initial_delay(Duration::from_millis(250)).backoff(1.5).timeout(Duration::from_secs(120));
    let status = order.poll_ready(&polling).await.map_err(|e| format!("waiting for validation: {e}"))?;
    if status != OrderStatus::Ready {
        return Err(validation_error(&mut order).await.into());
    }
    drop(published);

    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::new(vec![domain.to_string()]).map_err(|e| e.to_string())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).map_err(|e| e.to_string())?;
    order.finalize_csr(csr.der()).await.map_err(|e| format!("finalize: {e}"))?;
    let chain_pem = order.poll_certificate(&polling).await.map_err(|e| format!("certificate: {e}"))?;
    let cert_url = order.state().certificate.clone().unwrap_or_default();
    Ok(Issued { chain_pem, key_pem: key.serialize_pem(), cert_url })
}

/// Why validation failed, from the challenge the CA marked invalid.
async fn validation_error(order: &mut instant_acme::Order) -> String {
    let mut reasons = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        if let Ok(state) = authz.refresh().await {
            reasons.extend(state.challenges.iter().filter_map(|c| c.error.as_ref()).map(|p| p.to_string()));
        }
    }
    if reasons.is_empty() {
        "the CA refused the challenge (order invalid)".to_string()
    } else {
        format!("validation failed: {}", reasons.join("; "))
    }
}

/// RFC 8737 §3: a self-signed certificate for `domain` carrying the critical
/// acmeIdentifier extension with the SHA-256 of the key authorization.
fn tls_alpn01_cert(domain: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::new(vec![domain.to_string()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signer =
        crate::tls::provider().key_provider.load_private_key(der).map_err(|e| format!("challenge key: {e}"))?;
    Ok(Arc::new(CertifiedKey::new(vec![cert.der().clone()], signer)))
}
