//! `basic_auth` (docs/configuration.md, Authentication): real porter, htpasswd
//! files made at test time with the bcrypt and argon2 crates, HTTP/1.1 and HTTP/2 clients.

use std::time::{Duration, Instant};

use crate::harness::{client_for, echoed_header, listen_block, plain_client, upstream_block, Backend, TestPorter};

const LOW_COST: u32 = 4;

fn argon2id(password: &str) -> String {
    use argon2::PasswordHasher;
    // Small parameters: the test checks the scheme, not the strength.
    let params = argon2::Params::new(256, 1, 1, None).unwrap();
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    argon.hash_password_with_salt(password.as_bytes(), b"porter-test-salt").unwrap().to_string()
}

fn htpasswd(entries: &[(&str, String)]) -> String {
    entries.iter().map(|(user, hash)| format!("{user}:{hash}\n")).collect()
}

fn config(backend: &Backend, extra_route: &str) -> String {
    format!(
        "{}http:\n  redirect: false\nupstreams:\n{}routes:\n\
         \x20 - path: /admin/\n    upstream: web\n    basic_auth: {{ realm: \"porter admin\", users_file: users.htpasswd }}\n\
         {extra_route}\
         \x20 - upstream: web\n",
        listen_block(),
        upstream_block("web", &[(backend, 1)])
    )
}

async fn start(backend: &Backend, users: &str, extra_route: &str) -> TestPorter {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("certs")).unwrap();
    std::fs::write(dir.path().join("users.htpasswd"), users).unwrap();
    TestPorter::start_in(dir, &config(backend, extra_route)).await
}

#[tokio::test]
async fn basic_auth_answers_401_until_a_bcrypt_or_argon2id_password_matches_over_http1_and_http2() {
    let b = Backend::start("b").await;
    let users = htpasswd(&[
        ("alice", bcrypt::hash("wonderland", LOW_COST).unwrap()),
        ("bob", argon2id("builder")),
        ("carol", bcrypt::hash("forwarded", LOW_COST).unwrap().replacen("$2b$", "$2y$", 1)),
    ]);
    let extra = "  - path: /pass/\n    upstream: web\n    \
                 basic_auth: { users_file: users.htpasswd, forward_credentials: true }\n";
    let p = start(&b, &users, extra).await;
    let http = format!("http://{}", p.http.unwrap());
    let plain = plain_client();
    let tls = client_for(p.https.unwrap(), &["localhost"]);
    for (client, base, version) in
        [(&plain, http.clone(), reqwest::Version::HTTP_11), (&tls, p.https_url(""), reqwest::Version::HTTP_2)]
    {
        let r = client.get(format!("{base}/admin/x")).send().await.unwrap();
        assert_eq!(r.version(), version);
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"porter admin\", charset=\"UTF-8\"");
        for (user, password) in [("alice", "wrong"), ("nobody", "wonderland"), ("bob", "wonderland")] {
            let r = client.get(format!("{base}/admin/x")).basic_auth(user, Some(password)).send().await.unwrap();
            assert_eq!(r.status(), 401, "{user}:{password} over {version:?}");
        }
        let r = client.get(format!("{base}/admin/x")).bearer_auth("token").send().await.unwrap();
        assert_eq!(r.status(), 401, "not Basic");

        for (user, password) in [("alice", "wonderland"), ("bob", "builder")] {
            let r = client.get(format!("{base}/admin/x")).basic_auth(user, Some(password)).send().await.unwrap();
            assert_eq!(r.status(), 200, "{user} over {version:?}");
            let body = r.text().await.unwrap();
            assert!(body.starts_with("b GET /admin/x"), "{body}");
            assert!(echoed_header(&body, "authorization").is_empty(), "Authorization not forwarded: {body}");
        }
        // forward_credentials: true, and a $2y$ line (htpasswd -B writes $2y$).
        let r = client.get(format!("{base}/pass/y")).basic_auth("carol", Some("forwarded")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let body = r.text().await.unwrap();
        assert_eq!(echoed_header(&body, "authorization"), ["Basic Y2Fyb2w6Zm9yd2FyZGVk"], "{body}");
        // Routes without basic_auth are untouched.
        assert_eq!(client.get(format!("{base}/open")).send().await.unwrap().status(), 200);
    }
    p.stop().await;
}

