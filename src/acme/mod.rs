//! Built-in ACME (docs/deploy.md, Automatic HTTPS): porter orders and renews the
//! certificates of its domains itself and writes them into `tls.certs` in
//! lego's layout, where the certificate watcher picks them up like any other.
//!
//! [`Acme`] keeps one task per managed name, started and stopped by
//! [`Acme::apply`] as configurations come and go (a reload that adds a domain
//! orders it; one that removes it stops renewing it and leaves its files). A
//! name's task loops: read the certificate on disk; if it is not yet due
//! (`schedule.rs`), sleep until it is; else take the folder's order lock
//! (`lock.rs`), order (`order.rs`), write the files (`files.rs`), and on
//! failure back off. Progress is visible through [`Acme::status`] (for
//! /status) and, from the files alone, [`describe_from_disk`] (for `porter check`).
//!
//! The answers it publishes live in `tls::challenges`, below both the resolver
//! and the listeners that serve them.
//!
//! Layout: `client` (HTTPS to the CA), `account`, `order`, `files`, `lock`, `schedule`, `task` (the loop).

mod account;
mod client;
mod files;
mod lock;
mod order;
mod schedule;
mod task;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use tokio::task::JoinHandle;

use crate::config::{AcmeConfig, Config};
use crate::tls::CertResolver;

/// Where a managed name stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameState {
    /// Just configured; its files are being looked at.
    Starting,
    /// A certificate is on disk and not yet due.
    Valid,
    /// An order is running.
    Ordering,
    /// Another instance on the same folder holds the order lock (its owner).
    OtherInstance(String),
    /// The last attempt failed; the next one waits for the backoff.
    Failed,
}

impl NameState {
    pub fn as_str(&self) -> &'static str {
        match self {
            NameState::Starting => "starting",
            NameState::Valid => "valid",
            NameState::Ordering => "ordering",
            NameState::OtherInstance(_) => "other_instance",
            NameState::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameStatus {
    pub domain: String,
    pub state: NameState,
    /// Expiry of the certificate on disk, if any.
    pub expires: Option<SystemTime>,
    /// When the next order (renewal or retry) is due.
    pub next_attempt: Option<SystemTime>,
    pub last_error: Option<String>,
    /// Consecutive failed attempts.
    pub failures: u32,
}

/// Totals since start, for metrics.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Orders started.
    pub attempts: AtomicU64,
    /// Orders that ended with a certificate written.
    pub issued: AtomicU64,
    pub failed: AtomicU64,
}

/// What the tasks report to: per-name status and the counters.
#[derive(Debug, Default)]
pub(crate) struct Board {
    names: Mutex<BTreeMap<String, NameStatus>>,
    pub counters: Counters,
}

impl Board {
    pub(crate) fn set(&self, status: NameStatus) {
        self.names.lock().unwrap_or_else(PoisonError::into_inner).insert(status.domain.clone(), status);
    }

    fn remove(&self, domain: &str) {
        self.names.lock().unwrap_or_else(PoisonError::into_inner).remove(domain);
    }
}

/// A snapshot of the ACME client, for /status, metrics and tests.
#[derive(Debug, Clone)]
pub struct AcmeStatus {
    pub names: Vec<NameStatus>,
    pub attempts: u64,
    pub issued: u64,
    pub failed: u64,
}

/// What one configuration's tasks share.
pub(crate) struct Ctx {
    pub acme: AcmeConfig,
    pub certs: PathBuf,
    pub resolver: Arc<CertResolver>,
    pub board: Arc<Board>,
    /// Loaded or created on first use, then reused by every name.
    pub account: tokio::sync::Mutex<Option<instant_acme::Account>>,
}

struct Running {
    /// The settings the tasks run with, domains left out: a change restarts them all.
    settings: (AcmeConfig, PathBuf),
    ctx: Arc<Ctx>,
    tasks: HashMap<String, JoinHandle<()>>,
}

/// The ACME client of one porter process.
pub(crate) struct Acme {
    resolver: Arc<CertResolver>,
    board: Arc<Board>,
    running: Mutex<Option<Running>>,
}

impl Acme {
    pub(crate) fn new(resolver: Arc<CertResolver>) -> Acme {
        Acme { resolver, board: Arc::default(), running: Mutex::new(None) }
    }

