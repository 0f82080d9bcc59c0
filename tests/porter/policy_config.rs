//! Route policy in the configuration (docs/configuration.md, Traffic policy):
//! named `policies:` blocks merged in order then the route's own fields, the
//! one-action rule, and every mistake reported at its file:line:column.

use std::path::Path;

use porter::{Cidr, ConfigError, RouteAction, TemplatePart};

const HEAD: &str = "upstreams:\n  web:\n    servers:\n      - url: http://127.0.0.1:9\n";

fn load(yaml: &str) -> Result<porter::Config, ConfigError> {
    porter::Config::from_yaml(yaml, Path::new("porter.yaml"))
}

#[track_caller]
fn fails_at(yaml: &str, line: usize, column: usize, field: &str, needle: &str) {
    let err = load(yaml).expect_err("config must be refused");
    assert_eq!((err.line, err.column, err.field.as_deref()), (Some(line), Some(column), Some(field)), "{err}");
    assert!(err.to_string().starts_with(&format!("porter.yaml:{line}:{column}: {field}: ")), "{err}");
    assert!(err.message.contains(needle), "{:?} lacks {needle:?}", err.message);
}

#[test]
fn named_blocks_merge_in_order_then_the_routes_own_fields() {
    let yaml = format!(
        "{HEAD}policies:
  secure:
    allow: [\"10.0.0.0/8\"]
    response_headers:
      set: {{ X-Frame-Options: DENY, X-Team: one }}
      remove: [Server]
  team:
    allow: [\"192.168.0.0/16\"]
    response_headers:
      set: {{ X-Team: two }}
      add: {{ X-Extra: a }}
routes:
  - upstream: web
    policies: [secure, team]
    deny: [\"10.9.0.0/16\"]
    response_headers:
      set: {{ X-Team: three }}
      remove: [X-Powered-By]
  - path: /plain
    upstream: web
"
    );
    let config = load(&yaml).unwrap();
    let policy = &config.routes[0].policy;
    let cidrs = |list: &[&str]| list.iter().map(|c| Cidr::parse(c).unwrap()).collect::<Vec<_>>();
    assert_eq!(policy.allow, cidrs(&["10.0.0.0/8", "192.168.0.0/16"]), "lists are joined");
    assert_eq!(policy.deny, cidrs(&["10.9.0.0/16"]));
    let set: Vec<(&str, &str)> =
        policy.response_headers.set.iter().map(|(n, t)| (n.as_str(), t.as_literal().unwrap())).collect();
    assert_eq!(set, [("x-frame-options", "DENY"), ("x-team", "three")], "a later set of the same header wins");
    assert_eq!(policy.response_headers.add.len(), 1);
    assert_eq!(policy.response_headers.remove, ["server", "x-powered-by"]);
    assert!(config.routes[1].policy.is_empty(), "a route without policy has none");
}

#[test]
fn a_route_has_exactly_one_action() {
    let yaml = format!(
        "{HEAD}routes:
  - host: www.example.com
    redirect: {{ to: \"https://example.com{{uri}}\" }}
  - path: /maintenance
    respond: {{ status: 503, body: \"back soon\\n\", headers: {{ Retry-After: 600 }} }}
  - upstream: web
"
    );
    let config = load(&yaml).unwrap();
    let RouteAction::Redirect(redirect) = &config.routes[0].action else { panic!() };
    assert_eq!(redirect.status, 308, "the default redirect status");
    assert!(matches!(redirect.to.parts.last(), Some(TemplatePart::Var(_))));
    let RouteAction::Respond(respond) = &config.routes[1].action else { panic!() };
    assert_eq!((respond.status, respond.body.as_str()), (503, "back soon\n"));
    assert_eq!(respond.headers, [("retry-after".to_string(), "600".to_string())]);

    fails_at(
        &format!("{HEAD}routes:\n  - upstream: web\n    respond: {{ status: 200 }}\n"),
        7,
        14,
        "routes[0].respond",
        "exactly one of `upstream`, `redirect` or `respond`",
    );
    fails_at(&format!("{HEAD}routes:\n  - path: /x\n"), 6, 5, "routes[0]", "a route needs an action");
}

#[test]
fn mistakes_are_reported_where_they_are() {
    fails_at(
        &format!("{HEAD}routes:\n  - upstream: web\n    policies: [secure]\n"),
        7,
        16,
        "routes[0].policies[0]",
        "no policy named \"secure\" (no policies are defined)",
    );
    fails_at(
        &format!(
            "{HEAD}policies:\n  a: {{ allow: [\"10.0.0.0/8\"] }}\nroutes:\n  - upstream: web\n    policies: [a, b]\n"
        ),
        9,
        19,
        "routes[0].policies[1]",
        "no policy named \"b\" (known: a)",
    );
    fails_at(
        &format!("{HEAD}routes:\n  - upstream: web\n    allow: [\"10.0.0.0/8\", \"10.0.0.0/33\"]\n"),
        7,
        27,
        "routes[0].allow[1]",
        "prefix length",
    );
    fails_at(
        &format!("{HEAD}policies:\n  admin:\n    deny: [nope]\nroutes:\n  - upstream: web\n"),
        7,
        12,
        "policies.admin.deny[0]",
        "not an IP address",
    );
    fails_at(
        &format!("{HEAD}routes:\n  - upstream: web\n    rewrite: {{ regex: \"^/v1/(.*\", replace: \"/v2/$1\" }}\n"),
        7,
        23,
        "routes[0].rewrite.regex",
        "not a valid regular expression",
    );
    fails_at(
        &format!("{HEAD}routes:\n  - upstream: web\n    request_headers:\n      set: {{ Connection: close }}\n"),
        8,
        14,
        "routes[0].request_headers.set",
        "cannot be set",
    );
    fails_at(
        &format!("{HEAD}routes:\n  - upstream: web\n    response_headers:\n      add: {{ X-Who: \"{{user}}\" }}\n"),
        8,
        21,
        "routes[0].response_headers.add.x-who",
        "unknown placeholder {user}",
    );
    fails_at(
        &format!("{HEAD}routes:\n  - redirect: {{ to: \"https://example.com\", status: 303 }}\n"),
        6,
        52,
        "routes[0].redirect.status",
        "301, 302, 307 or 308",
    );
    fails_at(
        &format!("{HEAD}routes:\n  - upstream: nope\n"),
        6,
        15,
        "routes[0].upstream",
        "no upstream named \"nope\"",
    );
}

#[test]
fn porter_check_names_the_place_of_a_policy_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("porter.yaml");
    let yaml =
        format!("{HEAD}routes:\n  - upstream: web\n    rewrite: {{ regex: \"^/v1/(.*\", replace: \"/v2/$1\" }}\n");
    std::fs::write(&path, yaml).unwrap();
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_porter")).arg("check").arg("-c").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("porter.yaml:7:23: routes[0].rewrite.regex: "), "{stderr}");

    let good = format!(
        "{HEAD}policies:\n  hide: {{ response_headers: {{ remove: [Server] }} }}\nroutes:\n  - upstream: web\n    policies: [hide]\n  \
         - host: www.example.com\n    redirect: {{ to: \"https://example.com{{uri}}\" }}\n"
    );
    std::fs::write(&path, good).unwrap();
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_porter")).arg("check").arg("-c").arg(&path).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("*/ -> web (with policy)"), "{stdout}");
    assert!(stdout.contains("www.example.com/ -> redirect 308"), "{stdout}");
}
