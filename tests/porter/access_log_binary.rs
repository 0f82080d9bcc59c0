//! docs/configuration.md, Access log, with the real binary: the file reopened on SIGUSR1
//! (logrotate, with the docs' stanza), `--log-level` beside RUST_LOG; and a writer that falls
//! behind never holds up a request: the binary's stderr is a pipe nobody reads, so the log
//! writer blocks as soon as the pipe is full; every request must still be answered, and the
//! lines that could not be queued are counted in /metrics.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::access_log::lines;
use crate::admin::{parse_prometheus, value};
use crate::harness::*;
use crate::lifecycle::{free_port, signal, spawn_porter};

/// A porter.yaml in `dir` serving `backend` on `port`, its access log in `dir/access.log`
/// (`settings`: more `access_log:` lines); the paths of both.
fn file_log_config(dir: &Path, port: u16, settings: &str, backend: &Backend) -> (PathBuf, PathBuf) {
    let (config, log) = (dir.join("porter.yaml"), dir.join("access.log"));
    let yaml = format!(
        "listen:\n  http: \"127.0.0.1:{port}\"\nhttp:\n  redirect: false\naccess_log:\n{settings}  path: {}\n\
         upstreams:\n{}routes:\n  - upstream: web\n",
        log.display(),
        upstream_block("web", &[(backend, 1)])
    );
    std::fs::write(&config, yaml).unwrap();
    (config, log)
}

/// The binary with an access log file: logrotate renames the file and sends SIGUSR1;
/// porter opens a new file at the path, the renamed one keeps what it had.
#[tokio::test]
async fn sigusr1_reopens_the_file_after_logrotate_renamed_it() {
    let b = Backend::start("one").await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (config, log) = file_log_config(dir.path(), port, "", &b);
    let porter = spawn_porter(&config);
    let c = plain_client();
    for path in ["/before-1", "/before-2"] {
        assert_eq!(c.get(format!("http://127.0.0.1:{port}{path}")).send().await.unwrap().status(), 200);
    }
    assert_eq!(lines(&log, 2).await.len(), 2);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o027, 0, "created 0640 (less with a stricter umask), got {mode:o}");

    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    // Until told, porter writes on into the renamed file (its open descriptor).
    assert_eq!(c.get(format!("http://127.0.0.1:{port}/between")).send().await.unwrap().status(), 200);
    assert_eq!(lines(&rotated, 3).await.len(), 3);
    signal(&porter.0, "USR1");
    porter.wait_for_line("access log reopened", Duration::from_secs(10)).await;
    for path in ["/after-1", "/after-2"] {
        assert_eq!(c.get(format!("http://127.0.0.1:{port}{path}")).send().await.unwrap().status(), 200);
    }
    let new = lines(&log, 2).await;
    assert!(new[0].contains("path=/after-1") && new[1].contains("path=/after-2"), "{new:?}");
    let old = lines(&rotated, 3).await;
    assert_eq!(old.len(), 3, "{old:?}");
    assert!(old[2].contains("path=/between"), "{old:?}");
    signal(&porter.0, "TERM");
}

/// The logrotate stanza of docs/deploy.md, 6. systemd, run by the real logrotate (forced, own state file), with
/// `kill -USR1 PID` for systemd's `systemctl kill`: the old lines stay in `access.log.1`,
/// new ones land in a new `access.log`.
#[tokio::test]
async fn logrotate_with_the_readme_stanza_rotates_without_losing_a_line() {
    let Some(logrotate) = crate::deploy_files::tool_or_skip("logrotate", "logrotate", "access-log logrotate") else {
        return;
    };
    let b = Backend::start("one").await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (config, log) = file_log_config(dir.path(), port, "  format: combined\n", &b);
    let porter = spawn_porter(&config);
    let c = plain_client();
    for path in ["/one", "/two"] {
        assert_eq!(c.get(format!("http://127.0.0.1:{port}{path}")).send().await.unwrap().status(), 200);
    }
    assert_eq!(lines(&log, 2).await.len(), 2);

    let stanza = format!(
        "{} {{\n    daily\n    rotate 14\n    missingok\n    notifempty\n    compress\n    delaycompress\n    \
         postrotate\n        kill -USR1 {}\n    endscript\n}}\n",
        log.display(),
        porter.0.id()
    );
    let conf = dir.path().join("logrotate.conf");
    std::fs::write(&conf, stanza).unwrap();
    let out = Command::new(logrotate).arg("-f").arg("-s").arg(dir.path().join("state")).arg(&conf).output().unwrap();
    assert!(out.status.success(), "logrotate: {}", String::from_utf8_lossy(&out.stderr));
    porter.wait_for_line("access log reopened", Duration::from_secs(10)).await;

    assert_eq!(c.get(format!("http://127.0.0.1:{port}/three")).send().await.unwrap().status(), 200);
    let new = lines(&log, 1).await;
    assert_eq!(new.len(), 1, "{new:?}");
    assert!(new[0].contains("\"GET /three HTTP/1.1\""), "{new:?}");
    let old = lines(&dir.path().join("access.log.1"), 2).await;
    assert!(old[0].contains("GET /one ") && old[1].contains("GET /two "), "{old:?}");
    assert_eq!(old.len(), 2);
    signal(&porter.0, "TERM");
}

