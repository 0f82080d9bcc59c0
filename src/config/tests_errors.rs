//! Configs that must fail, each at an exact line, column and field path.

use std::path::Path;

use super::*;

/// One upstream `web` and one route, for tests that break one thing.
/// Line numbers: 1 upstreams, 2 web, 3 servers, 4 - url, 5 routes, 6 - upstream.
const BASE: &str = "\
upstreams:
  web:
    servers:
      - url: http://10.0.0.1:8080
routes:
  - upstream: web
";

fn fail(yaml: &str) -> ConfigError {
    match Config::from_yaml(yaml, Path::new("porter.yaml")) {
        Ok(config) => panic!("expected an error, got {config:#?}"),
        Err(err) => err,
    }
}

/// Asserts position and field, and that Display leads with `file:line:col: field: `.
#[track_caller]
fn assert_at(err: &ConfigError, line: usize, column: usize, field: &str) {
    let pos = (err.line, err.column, err.field.as_deref());
    assert_eq!(pos, (Some(line), Some(column), Some(field)), "{err}");
    let prefix = format!("porter.yaml:{line}:{column}: {field}: ");
    assert!(err.to_string().starts_with(&prefix), "{err}");
}

#[track_caller]
fn assert_message(err: &ConfigError, needle: &str) {
    assert!(err.message.contains(needle), "{:?} lacks {needle:?}", err.message);
}

#[test]
fn malformed_yaml() {
    // The flow list is never closed, so the next line's ':' is out of place.
    let err = fail("routes: [{upstream: web}\nupstreams: {}\n");
    assert_at(&err, 2, 10, "routes");
    assert_message(&err, "illegal placement of ':'");

    let err = fail("upstreams:\n  web:\n    servers: []\n   bad: indent\n");
    assert_at(&err, 4, 4, "upstreams.web.servers");
    assert_message(&err, "did not find expected key");

    let err = fail("routes:\n  - upstream: \"web\n");
    assert_at(&err, 2, 15, "routes[0].upstream");
    assert_message(&err, "unclosed quote");
}

#[test]
fn unknown_field_in_a_route_suggests_the_right_one() {
    let err = fail(&BASE.replace("  - upstream: web", "  - upstream: web\n    upstreem: api"));
    assert_at(&err, 7, 5, "routes[0].upstreem");
    assert_message(&err, "unknown field `upstreem`, did you mean `upstream`?");
}

#[test]
fn misspelt_required_field_is_unknown_then_missing() {
    // `upstreem` in place of `upstream`: the typo is reported, not the absence.
    let err = fail(&BASE.replace("  - upstream: web", "  - upstreem: web"));
    assert_at(&err, 6, 5, "routes[0].upstreem");
}

#[test]
fn unknown_field_in_a_server() {
    let err = fail(&BASE.replace("8080\n", "8080\n        weigth: 5\n"));
    assert_at(&err, 5, 9, "upstreams.web.servers[0].weigth");
    assert_message(&err, "did you mean `weight`?");
    assert_message(&err, "expected one of: url, weight");
}

#[test]
fn unknown_top_level_field() {
    let err = fail(&format!("{BASE}limit:\n  idle_timeout: 5s\n"));
    assert_at(&err, 7, 1, "limit");
    assert_message(&err, "did you mean `limits`?");
}

#[test]
fn bad_duration() {
    let err = fail(&format!("limits:\n  idle_timeout: 75\n{BASE}"));
    assert_at(&err, 2, 17, "limits.idle_timeout");
    assert_message(&err, "has no unit: write \"75s\"");

    let err = fail(&format!("limits:\n  header_read_timeout: 1.5s\n{BASE}"));
    assert_at(&err, 2, 24, "limits.header_read_timeout");
    assert_message(&err, "1500ms");
}

#[test]
fn bad_duration_inside_an_upstream() {
    let yaml = BASE.replace("    servers:", "    timeouts:\n      connect: 3sec\n    servers:");
    let err = fail(&yaml);
    assert_at(&err, 4, 16, "upstreams.web.timeouts.connect");
    assert_message(&err, "unknown unit \"sec\"");
}

#[test]
fn bad_size() {
    let err = fail(&format!("limits:\n  max_body_bytes: 10mb\n{BASE}"));
    assert_at(&err, 2, 19, "limits.max_body_bytes");
    assert_message(&err, "did you mean \"MB\"");
}

