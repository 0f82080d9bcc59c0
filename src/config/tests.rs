//! Configs that load: the specified example, defaults, paths, YAML conveniences.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

/// The example file porter was specified with, verbatim.
pub(super) const SPEC_EXAMPLE: &str = r#"listen:
  https: "0.0.0.0:443"        # TLS listener; HTTP/2 and HTTP/1.1 via ALPN
  http: "0.0.0.0:80"          # plaintext: ACME HTTP-01 challenges + redirect to https
  admin: "127.0.0.1:9901"     # optional: /metrics, /status, dashboard
  proxy_protocol: false       # accept PROXY v1/v2 headers from an L4 balancer in front

tls:
  certs: "certs"              # folder, scanned recursively and watched (see §4)
  min_version: "1.2"          # "1.2" | "1.3"
  hsts: "max-age=31536000"    # optional Strict-Transport-Security on https responses

http:
  redirect: true              # 80 -> 443; false serves routes on plaintext too
  acme_webroot: "certs/.acme" # optional: /.well-known/acme-challenge/* served from here on port 80

limits:
  max_header_bytes: 64KiB
  max_body_bytes: 100MB       # 413 above this
  header_read_timeout: 10s    # slowloris guard: 408 and close
  idle_timeout: 75s           # keep-alive idle connections closed after this
  max_connections: 20000      # per listener; beyond it new connections wait or are refused
shutdown_timeout: 30s

upstreams:
  web:
    balance: weighted_round_robin   # default; see §6
    servers:
      - url: "http://10.0.0.11:8080"
        weight: 5                    # default 1; 0 = drain (no new requests)
      - url: "http://10.0.0.12:8080"
    health_check:                    # optional active checks
      path: /healthz
      interval: 5s
      timeout: 2s
      unhealthy_after: 3             # consecutive failures
      healthy_after: 2               # consecutive successes
    passive:                         # on by default
      max_failures: 3                # consecutive failures (connect error, reset, timeout) ...
      cooldown: 10s                  # ... take a server out for this long
    timeouts:
      connect: 3s
      response_header: 60s
    retries: 2                       # other servers tried; see §6
    pool:
      max_idle_per_server: 128
      idle_timeout: 90s
    http2: false                     # true: speak h2c (or h2 over TLS for https:// urls) to servers
    tls:                             # for https:// servers
      ca_file: ""                    # trust this PEM bundle instead of the public roots
      server_name: ""                # SNI and name to verify, when not the URL's host

routes:                              # first match by specificity, see §5
  - host: "example.com"              # exact; "*.example.com" wildcard; omitted = any host
    path: "/api/"                    # prefix; longest prefix wins
    upstream: api
    strip_prefix: true               # /api/users -> /users
  - host: "example.com"
    upstream: web
"#;

const MINIMAL: &str = "\
upstreams:
  web:
    servers:
      - url: http://127.0.0.1:8080
routes: [{upstream: web}]
";

pub(super) fn parse(yaml: &str) -> Result<Config, ConfigError> {
    Config::from_yaml(yaml, Path::new("/etc/porter/porter.yaml"))
}

fn addr(text: &str) -> Option<std::net::SocketAddr> {
    Some(text.parse().unwrap())
}

