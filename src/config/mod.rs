//! porter's configuration: the YAML file (docs/configuration.md), parsed and checked.
//!
//! `Config::load` / `Config::from_yaml` give either a fully validated `Config`
//! (defaults applied, paths resolved, cross-references checked) or one
//! `ConfigError` naming the file, line, column and field path, e.g.
//! `porter.yaml:12:5: routes[1].upstream: no upstream named "api" (known: static, web)`.
//!
//! Layout: `raw` is the serde shape of the YAML (with positions), `load`
//! parses it and translates serde-saphyr errors, `locate` recovers field paths
//! from positions, `validate`/`upstream` build the public types of `schema`,
//! and `units`/`values` parse the string-typed values.

mod acme;
mod auth;
mod cidr;
mod compress;
mod error;
mod load;
mod locate;
mod policy;
mod rate_limit;
mod raw;
mod schema;
mod units;
mod upstream;
mod validate;
mod values;
pub(crate) mod watch;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_errors;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) use auth::{BasicAuthConfig, ForwardAuthConfig, PasswordHash};
pub use cidr::Cidr;
pub(crate) use compress::{CompressConfig, Encoding};
pub use error::ConfigError;
#[cfg(test)]
pub(crate) use rate_limit::parse_rate;
pub(crate) use rate_limit::{OnError, RateLimitConfig, RateLimitKey, RateLimitStoreConfig};
#[cfg(test)]
pub(crate) use schema::SameSite;
pub(crate) use schema::{
    AccessLogConfig, AccessLogFormat, AcmeChallenge, AcmeConfig, Balance, HashOn, HeaderRulesConfig, HealthCheckConfig,
    HttpConfig, Limits, Listen, PassiveConfig, Placeholder, PolicyConfig, PoolConfig, RedirectConfig, RespondConfig,
    RewriteConfig, RouteConfig, Scheme, ServerConfig, ServerUrl, StickyConfig, Template, TimeoutsConfig, TlsConfig,
    TlsVersion, UpstreamConfig, UpstreamTls,
};
pub use schema::{RouteAction, TemplatePart};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub listen: Listen,
    pub tls: TlsConfig,
    pub http: HttpConfig,
    pub limits: Limits,
    /// `acme:` present: porter manages these certificates itself.
    pub acme: Option<AcmeConfig>,
    pub shutdown_timeout: Duration,
    pub access_log: AccessLogConfig,
    /// `rate_limit_store:`: routes' rate limits kept in Redis, shared between instances.
    pub rate_limit_store: Option<RateLimitStoreConfig>,
    /// Sorted by name; every route's `upstream` is a key here.
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// In file order; never empty.
    pub routes: Vec<RouteConfig>,
    /// Directory of the config file ("." for a bare file name). Relative paths
    /// in the file (`tls.certs`, `http.acme_webroot`) are already joined to it.
    pub base_dir: PathBuf,
}

impl Config {
    /// Reads, parses and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = std::fs::read(path).map_err(|e| ConfigError::new(path, format!("cannot read config file: {e}")))?;
        let text = String::from_utf8(bytes)
            .map_err(|e| ConfigError::new(path, format!("config file is not valid UTF-8: {e}")))?;
        Config::from_yaml(&text, path)
    }

    /// Parses and validates `text`, reporting errors against `file`, whose
    /// parent directory becomes `base_dir`. The file itself is not read.
    pub fn from_yaml(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let base_dir = match file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let raw = load::parse(text, file)?;
        validate::validate(raw, file, &base_dir)
    }
}
