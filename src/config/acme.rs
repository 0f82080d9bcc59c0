//! `acme:` (docs/deploy.md, Automatic HTTPS) -> [`AcmeConfig`]: defaults, the challenge kind and
//! the listener it needs, and the domain list (explicit, or every exact route
//! host). Wildcards cannot be validated without DNS-01, which porter does not
//! do: named explicitly they are an error, coming from routes they are listed
//! as not managed (`porter check` prints them).

use std::path::Path;
use std::time::Duration;

use super::raw::{RawAcme, S};
use super::schema::{AcmeChallenge, AcmeConfig, Listen, RouteConfig};
use super::validate::{resolve, Checker, Zero};
use super::ConfigError;

pub(super) const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
const WILDCARD: &str =
    "a wildcard needs the DNS-01 challenge, which porter does not do (use lego or certbot with DNS-01)";

pub(crate) fn acme(
    check: &Checker,
    raw: &S<RawAcme>,
    listen: &Listen,
    routes: &[RouteConfig],
    base_dir: &Path,
) -> Result<AcmeConfig, ConfigError> {
    let a = &raw.value;
    let email = match &a.email {
        Some(e) => check.value(e, "acme.email", |t| {
            let t = t.trim();
            let valid = t.contains('@') && !t.contains(char::is_whitespace);
            if !t.is_empty() && !valid {
                return Err(format!("\"{t}\" is not an email address"));
            }
            Ok(t.to_string())
        })?,
        None => String::new(),
    };
    let directory = match &a.directory {
        Some(d) => check.value(d, "acme.directory", |t| match t.parse::<http::Uri>() {
            Ok(uri) if matches!(uri.scheme_str(), Some("https" | "http")) && uri.host().is_some() => Ok(t.to_string()),
            _ => Err(format!("\"{t}\" is not an http(s) URL, like \"{LETS_ENCRYPT}\"")),
        })?,
        None => LETS_ENCRYPT.to_string(),
    };
    let challenge = match &a.challenge {
        Some(c) => check.value(c, "acme.challenge", |t| match t {
            "http-01" => Ok(AcmeChallenge::Http01),
            "tls-alpn-01" => Ok(AcmeChallenge::TlsAlpn01),
            other => Err(format!("\"{other}\" is not a challenge porter answers: http-01 or tls-alpn-01")),
        })?,
        None => AcmeChallenge::Http01,
    };
    let (needed, present) = match challenge {
        AcmeChallenge::Http01 => ("listen.http", listen.http.is_some()),
        AcmeChallenge::TlsAlpn01 => ("listen.https", listen.https.is_some()),
    };
    if !present {
        let loc = a.challenge.as_ref().map_or(raw.referenced, |c| c.referenced);
        let msg = format!("the {} challenge is answered on {needed}, which is not set", challenge.as_str());
        return Err(check.err(loc, "acme.challenge", msg));
    }

    let mut domains = Vec::new();
    let mut not_managed = Vec::new();
    match &a.domains {
        Some(list) => {
            for (i, d) in list.value.iter().enumerate() {
                let field = format!("acme.domains[{i}]");
                let name = check.value(d, &field, super::values::parse_route_host)?;
                if name.starts_with("*.") {
                    return Err(check.err(d.referenced, &field, format!("\"{name}\": {WILDCARD}")));
                }
                domains.push(name);
            }
        }
        None => {
            for host in routes.iter().filter_map(|r| r.host.as_deref()) {
                if host.starts_with("*.") {
                    not_managed.push((host.to_string(), WILDCARD));
                } else if host.parse::<std::net::IpAddr>().is_ok() {
                    not_managed.push((host.to_string(), "an IP address, not a domain name"));
                } else {
                    domains.push(host.to_string());
                }
            }
        }
    }
    domains.sort();
    domains.dedup();
    not_managed.sort();
    not_managed.dedup();
    if domains.is_empty() {
        let msg = "no domain to order: list them in acme.domains, or give routes an exact `host`";
        return Err(check.err(raw.referenced, "acme.domains", msg));
    }
    let renew_before =
        check.duration(&a.renew_before, "acme.renew_before", Duration::from_secs(30 * 86_400), Zero::Forbidden)?;
    let ca_file = match &a.ca_file {
        Some(f) if f.value.is_empty() => None,
        Some(f) => Some(resolve(check, f, "acme.ca_file", base_dir)?),
        None => None,
    };
    Ok(AcmeConfig {
        email,
        directory,
        challenge,
        domains,
        not_managed,
        renew_before,
        ca_file,
        retry_min: Duration::from_secs(60),
        retry_max: Duration::from_secs(86_400),
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{AcmeChallenge, Config};
    use std::path::Path;

    fn load(yaml: &str) -> Result<Config, String> {
        Config::from_yaml(yaml, Path::new("/etc/porter/porter.yaml")).map_err(|e| e.to_string())
    }

    const ROUTES: &str = "upstreams:\n  web:\n    servers:\n      - url: \"http://127.0.0.1:1\"\nroutes:\n  \
        - host: B.example.com\n    upstream: web\n  - host: \"*.example.com\"\n    upstream: web\n  \
        - host: a.example.com\n    upstream: web\n  - host: b.example.com\n    path: /x\n    upstream: web\n  \
        - upstream: web\n";

    #[test]
    fn defaults_from_routes() {
        let c = load(&format!("acme:\n  email: ops@example.com\n{ROUTES}")).unwrap();
        let a = c.acme.unwrap();
        assert_eq!(a.domains, ["a.example.com", "b.example.com"]);
        assert_eq!(a.not_managed.len(), 1);
        assert_eq!(a.not_managed[0].0, "*.example.com");
        assert_eq!(a.directory, super::LETS_ENCRYPT);
        assert_eq!(a.challenge, AcmeChallenge::Http01);
        assert_eq!(a.renew_before.as_secs(), 30 * 86_400);
        assert_eq!(a.ca_file, None);
    }

    #[test]
    fn explicit_settings() {
        let c = load(&format!(
            "acme:\n  directory: https://127.0.0.1:14000/dir\n  challenge: tls-alpn-01\n  \
             domains: [x.test, X.test, y.test]\n  renew_before: 10d\n  ca_file: pebble.pem\n{ROUTES}"
        ))
        .unwrap();
        let a = c.acme.unwrap();
        assert_eq!(a.domains, ["x.test", "y.test"]);
        assert_eq!(a.challenge, AcmeChallenge::TlsAlpn01);
        assert_eq!(a.renew_before.as_secs(), 10 * 86_400);
        assert_eq!(a.ca_file.as_deref(), Some(Path::new("/etc/porter/pebble.pem")));
    }

    #[test]
    fn errors_name_the_field() {
        let e = load(&format!("acme:\n  domains: [\"*.example.com\"]\n{ROUTES}")).unwrap_err();
        assert!(e.contains("acme.domains[0]") && e.contains("DNS-01"), "{e}");
        let e = load(&format!("acme:\n  challenge: dns-01\n{ROUTES}")).unwrap_err();
        assert!(e.contains("acme.challenge"), "{e}");
        let e = load(&format!("acme:\n  directory: ftp://x\n{ROUTES}")).unwrap_err();
        assert!(e.contains("acme.directory"), "{e}");
        let e = load(&format!("acme:\n  renew_before: 30\n{ROUTES}")).unwrap_err();
        assert!(e.contains("acme.renew_before"), "{e}");
        let e = load(&format!("acme:\n  emial: x@y\n{ROUTES}")).unwrap_err();
        assert!(e.contains("emial"), "{e}");
        let no_hosts =
            "upstreams:\n  web:\n    servers:\n      - url: \"http://127.0.0.1:1\"\nroutes:\n  - upstream: web\n";
        let e = load(&format!("acme: {{}}\n{no_hosts}")).unwrap_err();
        assert!(e.contains("acme.domains"), "{e}");
        let e = load(&format!("listen:\n  https: 127.0.0.1:0\nacme:\n  email: a@b.c\n{ROUTES}")).unwrap_err();
        assert!(e.contains("listen.http"), "{e}");
    }
}