#[test]
fn spec_example_with_the_api_upstream_it_names_parses_fully() {
    let yaml =
        SPEC_EXAMPLE.replace("\nroutes:", "\n  api:\n    servers:\n      - url: \"https://api.internal\"\n\nroutes:");
    let config = parse(&yaml).unwrap();
    let base = Path::new("/etc/porter");
    assert_eq!(config.base_dir, base);
    let listen = &config.listen;
    assert_eq!((listen.https, listen.http), (addr("0.0.0.0:443"), addr("0.0.0.0:80")));
    assert_eq!((listen.admin, listen.proxy_protocol), (addr("127.0.0.1:9901"), false));
    assert_eq!(config.tls.certs, base.join("certs"));
    assert_eq!(config.tls.min_version, TlsVersion::V1_2);
    assert_eq!(config.tls.hsts.as_deref(), Some("max-age=31536000"));
    assert!(config.http.redirect);
    assert_eq!(config.http.acme_webroot, Some(base.join("certs/.acme")));
    assert_eq!(config.limits, Limits::default());
    assert_eq!(config.shutdown_timeout, Duration::from_secs(30));

    let web = &config.upstreams["web"];
    assert_eq!((web.balance, &web.hash_on), (Balance::WeightedRoundRobin, &None));
    assert_eq!(web.servers.len(), 2);
    let first = &web.servers[0];
    assert_eq!(
        (first.url.scheme, first.url.host.as_str(), first.url.port, first.weight),
        (Scheme::Http, "10.0.0.11", 8080, 5)
    );
    assert_eq!(first.url.original, "http://10.0.0.11:8080");
    assert_eq!(web.servers[1].weight, 1);
    assert_eq!(web.health_check, Some(HealthCheckConfig::default()));
    assert_eq!(web.passive, PassiveConfig::default());
    assert_eq!(web.timeouts, TimeoutsConfig::default());
    assert_eq!((web.retries, web.http2), (2, false));
    assert_eq!(web.pool, PoolConfig::default());

    let api = &config.upstreams["api"];
    assert_eq!((api.servers[0].url.scheme, api.servers[0].url.port), (Scheme::Https, 443));
    assert_eq!(api.health_check, None);

    let api_route = RouteConfig {
        host: Some("example.com".into()),
        path: "/api/".into(),
        action: RouteAction::Upstream("api".into()),
        strip_prefix: true,
        policy: PolicyConfig::default(),
    };
    let web_route = RouteConfig {
        host: Some("example.com".into()),
        path: "/".into(),
        action: RouteAction::Upstream("web".into()),
        strip_prefix: false,
        policy: PolicyConfig::default(),
    };
    assert_eq!(config.routes, vec![api_route, web_route]);
}

#[test]
fn spec_example_verbatim_names_an_undefined_upstream() {
    // The specified example routes to `api` but only defines `web`.
    let err = parse(SPEC_EXAMPLE).unwrap_err();
    assert_eq!((err.line, err.column), (Some(55), Some(15)));
    assert_eq!(err.field.as_deref(), Some("routes[0].upstream"));
    assert_eq!(err.message, "no upstream named \"api\" (known: web)");
}

#[test]
fn minimal_config_gets_every_default() {
    let config = Config::from_yaml(MINIMAL, Path::new("porter.yaml")).unwrap();
    assert_eq!(config.base_dir, Path::new("."));
    assert_eq!(config.listen, Listen::default());
    assert_eq!((config.listen.https, config.listen.http), (addr("[::]:443"), addr("[::]:80")));
    assert_eq!((config.listen.admin, config.listen.proxy_protocol), (None, false));
    let tls = TlsConfig { certs: PathBuf::from("./certs"), min_version: TlsVersion::V1_2, hsts: None };
    assert_eq!(config.tls, tls);
    assert_eq!(config.http, HttpConfig { redirect: true, redirect_port: None, acme_webroot: None });
    // The documented defaults, stated here rather than read from `Limits::default()`;
    // every field named, so a new one needs its default pinned here too.
    let Limits {
        max_header_bytes,
        max_body_bytes,
        header_read_timeout,
        idle_timeout,
        body_timeout,
        max_connections,
        underscores_in_headers,
    } = config.limits.clone();
    assert_eq!((max_header_bytes, max_body_bytes, max_connections), (65_536, 100_000_000, 20_000));
    let timeouts = (header_read_timeout, idle_timeout, body_timeout);
    assert_eq!(timeouts, (Duration::from_secs(10), Duration::from_secs(75), Duration::from_secs(60)));
    assert!(!underscores_in_headers);
    assert_eq!(config.shutdown_timeout, Duration::from_secs(30));
    let access_log = AccessLogConfig { enabled: true, format: AccessLogFormat::Text, path: None };
    assert_eq!(config.access_log, access_log, "on, text, stderr");
    let web = &config.upstreams["web"];
    let expected = UpstreamConfig {
        balance: Balance::WeightedRoundRobin,
        hash_on: None,
        servers: vec![ServerConfig {
            url: ServerUrl {
                original: "http://127.0.0.1:8080".into(),
                scheme: Scheme::Http,
                host: "127.0.0.1".into(),
                port: 8080,
            },
            weight: 1,
        }],
        health_check: None,
        passive: PassiveConfig { max_failures: 3, cooldown: Duration::from_secs(10) },
        timeouts: TimeoutsConfig::default(),
        retries: 2,
        pool: PoolConfig { max_idle_per_server: 128, idle_timeout: Duration::from_secs(90) },
        http2: false,
        tls: Default::default(),
        sticky: None,
    };
    assert_eq!(web, &expected);
    let route = RouteConfig {
        host: None,
        path: "/".into(),
        action: RouteAction::Upstream("web".into()),
        strip_prefix: false,
        policy: PolicyConfig::default(),
    };
    assert_eq!(config.routes, vec![route]);
}

