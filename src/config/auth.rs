//! A route's `basic_auth` and `forward_auth` (docs/configuration.md,
//! Authentication): the YAML shape, and its checks. The htpasswd file is read here, so
//! `porter check` and a reload both see a bad line (with its file and line
//! number) before anything runs, and a reload re-reads the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderName;
use serde::Deserialize;

use super::error::ConfigError;
use super::locate::join;
use super::raw::S;
use super::schema::ServerUrl;
use super::validate::{resolve, Checker, Zero};
use super::values::parse_server_url;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBasicAuth {
    pub realm: Option<S<String>>,
    pub users_file: S<String>,
    pub forward_credentials: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawForwardAuth {
    pub url: S<String>,
    pub copy_headers: Option<Vec<S<String>>>,
    pub timeout: Option<S<String>>,
}

/// `basic_auth: {realm, users_file, forward_credentials}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuthConfig {
    /// Shown by browsers in the login prompt; a valid quoted-string body.
    pub realm: String,
    /// Joined to the config file's directory.
    pub users_file: PathBuf,
    /// The file's entries, in file order, names unique, never empty.
    pub users: Vec<HtpasswdUser>,
    /// Pass the client's `Authorization` on to the server (default: removed).
    pub forward_credentials: bool,
}

pub(crate) const DEFAULT_REALM: &str = "restricted";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HtpasswdUser {
    pub name: String,
    pub hash: PasswordHash,
}

/// A checked password hash: it parses, and its scheme is one porter verifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// `$2y$`, `$2b$` or `$2a$` (htpasswd -B).
    Bcrypt(String),
    /// A PHC string `$argon2id$v=19$m=...,t=...,p=...$salt$hash`.
    Argon2id(String),
}

/// `forward_auth: {url, copy_headers, timeout}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardAuthConfig {
    /// The auth server, as an upstream server address (scheme, host, port).
    pub server: ServerUrl,
    /// The URL's path and query ("/" when it has none): the auth request's target.
    pub path: String,
    /// Headers of a 2xx auth answer set on the forwarded request (a client's own
    /// values of these names are always removed first).
    pub copy_headers: Vec<HeaderName>,
    /// For the whole auth exchange: connect, send, and the answer's head.
    pub timeout: Duration,
}

/// Connection-level and framing fields describe the auth answer's own message, not the user.
const NOT_COPIED: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

pub(crate) const DEFAULT_FORWARD_AUTH_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) fn basic_auth(
    check: &Checker,
    prefix: &str,
    raw: &S<RawBasicAuth>,
    base_dir: &Path,
) -> Result<BasicAuthConfig, ConfigError> {
    let b = &raw.value;
    let realm = match &b.realm {
        Some(realm) => {
            check.value(realm, &join(prefix, "realm"), |r| {
                // It goes inside `realm="..."`: no quote, backslash or control character.
                if r.is_empty() || r.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
                    return Err(format!(
                        "{r:?}: a realm must be non-empty, without quotes, backslashes or control characters"
                    ));
                }
                Ok(())
            })?;
            realm.value.clone()
        }
        None => DEFAULT_REALM.to_string(),
    };
    let field = join(prefix, "users_file");
    let users_file = resolve(check, &b.users_file, &field, base_dir)?;
    let text = std::fs::read_to_string(&users_file).map_err(|e| {
        check.err(b.users_file.referenced, &field, format!("cannot read {}: {e}", users_file.display()))
    })?;
    let users = parse_htpasswd(&text).map_err(|(line, msg)| {
        check.err(b.users_file.referenced, &field, format!("{}:{line}: {msg}", users_file.display()))
    })?;
    if users.is_empty() {
        let msg = format!("{} holds no users (lines `name:hash`)", users_file.display());
        return Err(check.err(b.users_file.referenced, &field, msg));
    }
    Ok(BasicAuthConfig { realm, users_file, users, forward_credentials: b.forward_credentials.unwrap_or(false) })
}

/// The entries of an htpasswd file; blank lines and `#` comments are skipped.
/// An error is (1-based line, message).
pub(crate) fn parse_htpasswd(text: &str) -> Result<Vec<HtpasswdUser>, (usize, String)> {
    let mut users: Vec<HtpasswdUser> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let Some((name, hash)) = line.split_once(':') else {
            return Err((n, "not `name:hash` (no colon)".to_string()));
        };
        if name.is_empty() {
            return Err((n, "empty user name".to_string()));
        }
        if users.iter().any(|u| u.name == name) {
            return Err((n, format!("user {name:?} is listed twice")));
        }
        let hash = parse_hash(hash.trim()).map_err(|msg| (n, format!("user {name:?}: {msg}")))?;
        users.push(HtpasswdUser { name: name.to_string(), hash });
    }
    Ok(users)
}

