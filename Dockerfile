# porter's container image.
#
# Stage `build` compiles a static, stripped binary for musl (a static glibc
# binary cannot load NSS modules in an image with no libc files). Upstream
# host names are resolved by porter's own resolver (hickory, reading the
# /etc/resolv.conf and /etc/hosts the container runtime mounts), not musl's:
# it retries over TCP when a UDP answer is truncated, which musl before 1.2.4
# does not, so a headless Service with many pods resolves whole. Stage `runtime` is
# FROM scratch: the binary, two folders, nothing else, run as an unprivileged
# user on unprivileged ports 8080/8443 (publish them as 80/443:
# `docker run -p 80:8080 -p 443:8443`, and set `http.redirect_port: 443`).
#
#   docker build -t porter .
#   docker run -v ./porter.yaml:/etc/porter/porter.yaml:ro -v porter-certs:/var/lib/porter/certs \
#              -p 80:8080 -p 443:8443 porter
#
# CI lints this file with hadolint, builds the same static musl binary (with
# a quicker profile, `ci-image`), builds the runtime stage around it with
# buildah and runs the image with podman: uid 65532, /healthz through a
# published port, a 3:2:1 split over three backends, the redirect, and
# SIGTERM draining to exit 0 (tests/porter/deploy_image.rs).

FROM rust:1-bookworm AS build
# musl-gcc compiles the C in aws-lc (rustls' crypto) and mimalloc for the musl target.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools=1.2.3-1 \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "$(uname -m)-unknown-linux-musl"
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
ENV CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=symbols
RUN cargo build --release --locked --bin porter --target "$(uname -m)-unknown-linux-musl" \
 && mkdir -p /out/certs/.acme \
 && cp "target/$(uname -m)-unknown-linux-musl/release/porter" /out/porter

FROM scratch AS runtime
# Set by a release build: docker build --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD)
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="porter" \
      org.opencontainers.image.description="HTTP/HTTPS edge reverse proxy and load balancer" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"
# The binary, and the certificate folder (with the ACME webroot) owned by the
# user porter runs as, so certbot, lego or porter's own ACME can write there.
COPY --from=build /out/porter /usr/local/bin/porter
COPY --from=build --chown=65532:65532 /out/certs /var/lib/porter/certs
# No /etc/passwd in the image: a numeric, unprivileged user and group.
USER 65532:65532
# /etc/porter: porter.yaml, mounted read-only. /var/lib/porter/certs: the
# certificates (tls.certs) and the ACME webroot (http.acme_webroot: .../.acme).
VOLUME ["/etc/porter", "/var/lib/porter/certs"]
# http (redirects, ACME challenges) and https; the admin listener
# (127.0.0.1:9901 in the examples) stays inside the container.
EXPOSE 8080 8443 8443/udp
ENV RUST_LOG=info
# There is no curl in the image: porter itself GETs the admin listener's
# /healthz (200 while serving, 503 while draining). The config must set
# listen.admin: "127.0.0.1:9901" (or change the URL here).
HEALTHCHECK --interval=10s --timeout=4s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/porter", "probe", "--timeout", "3", "http://127.0.0.1:9901/healthz"]
# SIGTERM: stop accepting, finish requests in flight (shutdown_timeout), exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/porter"]
CMD ["--config", "/etc/porter/porter.yaml"]