#[test]
fn empty_sections_and_health_check_get_defaults() {
    let yaml = "listen: {http: \"127.0.0.1:0\", https: \"127.0.0.1:0\", admin: \"127.0.0.1:0\"}\n\
                tls: {}\nhttp: {}\nlimits: {}\n\
                upstreams:\n  web:\n    servers: [{url: \"http://a\"}]\n    health_check: {}\n    passive: {}\n    timeouts: {}\n    pool: {}\n\
                routes: [{upstream: web}]\n";
    let config = parse(yaml).unwrap();
    assert_eq!(config.limits, Limits::default());
    let web = &config.upstreams["web"];
    assert_eq!(web.health_check, Some(HealthCheckConfig::default()));
    assert_eq!(web.passive, PassiveConfig::default());
    assert_eq!(web.pool, PoolConfig::default());
    // Port 0 means "any free port", so three listeners on it do not clash.
    assert_eq!(config.listen.admin, addr("127.0.0.1:0"));
}

#[test]
fn listen_section_opens_only_what_it_names() {
    let yaml = format!("listen:\n  http: \"[::]:8080\"\n{MINIMAL}");
    let config = parse(&yaml).unwrap();
    assert_eq!(config.listen.https, None);
    assert_eq!(config.listen.http, addr("[::]:8080"));
    // Nothing to redirect to: plaintext serves the routes.
    assert!(!config.http.redirect);
}

