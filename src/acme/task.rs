//! The life of one managed name: a loop that looks at the folder, sleeps
//! until something is due, and orders under the folder's lock. Everything it
//! decides from is on disk (the certificate, the shared failure record), so
//! several instances, and a restarted one, reach the same decisions; the only
//! in-memory state is a fallback record for a folder it cannot write.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::files::{self, OnDisk, Recorded};
use super::lock::{owner_id, try_lock, Acquire};
use super::{order, schedule, Ctx, NameState, NameStatus};

/// Longest sleep while a certificate is valid: the files are looked at again
/// (another instance or lego may have replaced them).
const RECHECK: Duration = Duration::from_secs(3600);
/// How often to look again while another instance holds the order lock.
const LOCK_POLL: Duration = Duration::from_millis(500);

/// ARI answer for one certificate: its id, the moment picked in the window, when to ask again.
struct AriCache {
    id: String,
    due: Option<SystemTime>,
    ask_again: SystemTime,
}

pub(crate) async fn manage(ctx: Arc<Ctx>, domain: String) {
    let mut local = Recorded::default();
    let mut ari: Option<AriCache> = None;
    ctx.board.set(status(&domain, NameState::Starting, None, None, &local));
    loop {
        let now = SystemTime::now();
        let on_disk = files::read(&ctx.certs, &domain);
        let due = match &on_disk {
            Some(cert) => Some(due_date(&ctx, cert, &mut ari).await),
            None => None,
        };
        let expires = on_disk.as_ref().map(|c| c.not_after);
        if let Some(due) = due.filter(|d| *d > now) {
            local = Recorded::default();
            ctx.board.set(status(&domain, NameState::Valid, expires, Some(due), &local));
            sleep_until(due.min(now + RECHECK)).await;
            continue;
        }
        // Due (or missing). Respect the backoff, ours or another instance's.
        let recorded = later(files::read_recorded(&ctx.certs, &domain), &local);
        if let Some(next) = recorded.next_attempt().filter(|n| *n > now) {
            ctx.board.set(status(&domain, NameState::Failed, expires, Some(next), &recorded));
            sleep_until(next).await;
            continue;
        }
        let guard = match try_lock(&ctx.certs, &domain, owner_id()) {
            Ok((Acquire::Got, guard)) => guard,
            Ok((Acquire::Held(owner), _)) => {
                let state = NameState::OtherInstance(owner);
                ctx.board.set(status(&domain, state, expires, None, &recorded));
                tokio::time::sleep(LOCK_POLL).await;
                continue;
            }
            Err(e) => {
                local = failed(
                    &ctx,
                    &domain,
                    &recorded,
                    format!("cannot take the order lock in {}: {e}", ctx.certs.display()),
                );
                continue;
            }
        };
        // Another instance may have finished (or failed) between our look and the lock.
        let fresh = files::read(&ctx.certs, &domain).is_some_and(|c| {
            schedule::renewal_due(c.not_before, c.not_after, ctx.acme.renew_before) > SystemTime::now()
        });
        let recorded = later(files::read_recorded(&ctx.certs, &domain), &local);
        if fresh || recorded.next_attempt().is_some_and(|n| n > SystemTime::now()) {
            drop(guard);
            continue;
        }
        // The certificate being renewed, when the CA gave renewal information for it
        // (so it supports ARI and its `replaces` field).
        let replaces = on_disk
            .as_ref()
            .and_then(|c| c.ari_id.as_ref())
            .filter(|id| ari.as_ref().is_some_and(|a| a.due.is_some() && a.id == id.to_string()));
        local = attempt(&ctx, &domain, expires, &recorded, replaces).await;
        drop(guard);
    }
}

/// One order, logged and counted; returns the record to keep.
async fn attempt(
    ctx: &Ctx,
    domain: &str,
    expires: Option<SystemTime>,
    recorded: &Recorded,
    replaces: Option<&instant_acme::CertificateIdentifier<'static>>,
) -> Recorded {
    let counters = &ctx.board.counters;
    counters.attempts.fetch_add(1, Ordering::Relaxed);
    ctx.board.set(status(domain, NameState::Ordering, expires, None, recorded));
    let why = match (expires, replaces) {
        (Some(_), Some(_)) => "renewal (replaces the current certificate, ARI)",
        (Some(_), None) => "renewal",
        (None, _) => "no certificate yet",
    };
    tracing::info!(%domain, challenge = ctx.acme.challenge.as_str(), directory = %ctx.acme.directory, why, "acme: ordering a certificate");
    let started = Instant::now();
    let result = async {
        let account = account(ctx).await?;
        let wanted =
            order::Wanted { domain, kind: ctx.acme.challenge, challenges: ctx.resolver.challenges(), replaces };
        let issued = match order::issue(&account, wanted).await {
            // The CA lost or dropped the account: a new one, once, then the order again.
            Err(e) if e.unknown_account => {
                let fresh = super::account::recreate(&ctx.certs, &ctx.acme).await?;
                *ctx.account.lock().await = Some(fresh.clone());
                order::issue(&fresh, wanted).await.map_err(|e| e.message)?
            }
            result => result.map_err(|e| e.message)?,
        };
        files::write_certificate(&ctx.certs, domain, &issued.chain_pem, &issued.key_pem, &issued.cert_url)
            .map_err(|e| format!("writing the certificate into {}: {e}", ctx.certs.display()))
    }
    .await;
    match result {
        Ok(()) => {
            counters.issued.fetch_add(1, Ordering::Relaxed);
            let clean = Recorded::default();
            if let Err(e) = files::write_recorded(&ctx.certs, domain, &clean) {
                tracing::warn!(%domain, "acme: cannot record the result: {e}");
            }
            // Serve it now rather than at the watcher's next scan.
            crate::tls::reload_now(&ctx.certs, &ctx.resolver);
            let file = files::cert_path(&ctx.certs, domain);
            tracing::info!(%domain, file = %file.display(), took = ?started.elapsed(), "acme: certificate issued");
            clean
        }
        Err(error) => failed(ctx, domain, recorded, error),
    }
}

