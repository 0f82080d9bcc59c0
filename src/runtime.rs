//! The compiled configuration that requests read: built once from a
//! [`Config`], held behind one `ArcSwap`, swapped whole on reload. Requests
//! load it with one atomic operation and never take a lock.
//!
//! Each snapshot carries a cancellation token: the background work it started
//! (health checks, DNS refresh) runs until the snapshot is replaced, not until
//! the last request or tunnel that holds a piece of it ends.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::HeaderValue;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Limits};
use crate::router::Router;
use crate::tls::CertResolver;
use crate::upstream::Upstream;

#[derive(Debug)]
pub(crate) struct Runtime {
    pub router: Router,
    /// Answers given without a route (no match, bad Host, 421, local answers on port 80).
    pub unrouted: Arc<crate::stats::StatusCounts>,
    /// Requests by the client's protocol (kept across reloads, like `unrouted`).
    pub by_protocol: Arc<crate::stats::ProtocolCounts>,
    pub upstreams: Vec<Arc<Upstream>>,
    pub limits: Limits,
    pub hsts: Option<HeaderValue>,
    pub certs: Arc<CertResolver>,
    /// Plaintext listener: redirect to https (true) or serve routes (false).
    pub redirect: bool,
    /// Port that redirects point at (`http.redirect_port`, else the https
    /// listener's); omitted from the URL when it is 443.
    pub https_port: Option<u16>,
    pub acme_webroot: Option<PathBuf>,
    /// TLS server settings (`tls.min_version`): a reload applies them to new connections.
    pub tls: Arc<rustls::ServerConfig>,
    /// New connections open with a PROXY protocol header (`listen.proxy_protocol`).
    pub proxy_protocol: bool,
    /// `listen.trusted_proxies`: clients whose forwarding headers are kept.
    pub trusted_proxies: Vec<crate::config::Cidr>,
    /// Where this snapshot's requests log (`None`: the access log is off). Set by
    /// `Porter` after the build, from its writer.
    pub access_log: Option<Arc<crate::access_log::Log>>,
    /// `rate_limit_store`: the Redis connection this snapshot's rate limits share.
    pub rate_limit_store: Option<Arc<crate::policy::rate_limit::RedisStore>>,
    /// `Alt-Svc: h3=":PORT"; ma=86400` for HTTPS responses over TCP, made once here.
    pub alt_svc: Option<HeaderValue>,
    /// Cancelled when this snapshot is replaced or porter stops: ends its background tasks.
    pub cancel: CancellationToken,
}

impl Runtime {
    /// `previous` is the snapshot being replaced on reload: servers whose settings are
    /// unchanged carry over with their connections and health state.
    pub(crate) fn build(
        config: &Config,
        certs: Arc<CertResolver>,
        https_port: Option<u16>,
        previous: Option<&Runtime>,
    ) -> Result<Runtime, String> {
        let cancel = CancellationToken::new();
        // A build that fails half-way drops what it made; the guard ends the tasks already started.
        let guard = cancel.clone().drop_guard();
        let mut by_name = HashMap::new();
        let mut upstreams = Vec::new();
        for (name, cfg) in &config.upstreams {
            let before = previous.and_then(|p| p.upstreams.iter().find(|u| *u.name == **name));
            let upstream = Arc::new(Upstream::new(name, cfg, before.map(|u| &**u), &cancel));
            by_name.insert(name.clone(), upstream.clone());
            upstreams.push(upstream);
        }
        let hsts = match &config.tls.hsts {
            Some(value) => Some(
                HeaderValue::from_str(value).map_err(|_| format!("tls.hsts: {value:?} is not a valid header value"))?,
            ),
            None => None,
        };
        let tls = crate::tls::server_config(certs.clone(), config.tls.min_version);
        let rate_limit_store = match &config.rate_limit_store {
            Some(store) => {
                let before = previous.and_then(|p| p.rate_limit_store.as_deref());
                Some(crate::policy::rate_limit::RedisStore::start(store, before, &cancel)?)
            }
            None => None,
        };
        // HTTP/3 rides on the https listener (its UDP twin): only with one.
        let http3 = config.listen.http3 && https_port.is_some();
        let alt_svc = config.http.redirect_port.or(https_port).filter(|_| http3).map(alt_svc);
        guard.disarm();
        Ok(Runtime {
            router: Router::new(
                &config.routes,
                &by_name,
                previous.map(|p| &p.router),
                rate_limit_store.as_ref(),
                &cancel,
            ),
            unrouted: previous.map(|p| p.unrouted.clone()).unwrap_or_default(),
            by_protocol: previous.map(|p| p.by_protocol.clone()).unwrap_or_default(),
            upstreams,
            limits: config.limits.clone(),
            certs,
            redirect: config.http.redirect,
            https_port: config.http.redirect_port.or(https_port),
            acme_webroot: config.http.acme_webroot.clone(),
            hsts,
            tls,
            proxy_protocol: config.listen.proxy_protocol,
            trusted_proxies: config.listen.trusted_proxies.clone(),
            access_log: None,
            rate_limit_store,
            alt_svc,
            cancel,
        })
    }
}

/// `Alt-Svc` for HTTPS responses over TCP: where the same origin answers HTTP/3.
fn alt_svc(port: u16) -> HeaderValue {
    HeaderValue::try_from(format!("h3=\":{port}\"; ma=86400")).expect("a valid header value")
}

impl Runtime {
    /// Whether `client`'s forwarding headers are believed (checked once per connection).
    pub(crate) fn trusts(&self, client: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|range| range.contains(client))
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// What every connection shares: the current runtime snapshot.
#[derive(Debug)]
pub(crate) struct Shared {
    pub runtime: ArcSwap<Runtime>,
}