#[test]
fn zero_where_zero_makes_no_sense() {
    let yaml = BASE.replace("    servers:", "    timeouts: {connect: 0s}\n    servers:");
    let err = fail(&yaml);
    assert_at(&err, 3, 25, "upstreams.web.timeouts.connect");
    assert_eq!(err.message, "must be greater than 0");

    let err = fail(&format!("limits: {{max_connections: 0}}\n{BASE}"));
    assert_at(&err, 1, 27, "limits.max_connections");
}

#[test]
fn route_to_a_missing_upstream_lists_known_ones() {
    let yaml = BASE.replace("  - upstream: web", "  - upstream: web\n  - path: /api\n    upstream: api");
    let yaml = yaml.replace("routes:", "  static:\n    servers: [{url: \"http://s\"}]\nroutes:");
    let err = fail(&yaml);
    assert_at(&err, 10, 15, "routes[1].upstream");
    assert_eq!(err.message, "no upstream named \"api\" (known: static, web)");
    assert_eq!(
        err.to_string(),
        "porter.yaml:10:15: routes[1].upstream: no upstream named \"api\" (known: static, web)"
    );
}

#[test]
fn route_without_any_upstreams() {
    let err = fail("routes:\n  - upstream: web\n");
    assert_at(&err, 2, 15, "routes[0].upstream");
    assert_message(&err, "no upstreams are defined");
}

#[test]
fn weight_above_the_maximum() {
    let err = fail(&BASE.replace("8080\n", "8080\n        weight: 1001\n"));
    assert_at(&err, 5, 17, "upstreams.web.servers[0].weight");
    assert_eq!(err.message, "weight 1001 is above the maximum of 1000");
}

#[test]
fn weight_of_the_wrong_type() {
    let err = fail(&BASE.replace("8080\n", "8080\n        weight: heavy\n"));
    assert_at(&err, 5, 17, "upstreams.web.servers[0].weight");
    assert_eq!(err.message, "expected a whole number (0 or more), found `heavy`");

    let err = fail(&BASE.replace("8080\n", "8080\n        weight: -1\n"));
    assert_at(&err, 5, 17, "upstreams.web.servers[0].weight");
}

#[test]
fn consistent_hash_without_hash_on() {
    let err = fail(&BASE.replace("    servers:", "    balance: consistent_hash\n    servers:"));
    assert_at(&err, 3, 14, "upstreams.web.balance");
    assert_message(&err, "consistent_hash needs `hash_on`");
}

#[test]
fn hash_on_without_consistent_hash_or_malformed() {
    let err = fail(&BASE.replace("    servers:", "    hash_on: client_ip\n    servers:"));
    assert_at(&err, 3, 14, "upstreams.web.hash_on");
    assert_message(&err, "only applies to `balance: consistent_hash`");

    let yaml = BASE.replace("    servers:", "    balance: consistent_hash\n    hash_on: ip\n    servers:");
    let err = fail(&yaml);
    assert_at(&err, 4, 14, "upstreams.web.hash_on");
}

#[test]
fn unknown_balancer() {
    let err = fail(&BASE.replace("    servers:", "    balance: round_robin\n    servers:"));
    assert_at(&err, 3, 14, "upstreams.web.balance");
    assert_message(&err, "unknown variant `round_robin`");
}

#[test]
fn bad_server_urls() {
    let cases = [
        ("10.0.0.1:8080", "has no scheme: write \"http://10.0.0.1:8080\""),
        ("ftp://10.0.0.1", "unsupported scheme \"ftp\""),
        ("http://10.0.0.1:8080/app", "has a path (\"/app\")"),
        ("http://10.0.0.1:8080/?x=1", "has a query"),
        ("http://user:pw@10.0.0.1", "user info"),
    ];
    for (url, needle) in cases {
        let err = fail(&BASE.replace("http://10.0.0.1:8080", url));
        assert_at(&err, 4, 14, "upstreams.web.servers[0].url");
        assert_message(&err, needle);
    }
}

#[test]
fn upstream_without_servers() {
    let err = fail(&BASE.replace("    servers:\n      - url: http://10.0.0.1:8080\n", "    servers: []\n"));
    assert_at(&err, 3, 14, "upstreams.web.servers");
    assert_message(&err, "at least one server");

    let err = fail(&BASE.replace("    servers:\n      - url: http://10.0.0.1:8080\n", "    retries: 1\n"));
    assert_at(&err, 3, 5, "upstreams.web.servers");
    assert_eq!(err.message, "missing required field `servers`");
}

#[test]
fn missing_route_upstream() {
    let err = fail(&BASE.replace("  - upstream: web", "  - path: /x"));
    assert_at(&err, 6, 5, "routes[0]");
    assert_eq!(err.message, "a route needs an action: one of `upstream`, `redirect` or `respond`");
}