#[test]
fn every_value_can_be_set() {
    let yaml = "\
listen: {https: \"127.0.0.1:8443\", proxy_protocol: true}
tls: {certs: /srv/certs, min_version: 1.3, hsts: max-age=60}
http: {redirect: false, redirect_port: 8443, acme_webroot: acme}
limits: {max_header_bytes: 16KiB, max_body_bytes: 10MB, header_read_timeout: 250ms, idle_timeout: 2m, max_connections: 10, underscores_in_headers: true}
shutdown_timeout: 0s
access_log: {format: combined, path: log/access.log, enabled: false}
upstreams:
  sticky:
    balance: consistent_hash
    hash_on: header:X-User
    servers: [{url: \"http://[::1]:81\", weight: 0}, {url: \"https://B.example\", weight: 1000}]
    health_check: {path: /up, interval: 1h, timeout: 1500ms, unhealthy_after: 1, healthy_after: 5}
    passive: {max_failures: 0, cooldown: 0s}
    timeouts: {connect: 1s, response_header: 2m}
    retries: 0
    pool: {max_idle_per_server: 0, idle_timeout: 1s}
    http2: true
    tls: {server_name: Internal.Example}
  cookie: {balance: consistent_hash, hash_on: cookie:sid, servers: [{url: \"http://c\"}]}
  ip: {balance: power_of_two, servers: [{url: \"http://d\"}]}
  least: {balance: least_connections, servers: [{url: \"http://e\"}]}
routes:
  - {host: \"*.Example.com\", path: /a, upstream: sticky, strip_prefix: true}
  - {host: \"*.Example.com\", path: /b, upstream: cookie}
";
    let c = parse(yaml).unwrap();
    assert_eq!((c.listen.https, c.listen.http, c.listen.proxy_protocol), (addr("127.0.0.1:8443"), None, true));
    assert_eq!(c.tls.certs, Path::new("/srv/certs"));
    assert_eq!(c.tls.min_version, TlsVersion::V1_3);
    assert_eq!(
        c.http,
        HttpConfig {
            redirect: false,
            redirect_port: Some(8443),
            acme_webroot: Some(PathBuf::from("/etc/porter/acme"))
        }
    );
    let limits = Limits {
        max_header_bytes: 16 * 1024,
        max_body_bytes: 10_000_000,
        header_read_timeout: Duration::from_millis(250),
        idle_timeout: Duration::from_secs(120),
        body_timeout: Duration::from_secs(60),
        max_connections: 10,
        underscores_in_headers: true,
    };
    assert_eq!(c.limits, limits);
    let access_log = AccessLogConfig {
        enabled: false,
        format: AccessLogFormat::Combined,
        path: Some(PathBuf::from("/etc/porter/log/access.log")),
    };
    assert_eq!(c.access_log, access_log);
    assert_eq!(parse(&format!("access_log: {{path: \"\"}}\n{MINIMAL}")).unwrap().access_log.path, None);
    assert_eq!(c.shutdown_timeout, Duration::ZERO);
    let s = &c.upstreams["sticky"];
    assert_eq!(s.balance, Balance::ConsistentHash);
    assert_eq!(s.hash_on, Some(HashOn::Header(http::HeaderName::from_static("x-user"))));
    assert_eq!((s.servers[0].url.host.as_str(), s.servers[0].weight), ("::1", 0));
    assert_eq!((s.servers[1].url.host.as_str(), s.servers[1].url.port, s.servers[1].weight), ("b.example", 443, 1000));
    let health = HealthCheckConfig {
        path: "/up".into(),
        interval: Duration::from_secs(3600),
        timeout: Duration::from_millis(1500),
        unhealthy_after: 1,
        healthy_after: 5,
    };
    assert_eq!(s.health_check, Some(health));
    assert_eq!(s.passive, PassiveConfig { max_failures: 0, cooldown: Duration::ZERO });
    assert_eq!(
        s.timeouts,
        TimeoutsConfig {
            connect: Duration::from_secs(1),
            response_header: Duration::from_secs(120),
            ..Default::default()
        }
    );
    assert_eq!((s.retries, s.http2), (0, true));
    assert_eq!((s.tls.server_name.as_deref(), s.tls.ca.is_none()), (Some("internal.example"), true));
    assert_eq!(s.pool, PoolConfig { max_idle_per_server: 0, idle_timeout: Duration::from_secs(1) });
    assert_eq!(c.upstreams["cookie"].hash_on, Some(HashOn::Cookie("sid".into())));
    assert_eq!(c.upstreams["ip"].balance, Balance::PowerOfTwo);
    assert_eq!(c.upstreams["least"].balance, Balance::LeastConnections);
    assert_eq!(c.routes[0].host.as_deref(), Some("*.example.com"));
    assert!(c.routes[0].strip_prefix);
}

#[test]
fn anchors_and_merge_keys_work() {
    let yaml = "\
upstreams:
  web: &base
    servers: [{url: \"http://a\"}]
    retries: 1
  api:
    <<: *base
    retries: 5
routes: [{upstream: web}, {path: /api, upstream: api}]
";
    let config = parse(yaml).unwrap();
    assert_eq!(config.upstreams["api"].retries, 5);
    assert_eq!(config.upstreams["api"].servers, config.upstreams["web"].servers);
}

#[test]
fn load_reads_the_file_and_resolves_paths_next_to_it() {
    let dir = std::env::temp_dir().join(format!("porter-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("porter.yaml");
    std::fs::write(&file, format!("tls: {{certs: my-certs}}\n{MINIMAL}")).unwrap();
    let config = Config::load(&file);
    std::fs::remove_dir_all(&dir).unwrap();
    let config = config.unwrap();
    assert_eq!(config.base_dir, dir);
    assert_eq!(config.tls.certs, dir.join("my-certs"));
}

#[test]
fn load_reports_an_unreadable_file() {
    let file = Path::new("/nonexistent/porter.yaml");
    let err = Config::load(file).unwrap_err();
    assert_eq!((err.file.as_path(), err.line, err.field.as_deref()), (file, None, None));
    assert!(err.message.starts_with("cannot read config file"), "{}", err.message);
    assert!(err.to_string().starts_with("/nonexistent/porter.yaml: cannot read config file"));
}

#[test]
fn empty_documents_are_errors() {
    for text in ["", "\n\n", "# nothing but a comment\n", "~\n", "---\n"] {
        let err = Config::from_yaml(text, Path::new("porter.yaml")).unwrap_err();
        assert_eq!(err.message, "config is empty", "{text:?}");
        assert_eq!(err.to_string(), "porter.yaml: config is empty");
    }
}
