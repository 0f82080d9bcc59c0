//! [`Porter::reload`]: a new configuration checked, then swapped in whole;
//! listener addresses stay what is bound.

use std::net::SocketAddr;
use std::sync::Arc;

use super::{Porter, StartError, CERT_RESCAN};
use crate::config::{self, Config};
use crate::runtime::Runtime;
use crate::tls;

impl Porter {
    /// Swaps in a new configuration: requests already running finish on the old one,
    /// new connections and requests get everything else the file says (routes,
    /// upstreams, TLS settings, limits, PROXY protocol, trusted proxies). Listener
    /// addresses are fixed at start: a change to one is named in a warning.
    /// The outcome is counted for /metrics and /status.
    pub fn reload(&self, config: &Config) -> Result<(), StartError> {
        let result = self.apply(config);
        match &result {
            Ok(()) => self.reloads.applied(),
            Err(e) => self.reloads.refused(&e.to_string()),
        }
        result
    }

    /// Counts a reload refused before it reached [`Porter::reload`] (the file did not load).
    pub fn reload_refused(&self, error: &str) {
        self.reloads.refused(error);
    }

    fn apply(&self, config: &Config) -> Result<(), StartError> {
        let fixed;
        let mut config = config;
        for warning in validate(config)? {
            tracing::warn!("{warning}");
        }
        // First: a file that cannot be opened refuses the reload before anything changes.
        let log = self.access_log.prepare(&config.access_log).map_err(StartError::Config)?;
        {
            let mut listen = self.listen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for warning in restart_needed(&listen, &config.listen) {
                tracing::warn!("{warning}");
            }
            // Addresses (and HTTP/3's UDP socket) stay what is bound; the rest of the section is applied.
            *listen = config::Listen {
                https: listen.https,
                http: listen.http,
                admin: listen.admin,
                http3: listen.http3,
                ..config.listen.clone()
            };
            if config.listen.http3 != listen.http3 {
                // Alt-Svc must not offer an HTTP/3 that is not there (or hide one that is).
                fixed = config::Config {
                    listen: config::Listen { http3: listen.http3, ..config.listen.clone() },
                    ..config.clone()
                };
                config = &fixed;
            }
        }
        {
            let mut watch = self.cert_watch.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // The https listener is fixed at start: without it there is no folder to follow.
            let watch = &mut *watch;
            if let Some(task) = &mut watch.task {
                if watch.dir != config.tls.certs {
                    tracing::info!(from = %watch.dir.display(), to = %config.tls.certs.display(), "certificate folder changed");
                    task.abort();
                    watch.dir = config.tls.certs.clone();
                    *task = tls::spawn_watcher(watch.dir.clone(), self.certs.clone(), CERT_RESCAN);
                }
                tls::reload_now(&watch.dir, &self.certs);
            }
        }
        let previous = self.shared.runtime.load_full();
        let mut runtime =
            Runtime::build(config, self.certs.clone(), self.https_addr.map(|a| a.port()), Some(&previous))
                .map_err(StartError::Config)?;
        runtime.access_log = self.access_log.apply(log);
        self.shared.runtime.store(Arc::new(runtime));
        for slots in &self.slots {
            slots.resize(config.limits.max_connections);
        }
        // The old snapshot's health checks and DNS refresh stop now, even while old
        // streams still hold its upstreams.
        previous.cancel.cancel();
        self.acme.apply(config);
        Ok(())
    }
}

/// The checks start, reload and `porter check` all run on a loaded [`Config`], beyond
/// what loading it checked: an error refuses the file, warnings name settings that are
/// parsed but not implemented (never passed over silently).
pub fn validate(config: &Config) -> Result<Vec<String>, StartError> {
    // What start would fail to open, `porter check` names too (it cannot know permissions).
    if let (true, Some(path)) = (config.access_log.enabled, &config.access_log.path) {
        let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        if path.is_dir() {
            return Err(StartError::Config(format!("access_log.path: {} is a folder, not a file", path.display())));
        }
        if !folder.is_dir() {
            return Err(StartError::Config(format!(
                "access_log.path: {}: the folder {} does not exist",
                path.display(),
                folder.display()
            )));
        }
    }
    Ok(Vec::new())
}

/// Listener addresses a new configuration changes: they need a restart (named in a warning).
pub(crate) fn restart_needed(running: &config::Listen, new: &config::Listen) -> Vec<String> {
    let mut changed = Vec::new();
    if running.http3 != new.http3 && running.https.is_some() {
        let now = if running.http3 { "still serving HTTP/3" } else { "HTTP/3 still off" };
        changed.push(format!("listen.http3 changed to {}: HTTP/3 is switched at start; {now}", new.http3));
    }
    for (name, old, new) in
        [("https", running.https, new.https), ("http", running.http, new.http), ("admin", running.admin, new.admin)]
    {
        if old != new {
            let show = |a: Option<SocketAddr>| a.map_or("off".to_string(), |a| a.to_string());
            changed.push(format!(
                "listen.{name} changed from {} to {}: a listener address needs a restart; still {}",
                show(old),
                show(new),
                old.map_or("not listening".to_string(), |a| format!("listening on {a}"))
            ));
        }
    }
    changed
}