#[test]
fn routes_missing_or_empty() {
    let err = fail("upstreams:\n  web:\n    servers: [{url: \"http://a\"}]\n");
    assert_at(&err, 1, 1, "routes");
    let err = fail(&BASE.replace("routes:\n  - upstream: web\n", "routes: []\n"));
    assert_at(&err, 5, 9, "routes");
    assert_eq!(err.message, "at least one route is required");
}

#[test]
fn wrong_container_types() {
    let err =
        fail(&BASE.replace("    servers:\n      - url: http://10.0.0.1:8080\n", "    servers:\n      url: http://a\n"));
    assert_at(&err, 4, 7, "upstreams.web.servers");
    assert_eq!(err.message, "expected a list, found a mapping");

    let err = fail(&format!("limits: 5\n{BASE}"));
    assert_at(&err, 1, 9, "limits");
    assert_message(&err, "found `5`");

    let err = fail("- routes\n");
    assert_eq!((err.line, err.column, err.field.as_deref()), (Some(1), Some(1), None), "{err}");
    assert_eq!(err.to_string(), "porter.yaml:1:1: expected a mapping of `key: value` fields, found a list");
}

#[test]
fn duplicate_key() {
    let err = fail(&format!("{BASE}routes: []\n"));
    assert_at(&err, 7, 1, "routes");
    assert_message(&err, "duplicate key `routes`");
}

#[test]
fn duplicate_route_names_both_positions() {
    let yaml = BASE.replace(
        "  - upstream: web",
        "  - {host: a.com, path: /x, upstream: web}\n  - {host: A.com, path: /x, upstream: web}",
    );
    let err = fail(&yaml);
    assert_at(&err, 7, 5, "routes[1]");
    assert_message(&err, "routes[0] (at line 6, column 5) has the same host and path");
}

#[test]
fn bad_route_host_and_path() {
    let err = fail(&BASE.replace("  - upstream: web", "  - upstream: web\n    host: example.com:443"));
    assert_at(&err, 7, 11, "routes[0].host");
    assert_message(&err, "has a port");
    let err = fail(&BASE.replace("  - upstream: web", "  - upstream: web\n    host: \"api.*.com\""));
    assert_at(&err, 7, 11, "routes[0].host");
    let err = fail(&BASE.replace("  - upstream: web", "  - upstream: web\n    path: api"));
    assert_at(&err, 7, 11, "routes[0].path");
    assert_message(&err, "must start with '/'");
}

#[test]
fn listener_errors() {
    let err = fail(&format!("listen: {{}}\n{BASE}"));
    assert_at(&err, 1, 9, "listen");
    assert_message(&err, "at least one of listen.https and listen.http");

    let err = fail(&format!("listen:\n  https: localhost:8443\n{BASE}"));
    assert_at(&err, 2, 10, "listen.https");
    assert_message(&err, "not a hostname");

    let err = fail(&format!("listen:\n  https: 0.0.0.0:8443\n  http: 127.0.0.1:80\n  admin: 127.0.0.1:8443\n{BASE}"));
    assert_at(&err, 4, 10, "listen.admin");
    assert_message(&err, "overlaps listen.https (0.0.0.0:8443, at line 2, column 10)");
}

#[test]
fn health_check_timeout_not_below_interval() {
    let yaml = BASE.replace("    servers:", "    health_check:\n      interval: 2s\n      timeout: 2s\n    servers:");
    let err = fail(&yaml);
    assert_at(&err, 5, 16, "upstreams.web.health_check.timeout");
    assert_message(&err, "timeout (2s) must be shorter than its interval (2s)");

    // Only the interval written: the default 2s timeout is too long for it.
    let yaml = BASE.replace("    servers:", "    health_check: {interval: 1s}\n    servers:");
    let err = fail(&yaml);
    assert_at(&err, 3, 30, "upstreams.web.health_check.interval");
}

#[test]
fn redirect_without_https_listener() {
    let err = fail(&format!("listen: {{http: \"0.0.0.0:80\"}}\nhttp:\n  redirect: true\n{BASE}"));
    assert_at(&err, 3, 13, "http.redirect");
}

#[test]
fn redirect_port_out_of_range() {
    for port in ["0", "65536"] {
        let err = fail(&format!("http:\n  redirect_port: {port}\n{BASE}"));
        assert_at(&err, 2, 18, "http.redirect_port");
        assert_message(&err, "use 1 to 65535");
    }
}

