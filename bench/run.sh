#!/usr/bin/env bash
# porter benchmark: one command.
#
#   bench/run.sh [--quick] [--rounds N] [--duration S] [--peers a,b] [--scenarios x,y]
#                [--backend nginx|porter-example] ...
#
# 1. installs what it needs from Debian (idempotent: only what is missing, and
#    only the peers asked for);
# 2. builds the load driver (bench/driver), porter (unless PORTER_BIN is set)
#    and, for --backend porter-example, examples/backend.rs;
# 3. runs bench/bench.py pinned to core 1 (proxies are put on core 0 by it).
# Every option after these steps is passed to bench/bench.py (see --help there
# and bench/README.md). Environment: PORTER_BENCH_WORK (default /tmp/porter-bench),
# PORTER_BENCH_NO_BUILD=1 to reuse binaries already in $PORTER_BENCH_WORK/bin,
# PORTER_BIN=/path/to/porter to bench a given binary instead of building one.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
WORK=${PORTER_BENCH_WORK:-/tmp/porter-bench}
BIN=$WORK/bin
mkdir -p "$BIN"
NOTES=()

say() { printf '[run.sh] %s\n' "$*"; }
loud() { printf '\n%s\n!!! %s\n%s\n\n' "$(printf '!%.0s' {1..72})" "$*" "$(printf '!%.0s' {1..72})"; }

