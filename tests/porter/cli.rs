//! docs/configuration.md, Command line: the command line beyond run and check: `-c`,
//! `PORTER_WORKERS`, `probe` (the container health check), `completions` and `man`.

use std::process::{Command, Output};

use crate::harness::*;

fn porter(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_porter"));
    cmd.args(args).env_remove("PORTER_WORKERS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn example(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn short_config_flag() {
    let out = porter(&["check", "-c", &example("quickstart.yaml")], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("127.0.0.1:8443"), "{}", text(&out.stdout));
}

#[test]
fn porter_workers_is_in_help_and_refused_when_invalid() {
    let help = text(&porter(&["--help"], &[]).stdout);
    assert!(help.contains("[env: PORTER_WORKERS"), "{help}");
    for bad in ["0", "two", "-1", "100000"] {
        let out = porter(&["check", "-c", &example("quickstart.yaml")], &[("PORTER_WORKERS", bad)]);
        assert_eq!(out.status.code(), Some(2), "PORTER_WORKERS={bad} accepted");
        assert!(text(&out.stderr).contains(&format!("invalid value '{bad}'")), "{}", text(&out.stderr));
    }
    let out = porter(&["check", "-c", &example("quickstart.yaml")], &[("PORTER_WORKERS", "2")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn completions_for_each_shell_name_every_subcommand() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = porter(&["completions", shell], &[]);
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        for word in ["check", "probe", "completions", "config", "workers"] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    // The bash script is valid bash.
    let out = porter(&["completions", "bash"], &[]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("porter.bash");
    std::fs::write(&path, &out.stdout).unwrap();
    let syntax = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(syntax.status.success(), "{}", text(&syntax.stderr));
}

#[test]
fn man_page_documents_the_command_line() {
    let out = porter(&["man"], &[]);
    assert!(out.status.success());
    let page = text(&out.stdout);
    assert!(page.starts_with(".ie"), "roff source: {page}");
    for needle in [".TH porter 1", "\\-c\\fR, \\fB\\-\\-config", "PORTER_WORKERS", "probe", "check"] {
        assert!(page.contains(needle), "man page lacks {needle:?}:\n{page}");
    }
}

#[tokio::test]
async fn probe_exits_0_on_2xx_and_1_otherwise() {
    let up = Backend::start("up").await;
    let draining = Backend::start_with("draining", Behaviour { health_status: Some(503), ..Default::default() }).await;
    let gone = Backend::start("gone").await.stop().await;
    let probe = |url: String| tokio::task::spawn_blocking(move || porter(&["probe", &url], &[]));

    let out = probe(format!("{}/healthz", up.url())).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(up.requests(), 1);

    let out = probe(format!("{}/healthz", draining.url())).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("503"), "{}", text(&out.stderr));

    let out = probe(format!("http://{gone}/healthz")).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot connect"), "{}", text(&out.stderr));

    let out = probe("https://127.0.0.1:1/".into()).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("only http://"), "{}", text(&out.stderr));
}