/// A verified password is remembered: the same credentials again cost no bcrypt.
/// The bound is the feature: 20 cached requests take less than 5 bcrypt verifications
/// of the file's cost, measured here on the same machine, where 20 uncached ones
/// would take at least 20 (verifications of one policy run at most one per two cores).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_verifies_a_password_once_then_serves_from_the_cache() {
    let b = Backend::start("b").await;
    let hash = bcrypt::hash("hot-route", 9).unwrap();
    let one = {
        let hash = hash.clone();
        tokio::task::spawn_blocking(move || {
            let start = Instant::now();
            assert!(bcrypt::verify("hot-route", &hash).unwrap());
            start.elapsed()
        })
        .await
        .unwrap()
    };
    let p = start(&b, &htpasswd(&[("ops", hash)]), "").await;
    let c = plain_client();
    let url = format!("http://{}/admin/", p.http.unwrap());
    let r = c.get(&url).basic_auth("ops", Some("hot-route")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let start = Instant::now();
    for _ in 0..20 {
        let r = c.get(&url).basic_auth("ops", Some("hot-route")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let cached = start.elapsed();
    eprintln!("one bcrypt: {one:?}; 20 cached requests: {cached:?}");
    assert!(cached < one * 5, "20 cached requests took {cached:?}; one bcrypt takes {one:?}");
    // The cache is keyed by the credentials: another password for the same user still fails.
    let r = c.get(&url).basic_auth("ops", Some("hot-routE")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    p.stop().await;
}

/// A client guessing passwords on one route does not slow another route, nor a user
/// of the same route whose password is cached; past the queue it gets 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_guessing_on_one_route_does_not_starve_others() {
    let b = Backend::start("b").await;
    let p = start(&b, &htpasswd(&[("ops", bcrypt::hash("right", 6).unwrap())]), "").await;
    let c = plain_client();
    let http = p.http.unwrap();
    let admin = format!("http://{http}/admin/");
    assert_eq!(c.get(&admin).basic_auth("ops", Some("right")).send().await.unwrap().status(), 200);

    let guesses: Vec<_> = (0..120)
        .map(|i| {
            let (c, url) = (c.clone(), admin.clone());
            tokio::spawn(async move {
                c.get(&url).basic_auth("ops", Some(format!("guess{i}"))).send().await.unwrap().status().as_u16()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let start = Instant::now();
    for _ in 0..5 {
        assert_eq!(c.get(format!("http://{http}/public")).send().await.unwrap().status(), 200);
        assert_eq!(c.get(&admin).basic_auth("ops", Some("right")).send().await.unwrap().status(), 200);
    }
    let others = start.elapsed();
    eprintln!("beside the guessing: {others:?}");
    let mut statuses = Vec::new();
    for guess in guesses {
        statuses.push(guess.await.unwrap());
    }
    eprintln!("guesses answered after {:?}: {} x 429", start.elapsed(), statuses.iter().filter(|s| **s == 429).count());
    assert!(statuses.iter().all(|s| *s == 401 || *s == 429), "{statuses:?}");
    assert!(statuses.contains(&429), "the queue of verifications is bounded: {statuses:?}");
    assert!(others < Duration::from_secs(2), "10 requests beside the guessing took {others:?}");
    drop(c); // its 120 idle connections would hold up the shutdown
    p.stop().await;
}

#[tokio::test]
async fn an_unsupported_htpasswd_scheme_is_a_config_error_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let users = format!("# ops\nalice:{}\nbob:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/\n", bcrypt::hash("x", 4).unwrap());
    std::fs::write(dir.path().join("users.htpasswd"), users).unwrap();
    let yaml =
        "listen:\n  http: \"127.0.0.1:0\"\nupstreams:\n  web:\n    servers:\n      - url: \"http://127.0.0.1:9\"\n\
                routes:\n  - upstream: web\n    basic_auth: { realm: x, users_file: users.htpasswd }\n";
    let path = dir.path().join("porter.yaml");
    std::fs::write(&path, yaml).unwrap();
    let err = porter::Config::load(&path).unwrap_err();
    assert_eq!((err.line, err.column), (Some(9), Some(41)), "{err}");
    assert_eq!(err.field.as_deref(), Some("routes[0].basic_auth.users_file"));
    let message = err.to_string();
    assert!(message.contains("users.htpasswd:3:") && message.contains("MD5"), "{message}");

    // `porter check` says the same and fails.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_porter"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("porter.yaml:9:41") && stderr.contains("users.htpasswd:3:"), "{stderr}");

    // A missing file is named too.
    std::fs::remove_file(dir.path().join("users.htpasswd")).unwrap();
    let err = porter::Config::load(&path).unwrap_err().to_string();
    assert!(err.contains("cannot read") && err.contains("users.htpasswd"), "{err}");
}

#[tokio::test]
async fn a_reload_rereads_the_users_file() {
    let b = Backend::start("b").await;
    let p = start(&b, &htpasswd(&[("alice", bcrypt::hash("first", LOW_COST).unwrap())]), "").await;
    let c = plain_client();
    let url = format!("http://{}/admin/", p.http.unwrap());
    let status = |user: &'static str, password: &'static str| {
        let (c, url) = (c.clone(), url.clone());
        async move { c.get(&url).basic_auth(user, Some(password)).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status("alice", "first").await, 200);
    let users = htpasswd(&[("alice", bcrypt::hash("second", LOW_COST).unwrap()), ("dave", argon2id("new"))]);
    std::fs::write(p.dir.path().join("users.htpasswd"), users).unwrap();
    p.reload(&config(&b, ""));
    // The old password was cached before the reload; the new policy forgot it.
    assert_eq!(status("alice", "first").await, 401);
    assert_eq!(status("alice", "second").await, 200);
    assert_eq!(status("dave", "new").await, 200);
    p.stop().await;
}

/// The sample users file of examples/basic-auth.yaml holds the password its comment names
/// (`config::examples_check_out` runs `porter check` on the example).
#[test]
fn the_sample_users_file_matches_its_documented_password() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let users = std::fs::read_to_string(examples.join("basic-auth.htpasswd")).unwrap();
    assert!(users.contains("`admin`, password `example`"), "{users}");
    let hash = users.lines().find_map(|l| l.strip_prefix("admin:")).expect("the sample user");
    assert!(bcrypt::verify("example", hash).unwrap());
}

/// basic_auth in a named `policies:` block: its 401 gets the route's response headers,
/// and `/metrics` counts it under the basic_auth rule.
#[tokio::test]
async fn basic_auth_from_a_named_policy_block_is_counted_and_gets_response_headers() {
    let b = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("certs")).unwrap();
    let users = htpasswd(&[("alice", bcrypt::hash("pw", LOW_COST).unwrap())]);
    std::fs::write(dir.path().join("users.htpasswd"), users).unwrap();
    let yaml = format!(
        "listen:\n  http: \"127.0.0.1:0\"\n  admin: \"127.0.0.1:0\"\nhttp:\n  redirect: false\n\
         policies:\n  staff:\n    basic_auth: {{ users_file: users.htpasswd }}\n\
         \x20   response_headers: {{ set: {{ X-Frame-Options: DENY }} }}\n\
         upstreams:\n{}routes:\n  - path: /staff/\n    upstream: web\n    policies: [staff]\n  - upstream: web\n",
        upstream_block("web", &[(&b, 1)])
    );
    let p = TestPorter::start_in(dir, &yaml).await;
    let c = plain_client();
    let url = format!("http://{}/staff/", p.http.unwrap());
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert_eq!(c.get(&url).basic_auth("alice", Some("no")).send().await.unwrap().status(), 401);
    let r = c.get(&url).basic_auth("alice", Some("pw")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["x-frame-options"].to_str().unwrap()), (200, "DENY"));
    let metrics = plain_client().get(p.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
    let line = "porter_policy_answers_total{route=\"*/staff/\",rule=\"basic_auth\"} 2";
    assert!(metrics.contains(line), "{metrics}");
    p.stop().await;
}
