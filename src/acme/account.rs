//! The ACME account: created once per CA and email with the configured
//! contact, its key and URL kept in `certs/accounts/SERVER/EMAIL/account.json`
//! (instant-acme's credentials, the key as PKCS#8, mode 0600), so a restart and
//! every instance on the folder reuse it. Creating it takes the folder's lock
//! too, so two instances starting together make one account.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use instant_acme::{Account, AccountCredentials, NewAccount};

use super::client::AcmeHttp;
use super::files::write_atomic;
use super::lock::{owner_id, try_lock, Acquire};
use crate::config::AcmeConfig;

/// How long to wait for another instance that is creating the account.
const WAIT_FOR_OTHER: Duration = Duration::from_secs(60);

/// `accounts/127.0.0.1_14000/ops@example.com/account.json`, as lego names its folders.
pub(super) fn account_path(certs: &Path, acme: &AcmeConfig) -> PathBuf {
    let server = acme
        .directory
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.authority().map(|a| a.as_str().replace(':', "_")))
        .unwrap_or_else(|| "server".to_string());
    let who = if acme.email.is_empty() { "default" } else { acme.email.as_str() };
    certs.join("accounts").join(server).join(who).join("account.json")
}

pub(super) async fn load_or_create(certs: &Path, acme: &AcmeConfig) -> Result<Account, String> {
    let path = account_path(certs, acme);
    let started = Instant::now();
    loop {
        if let Some(account) = load(&path, acme).await? {
            return Ok(account);
        }
        let lock_name = format!(
            "account-{}",
            path.parent().and_then(|p| p.file_name()).map_or("x".into(), |n| n.to_string_lossy())
        );
        let (got, guard) = try_lock(certs, &lock_name, owner_id()).map_err(|e| format!("order lock: {e}"))?;
        if let Acquire::Held(owner) = got {
            if started.elapsed() > WAIT_FOR_OTHER {
                return Err(format!("another instance ({owner}) has been creating the ACME account for over a minute"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        // It may have appeared between the first look and the lock.
        if let Some(account) = load(&path, acme).await? {
            return Ok(account);
        }
        let account = create(&path, acme).await;
        drop(guard);
        return account;
    }
}

/// A new account in place of one the CA no longer knows (its file is replaced).
pub(super) async fn recreate(certs: &Path, acme: &AcmeConfig) -> Result<Account, String> {
    let path = account_path(certs, acme);
    tracing::warn!(directory = %acme.directory, file = %path.display(), "acme: the CA no longer knows the stored account; creating a new one");
    create(&path, acme).await
}

async fn load(path: &Path, acme: &AcmeConfig) -> Result<Option<Account>, String> {
    let Ok(text) = std::fs::read(path) else { return Ok(None) };
    let credentials: AccountCredentials =
        serde_json::from_slice(&text).map_err(|e| format!("{}: not an ACME account file: {e}", path.display()))?;
    let http = AcmeHttp::new(acme.ca_file.as_deref())?;
    let account = Account::builder_with_http(Box::new(http))
        .from_credentials(credentials)
        .await
        .map_err(|e| format!("ACME directory {}: {e}", acme.directory))?;
    Ok(Some(account))
}

async fn create(path: &Path, acme: &AcmeConfig) -> Result<Account, String> {
    let contact = format!("mailto:{}", acme.email);
    let contacts = [contact.as_str()];
    let new = NewAccount {
        contact: if acme.email.is_empty() { &[] } else { &contacts },
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let http = AcmeHttp::new(acme.ca_file.as_deref())?;
    let (account, credentials) = Account::builder_with_http(Box::new(http))
        .create(&new, acme.directory.clone(), None)
        .await
        .map_err(|e| format!("creating the ACME account at {}: {e}", acme.directory))?;
    let json = serde_json::to_vec_pretty(&credentials).map_err(|e| e.to_string())?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    write_atomic(path, &json, true).map_err(|e| format!("{}: {e}", path.display()))?;
    tracing::info!(directory = %acme.directory, email = %acme.email, file = %path.display(), "ACME account created");
    Ok(account)
}
