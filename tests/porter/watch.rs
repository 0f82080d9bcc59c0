//! docs/configuration.md, Command line: `--watch` (env `PORTER_WATCH=1`): the real binary reloads
//! its configuration file when it changes, as SIGHUP does, whichever way the file is replaced:
//! written in place, written beside and renamed over (editors), or swapped the way Kubernetes
//! updates a mounted ConfigMap (`..data` symlink renamed to a new timestamped folder). A
//! half-written or invalid file is refused, counted, and the old configuration keeps serving.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::lifecycle::{free_port, Running};

fn yaml(port: u16, admin: u16, backend: &Backend) -> String {
    format!(
        "listen:\n  http: \"127.0.0.1:{port}\"\n  admin: \"127.0.0.1:{admin}\"\nhttp:\n  redirect: false\n\
         upstreams:\n  web:\n    servers:\n      - url: \"{}\"\nroutes:\n  - upstream: web\n",
        backend.url()
    )
}

/// Starts the binary on `config` with `args` and `env`, and waits until it listens.
fn spawn(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_porter"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("PORTER_WATCH")
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Running::logging(child, Some("watching the configuration file"))
}

/// Which backend answers `/` on porter's plaintext port.
async fn who(port: u16) -> String {
    let response = plain_client().get(format!("http://127.0.0.1:{port}/")).send().await.unwrap();
    response.headers()["x-backend"].to_str().unwrap().to_string()
}

async fn served_by(port: u16, name: &str, porter: &Running) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while who(port).await != name {
        assert!(
            Instant::now() < deadline,
            "the change was not applied within 5 s:\n{}",
            porter.1.lock().unwrap().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One metric's value from porter's admin listener.
async fn metric(admin: u16, name: &str) -> f64 {
    let text =
        plain_client().get(format!("http://127.0.0.1:{admin}/metrics")).send().await.unwrap().text().await.unwrap();
    let line = text.lines().find(|l| l.split([' ', '{']).next() == Some(name)).unwrap_or_else(|| panic!("{name}?"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn an_edit_in_place_is_applied_and_an_invalid_one_refused() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let config = dir.path().join("porter.yaml");
    std::fs::write(&config, yaml(port, admin, &a)).unwrap();
    let porter = spawn(&config, &["--watch"], &[]);
    assert_eq!(who(port).await, "a");

    // fs::write truncates and writes the same inode: what `echo >`, nano and sed -i's
    // in-place cousins do.
    std::fs::write(&config, yaml(port, admin, &b)).unwrap();
    served_by(port, "b", &porter).await;
    assert_eq!(metric(admin, "porter_config_reload_failures_total").await, 0.0);

    // Half a file: refused (counted), the running configuration keeps serving.
    let full = yaml(port, admin, &a);
    std::fs::write(&config, &full[..full.len() / 2 + 7]).unwrap();
    porter.wait_for_line("reload failed, keeping the running configuration", Duration::from_secs(5)).await;
    for _ in 0..5 {
        assert_eq!(who(port).await, "b", "a refused file must keep the old configuration");
    }
    assert_eq!(metric(admin, "porter_config_reload_failures_total").await, 1.0);
    // Finishing the write is the next change, and it applies.
    std::fs::write(&config, &full).unwrap();
    served_by(port, "a", &porter).await;
}

#[tokio::test]
async fn an_editor_save_by_rename_is_applied() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let config = dir.path().join("porter.yaml");
    std::fs::write(&config, yaml(port, admin, &a)).unwrap();
    let porter = spawn(&config, &[], &[("PORTER_WATCH", "1")]);
    assert_eq!(who(port).await, "a");

    // vim (backupcopy=no), VS Code, and most tools that write safely: a new file beside,
    // renamed over the old one (a new inode under the same name).
    let tmp = dir.path().join(".porter.yaml.swp");
    std::fs::write(&tmp, yaml(port, admin, &b)).unwrap();
    std::fs::rename(&tmp, &config).unwrap();
    served_by(port, "b", &porter).await;

    std::fs::write(&tmp, yaml(port, admin, &a)).unwrap();
    std::fs::rename(&tmp, &config).unwrap();
    served_by(port, "a", &porter).await;
    assert_eq!(metric(admin, "porter_config_reloads_total").await, 2.0);
}

/// Lays out `dir` as the kubelet mounts a ConfigMap: the data in a timestamped folder,
/// `..data` pointing at it, and each key a symlink through `..data`.
fn configmap_update(dir: &Path, generation: u32, content: &str) {
    let stamp = format!("..2026_12_06_04_00_0{generation}.{}", 1000 + generation);
    std::fs::create_dir(dir.join(&stamp)).unwrap();
    std::fs::write(dir.join(&stamp).join("porter.yaml"), content).unwrap();
    let old = std::fs::read_link(dir.join("..data")).ok();
    // The atomic step: a new link beside, renamed over `..data`.
    symlink(&stamp, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    if !dir.join("porter.yaml").exists() {
        symlink("..data/porter.yaml", dir.join("porter.yaml")).unwrap();
    }
    // Then the old generation is removed.
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old)).unwrap();
    }
}

#[tokio::test]
async fn a_kubernetes_configmap_swap_is_applied() {
    let (a, b, c) = (Backend::start("a").await, Backend::start("b").await, Backend::start("c").await);
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("config");
    std::fs::create_dir(&mount).unwrap();
    let (port, admin) = (free_port(), free_port());
    configmap_update(&mount, 1, &yaml(port, admin, &a));
    let config = mount.join("porter.yaml");
    assert!(std::fs::symlink_metadata(&config).unwrap().file_type().is_symlink());
    let porter = spawn(&config, &["--watch"], &[]);
    assert_eq!(who(port).await, "a");

    configmap_update(&mount, 2, &yaml(port, admin, &b));
    served_by(port, "b", &porter).await;
    configmap_update(&mount, 3, &yaml(port, admin, &c));
    served_by(port, "c", &porter).await;
    assert_eq!(metric(admin, "porter_config_reloads_total").await, 2.0);
    assert_eq!(metric(admin, "porter_config_last_reload_successful").await, 1.0);
}