# The options run.sh itself needs to know (bench.py gets them all too).
PEERS=direct,nginx,haproxy,caddy,porter
BACKEND=nginx
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case ${args[i]} in
        --peers) PEERS=${args[i + 1]:-} ;;
        --peers=*) PEERS=${args[i]#--peers=} ;;
        --backend) BACKEND=${args[i + 1]:-} ;;
        --backend=*) BACKEND=${args[i]#--backend=} ;;
    esac
done

# ---------------------------------------------------------------- 1. tools
# command -> Debian package
declare -A PKG=( [nginx]=nginx [haproxy]=haproxy [caddy]=caddy [wrk]=wrk [h2load]=nghttp2-client
                 [openssl]=openssl [taskset]=util-linux [python3]=python3 )
missing=()
for cmd in "${!PKG[@]}"; do
    case $cmd in
        # Peers only when asked for; nginx also when it is the backend.
        haproxy | caddy) [[ ,$PEERS, == *,$cmd,* ]] || continue ;;
        nginx) [[ ,$PEERS, == *,nginx,* || $BACKEND == nginx ]] || continue ;;
    esac
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
if ((${#missing[@]})); then
    say "installing: ${missing[*]}"
    if [[ $(id -u) -ne 0 ]]; then
        loud "not root: cannot apt-get install ${missing[*]}; peers/tools missing will be skipped"
    else
        apt-get update -qq || loud "apt-get update failed"
        for cmd in "${missing[@]}"; do
            pkg=${PKG[$cmd]}
            cand=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
            if [[ -z $cand || $cand == "(none)" ]]; then
                loud "package $pkg is not available in this Debian: $cmd will be skipped"
                NOTES+=("--note" "$cmd=package $pkg not available in this Debian")
                continue
            fi
            # RUNLEVEL=1 + policy: never start the distro's own service on install.
            if ! RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >"$WORK/apt-$pkg.log" 2>&1; then
                loud "apt-get install $pkg failed (see $WORK/apt-$pkg.log): $cmd will be skipped"
                NOTES+=("--note" "$cmd=apt-get install $pkg failed")
            fi
        done
    fi
fi
[[ $BACKEND != nginx ]] || command -v nginx >/dev/null 2>&1 \
    || { echo "run.sh: --backend nginx needs nginx (apt-get install nginx)" >&2; exit 1; }
for cmd in wrk h2load openssl taskset python3; do
    command -v "$cmd" >/dev/null 2>&1 || { echo "run.sh: $cmd is required and missing" >&2; exit 1; }
done

# ---------------------------------------------------------------- 2. builds
# Binaries are copied to $BIN so that a rebuild in the repo during the run
# (others work in the same tree) cannot swap them under the benchmark.
build_backend() {
    if (cd "$REPO" && cargo build --release --example backend) >"$WORK/build-backend.log" 2>&1; then
        cp "$REPO/target/release/examples/backend" "$BIN/backend"
        return 0
    fi
    say "porter's crate does not build right now (see $WORK/build-backend.log); building the backend alone"
    local crate=$WORK/backend-crate
    mkdir -p "$crate/src"
    : >"$crate/src/lib.rs"
    cat >"$crate/Cargo.toml" <<EOF
[package]
name = "porter-bench-backend"
version = "0.0.0"
edition = "2021"
publish = false

[workspace]

[lib]
path = "src/lib.rs"

[[example]]
name = "backend"
path = "$REPO/examples/backend.rs"

[dependencies]
tokio = { version = "1", features = ["rt", "rt-multi-thread", "net", "signal", "time", "macros", "sync", "io-util"] }
hyper = { version = "1", features = ["server", "http1", "http2"] }
hyper-util = { version = "0.1", features = ["tokio", "server", "server-auto", "http1", "http2"] }
http-body-util = "0.1"
bytes = "1"
clap = { version = "4", features = ["derive"] }
EOF
    [[ -f $crate/Cargo.lock ]] || cp "$REPO/Cargo.lock" "$crate/Cargo.lock" 2>/dev/null || true
    (cd "$crate" && CARGO_TARGET_DIR=$WORK/target-backend cargo build --release --example backend) \
        >>"$WORK/build-backend.log" 2>&1 || { echo "run.sh: cannot build the backend; see $WORK/build-backend.log" >&2; exit 1; }
    cp "$WORK/target-backend/release/examples/backend" "$BIN/backend"
}

if [[ ${PORTER_BENCH_NO_BUILD:-0} != 1 ]]; then
    if [[ $BACKEND == porter-example ]]; then
        say "building examples/backend.rs"
        build_backend
    fi
    say "building bench/driver"
    (cd "$HERE/driver" && CARGO_TARGET_DIR=$WORK/target-driver cargo build --release) \
        >"$WORK/build-driver.log" 2>&1 || { echo "run.sh: cannot build bench/driver; see $WORK/build-driver.log" >&2; exit 1; }
    cp "$WORK/target-driver/release/porter-bench-driver" "$BIN/driver"
    if [[ -z ${PORTER_BIN:-} ]]; then
        say "building porter (cargo build --release)"
        rm -f "$BIN/porter"
        if (cd "$REPO" && cargo build --release) >"$WORK/build-porter.log" 2>&1 \
            && [[ -x $REPO/target/release/porter ]]; then
            cp "$REPO/target/release/porter" "$BIN/porter"
        else
            loud "porter does not build (see $WORK/build-porter.log): porter will be skipped"
            NOTES+=("--note" "porter=cargo build --release failed (see $WORK/build-porter.log)")
        fi
    fi
fi
PORTER=${PORTER_BIN:-$BIN/porter}
need_bins=(driver)
[[ $BACKEND != porter-example ]] || need_bins+=(backend)
for b in "${need_bins[@]}"; do
    [[ -x $BIN/$b ]] || { echo "run.sh: $BIN/$b missing (unset PORTER_BENCH_NO_BUILD)" >&2; exit 1; }
done

# ---------------------------------------------------------------- 3. run
# The hard limit may not be raisable (containers); take what there is.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
say "open files: $(ulimit -n); starting bench.py on core 1"
exec taskset -c 1 python3 "$HERE/bench.py" --workdir "$WORK" --backend-bin "$BIN/backend" \
    --driver-bin "$BIN/driver" --porter-bin "$PORTER" "${NOTES[@]}" "$@"