#[test]
fn bad_tls_settings() {
    let err = fail(&format!("tls:\n  min_version: 1.1\n{BASE}"));
    assert_at(&err, 2, 16, "tls.min_version");
    assert_message(&err, "use \"1.2\" or \"1.3\"");
}

#[test]
fn bad_upstream_name() {
    let err = fail(&BASE.replace("  web:", "  \"my web\":").replace("upstream: web", "upstream: my web"));
    assert_at(&err, 2, 3, "upstreams.\"my web\"");
}

#[test]
fn multiple_documents() {
    let err = fail(&format!("{BASE}---\n{BASE}"));
    assert_eq!(err.line, Some(8), "{err}");
    assert_message(&err, "single YAML document");
}

#[test]
fn errors_inside_aliased_values_point_at_the_use() {
    let yaml = "\
routes:
  - upstream: &name web
upstreams:
  web:
    servers: [{url: \"http://a\"}]
    retries: *name
";
    let err = fail(yaml);
    assert_at(&err, 6, 14, "upstreams.web.retries");
    assert_message(&err, "found `web` (in the value defined at line 2");
}

#[test]
fn crlf_line_endings_keep_positions() {
    let err = fail(&BASE.replace("8080\n", "8080\n        weight: 1001\n").replace('\n', "\r\n"));
    assert_at(&err, 5, 17, "upstreams.web.servers[0].weight");
}

#[test]
fn scalars_of_the_wrong_type() {
    let err = fail(&format!("http:\n  redirect: maybe\n{BASE}"));
    assert_at(&err, 2, 13, "http.redirect");
    assert_eq!(err.message, "expected true or false, found `maybe`");

    let err = fail(&format!("limits:\n  underscores_in_headers: sometimes\n{BASE}"));
    assert_at(&err, 2, 27, "limits.underscores_in_headers");
    assert_eq!(err.message, "expected true or false, found `sometimes`");

    let err = fail(&format!("limits:\n  idle_timeout: {{s: 5}}\n{BASE}"));
    assert_at(&err, 2, 17, "limits.idle_timeout");
    assert_eq!(err.message, "expected a single value, found a mapping");

    let err = fail(&format!("tls:\n  hsts: \"a\\nb\"\n{BASE}"));
    assert_at(&err, 2, 9, "tls.hsts");
}

#[test]
fn upstream_tls_problems() {
    let https = BASE.replace("http://10.0.0.1:8080", "https://10.0.0.1:8443");
    // Line 4 is the url; the tls block starts on line 5.
    let with_tls = |tls: &str| https.replace("\nroutes:", &format!("\n    tls:\n{tls}routes:"));

    let err = fail(&with_tls("      ca_file: /nonexistent/porter-ca.pem\n"));
    assert_at(&err, 6, 16, "upstreams.web.tls.ca_file");
    assert_message(&err, "cannot read /nonexistent/porter-ca.pem");

    let not_pem = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(not_pem.path(), "just text\n").unwrap();
    let err = fail(&with_tls(&format!("      ca_file: {}\n", not_pem.path().display())));
    assert_at(&err, 6, 16, "upstreams.web.tls.ca_file");
    assert_message(&err, "holds no PEM certificate");

    let err = fail(&with_tls("      server_name: \"bad name!\"\n"));
    assert_at(&err, 6, 20, "upstreams.web.tls.server_name");
    assert_message(&err, "not a valid DNS name or IP address");

    let err = fail(&BASE.replace("\nroutes:", "\n    tls: {server_name: a.example}\nroutes:"));
    assert_at(&err, 5, 10, "upstreams.web.tls");
    assert_message(&err, "tls applies to https:// servers");

    let err = fail(&with_tls("      ca: x\n"));
    assert_message(&err, "unknown field `ca`");
}

#[test]
fn access_log_errors() {
    let err = fail(&format!("access_log:\n  format: common\n{BASE}"));
    assert_at(&err, 2, 11, "access_log.format");
    assert_message(&err, "unknown variant `common`, expected one of text, json, combined");

    let err = fail(&format!("access_log:\n  file: /var/log/porter.log\n{BASE}"));
    assert_at(&err, 2, 3, "access_log.file");
    assert_message(&err, "unknown field `file`");

    let err = fail(&format!("access_log:\n  path: /var/log/porter/\n{BASE}"));
    assert_at(&err, 2, 9, "access_log.path");
    assert_message(&err, "names a folder");

    let err = fail(&format!("access_log:\n  enabled: maybe\n{BASE}"));
    assert_at(&err, 2, 12, "access_log.enabled");
    assert_message(&err, "expected true or false");
}