    /// Brings the tasks in line with `config` (start and every reload). Must run inside tokio.
    pub(crate) fn apply(&self, config: &Config) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(acme) = &config.acme else {
            if let Some(old) = running.take() {
                tracing::info!("acme: removed from the configuration; no longer renewing (the files stay)");
                self.stop(old);
            }
            return;
        };
        let mut settings = acme.clone();
        settings.domains.clear();
        settings.not_managed.clear();
        let settings = (settings, config.tls.certs.clone());
        if running.as_ref().is_some_and(|r| r.settings != settings) {
            tracing::info!("acme settings changed; restarting certificate management");
            if let Some(old) = running.take() {
                self.stop(old);
            }
        }
        let r = running.get_or_insert_with(|| Running {
            settings,
            ctx: Arc::new(Ctx {
                acme: acme.clone(),
                certs: config.tls.certs.clone(),
                resolver: self.resolver.clone(),
                board: self.board.clone(),
                account: tokio::sync::Mutex::new(None),
            }),
            tasks: HashMap::new(),
        });
        let removed: Vec<String> = r.tasks.keys().filter(|d| !acme.domains.contains(d)).cloned().collect();
        for domain in removed {
            tracing::info!(%domain, "acme: domain removed; no longer renewing it (its files stay)");
            if let Some(task) = r.tasks.remove(&domain) {
                task.abort();
            }
            self.board.remove(&domain);
        }
        for (host, why) in &acme.not_managed {
            tracing::warn!(%host, "acme: route host not managed: {why}");
        }
        for domain in &acme.domains {
            if !r.tasks.contains_key(domain) {
                tracing::info!(%domain, challenge = acme.challenge.as_str(), directory = %acme.directory, "acme: managing");
                r.tasks.insert(domain.clone(), tokio::spawn(task::manage(r.ctx.clone(), domain.clone())));
            }
        }
    }

    fn stop(&self, running: Running) {
        for (domain, task) in running.tasks {
            task.abort();
            self.board.remove(&domain);
        }
    }

    /// Stops every task (an order in flight is dropped; its lock is released).
    pub(crate) fn shutdown(&self) {
        if let Some(old) = self.running.lock().unwrap_or_else(PoisonError::into_inner).take() {
            self.stop(old);
        }
    }

    pub(crate) fn status(&self) -> AcmeStatus {
        let names = self.board.names.lock().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
        let c = &self.board.counters;
        AcmeStatus {
            names,
            attempts: c.attempts.load(Ordering::Relaxed),
            issued: c.issued.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
        }
    }
}

impl std::fmt::Debug for Acme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acme").field("names", &self.status().names.len()).finish()
    }
}

impl Drop for Acme {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// `porter check`'s view: for each managed name, what the folder says (the
/// certificate's expiry and renewal date, the last failure, a lock held).
pub fn describe_from_disk(acme: &AcmeConfig, certs: &Path) -> Vec<String> {
    let mut lines = vec![format!(
        "acme: {} via {}, renewing {} days before expiry (at most a third of the lifetime), account {}",
        acme.directory,
        acme.challenge.as_str(),
        acme.renew_before.as_secs() / 86_400,
        account::account_path(certs, acme).display()
    )];
    for domain in &acme.domains {
        let mut line = format!("  {domain}: ");
        match files::read(certs, domain) {
            Some(c) => {
                let due = schedule::renewal_due(c.not_before, c.not_after, acme.renew_before);
                line.push_str(&format!(
                    "certificate expires {}, renewal from {}",
                    crate::tls::format_date(c.not_after),
                    crate::tls::format_date(due)
                ));
            }
            None => line.push_str(&format!(
                "no certificate yet in {}: ordered at start",
                files::cert_path(certs, domain).display()
            )),
        }
        let recorded = files::read_recorded(certs, domain);
        if recorded.failures > 0 {
            line.push_str(&format!(
                " | {} failed attempt(s), last: {}",
                recorded.failures,
                recorded.last_error.as_deref().unwrap_or("?")
            ));
        }
        lines.push(line);
    }
    for (host, why) in &acme.not_managed {
        lines.push(format!("  {host}: NOT MANAGED: {why}"));
    }
    lines
}