fn parse_hash(hash: &str) -> Result<PasswordHash, String> {
    const SUPPORTED: &str = "porter verifies bcrypt (`htpasswd -B`: $2y$, $2b$, $2a$) and argon2id";
    if ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p)) {
        return match hash.parse::<bcrypt::HashParts>() {
            Ok(_) => Ok(PasswordHash::Bcrypt(hash.to_string())),
            Err(e) => Err(format!("not a valid bcrypt hash ({e})")),
        };
    }
    if hash.starts_with("$argon2id$") {
        let parsed = argon2::PasswordHash::new(hash).map_err(|e| format!("not a valid argon2id hash ({e})"))?;
        argon2::Params::try_from(&parsed).map_err(|e| format!("argon2id parameters not usable ({e})"))?;
        return Ok(PasswordHash::Argon2id(hash.to_string()));
    }
    let scheme = if hash.starts_with("$apr1$") || hash.starts_with("$1$") {
        "MD5 ($apr1$)"
    } else if hash.starts_with("{SHA}") {
        "SHA-1 ({SHA})"
    } else if hash.starts_with("$5$") || hash.starts_with("$6$") {
        "SHA-crypt ($5$/$6$)"
    } else if hash.starts_with("$argon2i$") || hash.starts_with("$argon2d$") {
        "argon2i/argon2d (only argon2id is accepted)"
    } else if hash.starts_with('$') {
        "an unknown $-scheme"
    } else {
        "crypt(3) DES or plain text"
    };
    Err(format!("unsupported password scheme {scheme}; {SUPPORTED}"))
}

pub(crate) fn forward_auth(
    check: &Checker,
    prefix: &str,
    raw: &S<RawForwardAuth>,
) -> Result<ForwardAuthConfig, ConfigError> {
    let f = &raw.value;
    let (server, path) = check.value(&f.url, &join(prefix, "url"), parse_auth_url)?;
    let mut copy_headers = Vec::new();
    for (i, name) in f.copy_headers.iter().flatten().enumerate() {
        let field = format!("{}[{i}]", join(prefix, "copy_headers"));
        let header = check.value(name, &field, |n| {
            HeaderName::from_bytes(n.as_bytes()).map_err(|_| format!("{n:?} is not a valid header name"))
        })?;
        if NOT_COPIED.contains(&header.as_str()) {
            return Err(check.err(
                name.referenced,
                &field,
                format!("{n} cannot be copied onto a request", n = name.value),
            ));
        }
        copy_headers.push(header);
    }
    let timeout =
        check.duration(&f.timeout, &join(prefix, "timeout"), DEFAULT_FORWARD_AUTH_TIMEOUT, Zero::Forbidden)?;
    Ok(ForwardAuthConfig { server, path, copy_headers, timeout })
}

/// `http(s)://host[:port][/path][?query]`: the server part as an upstream server URL, and the target.
fn parse_auth_url(text: &str) -> Result<(ServerUrl, String), String> {
    let after_scheme = text.find("://").map_or(0, |i| i + 3);
    let split = text[after_scheme..].find(['/', '?']).map_or(text.len(), |i| after_scheme + i);
    let (origin, target) = text.split_at(split);
    if target.contains('#') {
        return Err(format!("{text:?} has a fragment"));
    }
    let server = parse_server_url(origin)?;
    let path = match target {
        "" => "/".to_string(),
        t if t.starts_with('?') => format!("/{t}"),
        t => t.to_string(),
    };
    http::uri::PathAndQuery::try_from(path.as_str()).map_err(|e| format!("{text:?}: bad path ({e})"))?;
    Ok((server, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htpasswd_schemes() {
        let bcrypt = bcrypt::hash("pw", 4).unwrap();
        let text = format!("# admins\n\nalice:{bcrypt}\n");
        let users = parse_htpasswd(&text).unwrap();
        assert_eq!(users[0].name, "alice");
        assert_eq!(users[0].hash, PasswordHash::Bcrypt(bcrypt.clone()));
        for (line, scheme) in [
            ("bob:$apr1$abc$def", "MD5"),
            ("bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "SHA-1"),
            ("bob:$6$salt$hash", "SHA-crypt"),
            ("bob:$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaA", "argon2i"),
            ("bob:abcdefghijklm", "crypt(3)"),
        ] {
            let (n, msg) = parse_htpasswd(&format!("alice:{bcrypt}\n{line}\n")).unwrap_err();
            assert_eq!(n, 2, "{line}");
            assert!(msg.contains(scheme) && msg.contains("\"bob\""), "{line}: {msg}");
        }
        assert_eq!(parse_htpasswd("nocolon\n").unwrap_err().0, 1);
        assert!(parse_htpasswd(&format!("a:{bcrypt}\na:{bcrypt}\n")).unwrap_err().1.contains("twice"));
        assert!(parse_htpasswd("a:$2y$05$short\n").unwrap_err().1.contains("bcrypt"));
    }

    #[test]
    fn auth_urls() {
        let (server, path) = parse_auth_url("http://127.0.0.1:9091/api/verify?rd=x").unwrap();
        assert_eq!((server.port, path.as_str()), (9091, "/api/verify?rd=x"));
        assert_eq!(parse_auth_url("https://auth.example.com").unwrap().1, "/");
        assert!(parse_auth_url("ftp://x/").is_err());
        assert!(parse_auth_url("http://x/#frag").is_err());
    }
}