/// Starts the binary with `args`, RUST_LOG=`rust_log`, and stderr collected line by line.
fn spawn_with(config: &Path, args: &[&str], rust_log: &str) -> crate::lifecycle::Running {
    let child = Command::new(env!("CARGO_BIN_EXE_porter"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", rust_log)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    crate::lifecycle::Running::logging(child, None)
}

async fn until_serving(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "porter did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn log_level_flag_wins_over_rust_log_and_leaves_the_access_log_alone() {
    let b = Backend::start("one").await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config: PathBuf = dir.path().join("porter.yaml");
    std::fs::write(
        &config,
        format!(
            "listen:\n  http: \"127.0.0.1:{port}\"\nhttp:\n  redirect: false\nupstreams:\n{}routes:\n  - upstream: web\n",
            upstream_block("web", &[(&b, 1)])
        ),
    )
    .unwrap();

    // --log-level warn over RUST_LOG=info: no info lines, and the access log (stderr) still on.
    let quiet = spawn_with(&config, &["--log-level", "warn"], "info");
    until_serving(port).await;
    let c = plain_client();
    assert_eq!(c.get(format!("http://127.0.0.1:{port}/quiet")).send().await.unwrap().status(), 200);
    quiet.wait_for_line("path=/quiet", Duration::from_secs(10)).await;
    let logged = quiet.1.lock().unwrap().clone();
    assert!(!logged.iter().any(|l| l.contains("listening for HTTP")), "info lines at warn: {logged:#?}");
    drop(quiet);

    // --log-level info over RUST_LOG=error: the info lines are back.
    let loud = spawn_with(&config, &["--log-level", "info"], "error");
    loud.wait_for_line("listening for HTTP", Duration::from_secs(10)).await;
    drop(loud);

    // A level that is not one is refused by the command line, exit 2.
    let out = Command::new(env!("CARGO_BIN_EXE_porter"))
        .args(["--log-level", "verbose", "check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn a_stuck_log_writer_drops_lines_and_never_blocks_requests() {
    let b = Backend::start("log").await;
    let dir = tempfile::tempdir().unwrap();
    let (port, admin_port) = (free_port(), free_port());
    let path = dir.path().join("porter.yaml");
    std::fs::write(
        &path,
        format!(
            "listen:\n  http: \"127.0.0.1:{port}\"\n  admin: \"127.0.0.1:{admin_port}\"\nhttp:\n  redirect: false\n\
             upstreams:\n{}routes:\n  - upstream: web\n",
            upstream_block("web", &[(&b, 1)])
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_porter"))
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "info")
        .env("PORTER_WORKERS", "2")
        .env("PORTER_ACCESS_LOG_QUEUE", "64")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Held, never read: the pipe fills after a few dozen lines and stays full.
    let _stuck_stderr = child.stderr.take().unwrap();
    let guard = KillOnDrop(child);

    let c = plain_client();
    let admin = format!("http://127.0.0.1:{admin_port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.get(format!("{admin}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "porter did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Long user agents make long lines; far more requests than the queue (64 lines here).
    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 50;
    let agent = "x".repeat(2048);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (c, url, agent) = (c.clone(), format!("http://127.0.0.1:{port}/"), agent.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..PER_CLIENT {
                let r = c.get(&url).header("user-agent", &agent).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
            }
        }));
    }
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(30), task).await.expect("requests blocked by the log").unwrap();
    }
    eprintln!("timing: {} requests with stderr stuck in {:?}", CLIENTS * PER_CLIENT, start.elapsed());

    let text = c.get(format!("{admin}/metrics")).send().await.unwrap().text().await.unwrap();
    let samples = parse_prometheus(&text);
    let dropped = value(&samples, "porter_access_log_dropped_total", &[]).expect("the drop counter is exported");
    // At most the queue and what the pipe took were written; the rest were dropped.
    assert!(dropped >= (CLIENTS * PER_CLIENT - 64 - 100) as f64, "dropped {dropped}");
    drop(guard);
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