/// Records a failure and the backoff before the next attempt.
fn failed(ctx: &Ctx, domain: &str, before: &Recorded, error: String) -> Recorded {
    ctx.board.counters.failed.fetch_add(1, Ordering::Relaxed);
    let failures = before.failures.saturating_add(1);
    let delay = schedule::backoff(ctx.acme.retry_min, ctx.acme.retry_max, failures);
    let next = SystemTime::now() + delay;
    let record = Recorded { failures, last_error: Some(error.clone()), next_attempt_ms: Some(files::unix_ms(next)) };
    tracing::warn!(%domain, %error, failures, retry_in = ?delay, "acme: order failed; the current certificate (if any) stays in service");
    if let Err(e) = files::write_recorded(&ctx.certs, domain, &record) {
        tracing::warn!(%domain, "acme: cannot record the failure: {e}");
    }
    record
}

/// Of the record on disk and ours, the one that waits longer.
fn later(disk: Recorded, local: &Recorded) -> Recorded {
    if local.next_attempt_ms > disk.next_attempt_ms {
        local.clone()
    } else {
        disk
    }
}

/// The renewal date from the certificate's dates, moved earlier by the CA's
/// renewal information (ARI) when it offers some.
async fn due_date(ctx: &Ctx, cert: &OnDisk, cache: &mut Option<AriCache>) -> SystemTime {
    let due = schedule::renewal_due(cert.not_before, cert.not_after, ctx.acme.renew_before);
    let Some(id) = &cert.ari_id else { return due };
    let id_text = id.to_string();
    let now = SystemTime::now();
    let stale = cache.as_ref().is_none_or(|c| c.id != id_text || c.ask_again <= now);
    if stale {
        *cache = Some(ask_ari(ctx, id, id_text).await);
    }
    match cache.as_ref().and_then(|c| c.due) {
        Some(ari_due) if ari_due < due => {
            tracing::info!(id = %id, "acme: the CA's renewal information (ARI) moves the renewal earlier");
            ari_due
        }
        _ => due,
    }
}

async fn ask_ari(ctx: &Ctx, id: &instant_acme::CertificateIdentifier<'static>, id_text: String) -> AriCache {
    let now = SystemTime::now();
    let account = match account(ctx).await {
        Ok(account) => account,
        // The CA is unreachable: go by the dates, ask again later.
        Err(_) => return AriCache { id: id_text, due: None, ask_again: now + RECHECK },
    };
    match account.renewal_info(id).await {
        Ok((info, retry_after)) => {
            let window = &info.suggested_window;
            let due = schedule::in_window(SystemTime::from(window.start), SystemTime::from(window.end));
            let ask_again = now + retry_after.clamp(Duration::from_secs(60), RECHECK * 24);
            AriCache { id: id_text, due: Some(due), ask_again }
        }
        // Most often: this CA has no ARI (its directory lists no renewalInfo).
        Err(e) => {
            tracing::debug!("acme: no renewal information: {e}");
            AriCache { id: id_text, due: None, ask_again: now + RECHECK * 24 }
        }
    }
}

async fn account(ctx: &Ctx) -> Result<instant_acme::Account, String> {
    let mut slot = ctx.account.lock().await;
    if let Some(account) = slot.as_ref() {
        return Ok(account.clone());
    }
    let account = super::account::load_or_create(&ctx.certs, &ctx.acme).await?;
    *slot = Some(account.clone());
    Ok(account)
}

fn status(
    domain: &str,
    state: NameState,
    expires: Option<SystemTime>,
    next: Option<SystemTime>,
    r: &Recorded,
) -> NameStatus {
    NameStatus {
        domain: domain.to_string(),
        state,
        expires,
        next_attempt: next,
        last_error: r.last_error.clone(),
        failures: r.failures,
    }
}

async fn sleep_until(t: SystemTime) {
    let wait = t.duration_since(SystemTime::now()).unwrap_or_default();
    tokio::time::sleep(wait).await;
}
