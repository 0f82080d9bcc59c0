//! SPEC §2 access log: a writer that falls behind never holds up a request.
//! The binary's stderr is a pipe nobody reads, so the log writer blocks as soon
//! as the pipe is full; every request must still be answered, and the lines
//! that could not be queued are counted in /metrics.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::admin::{parse_prometheus, value};
use crate::harness::*;
use crate::lifecycle::free_port;

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
