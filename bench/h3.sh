#!/usr/bin/env bash
# HTTP/3 benchmark: porter against Caddy, both in front of the same nginx
# backend serving a 13-byte file (as bench/harness does), on 127.0.0.1.
# docs/benchmarks.md, HTTP/3 has the figures and how to read them.
#
# The proxy under test is pinned to core 0 (one worker: PORTER_WORKERS=1,
# Caddy GOMAXPROCS=1); the backend and bench/driver to core 1, as the harness
# does. CPU is the proxy's utime+stime from /proc/PID/stat around each run.
#
# Modes, ROUNDS rounds each, per proxy:
#   h3             CONNS QUIC connections x STREAMS concurrent GET streams,
#                  REQUESTS requests (connections set up before the clock)
#   h3-handshakes  a new QUIC connection (full TLS 1.3 handshake) per GET
#   tls-handshakes a new TCP + TLS 1.3 connection per HTTP/1.1 GET (driver `connect`)
#
# Needs: target/release/porter (cargo build --release --bin porter),
# bench/driver/target/release/porter-bench-driver (cargo build --release in
# bench/driver), nginx, caddy, openssl, taskset, python3.
#
# Usage: bench/h3.sh [OUT_DIR]    (default bench/results/h3-<UTC date>)
set -euo pipefail
cd "$(dirname "$0")/.."

PORTER_BIN=${PORTER_BIN:-target/release/porter}
DRIVER=${DRIVER:-bench/driver/target/release/porter-bench-driver}
ROUNDS=${ROUNDS:-3}
REQUESTS=${REQUESTS:-30000}
CONNS=${CONNS:-4}
STREAMS=${STREAMS:-16}
HS_SECONDS=${HS_SECONDS:-5}
HS_CONC=${HS_CONC:-16}
PEERS=${PEERS:-porter caddy}
MODES=${MODES:-h3 h3-handshakes tls-handshakes}
BACKEND_PORT=${BACKEND_PORT:-41901}
PROXY_PORT=${PROXY_PORT:-41943}
HTTP_PORT=${HTTP_PORT:-41980}
CORE_PROXY=0
CORE_LOAD=1
OUT=${1:-bench/results/h3-$(date -u +%F)}

for tool in nginx caddy openssl taskset python3 "$PORTER_BIN" "$DRIVER"; do
    command -v "$tool" >/dev/null || { echo "h3.sh: $tool is missing" >&2; exit 1; }
done
mkdir -p "$OUT"
RAW="$OUT/raw.jsonl"
: >"$RAW"
work=$(mktemp -d)
# nginx started as root serves files as nobody: the tree must be readable.
chmod 755 "$work"
declare -a pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# --- certificate (ECDSA P-256, as the harness) and backend
mkdir -p "$work/certs" "$work/files" "$work/nginx" "$work/caddy"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$work/certs/localhost.key" -out "$work/certs/localhost.crt" -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
printf 'Hello, world\n' >"$work/files/small.txt"
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/tmp-body;
  proxy_temp_path $work/nginx/tmp-proxy;
  fastcgi_temp_path $work/nginx/tmp-fastcgi;
  uwsgi_temp_path $work/nginx/tmp-uwsgi;
  scgi_temp_path $work/nginx/tmp-scgi;
  types { text/plain txt; }
  sendfile on;
  open_file_cache max=16 inactive=600s;
  keepalive_timeout 90s;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$BACKEND_PORT reuseport backlog=4096;
    root $work/files;
    location / { try_files /small.txt =404; }
  }
}
EOF
taskset -c $CORE_LOAD nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" &
pids+=($!)

wait_tcp() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "h3.sh: nothing listens on $1" >&2
    return 1
}
wait_tcp "$BACKEND_PORT"

cat >"$work/porter.yaml" <<EOF
listen: { https: "127.0.0.1:$PROXY_PORT", http: "127.0.0.1:$HTTP_PORT", http3: true }
tls: { certs: "$work/certs" }
http: { redirect: false }
limits: { idle_timeout: 75s }
access_log: { enabled: false }
upstreams:
  small: { servers: [ { url: "http://127.0.0.1:$BACKEND_PORT" } ] }
routes:
  - { upstream: small }
EOF
cat >"$work/caddy/Caddyfile" <<EOF
{
	admin off
	auto_https off
	servers {
		protocols h1 h2 h3
		timeouts {
			idle 75s
		}
	}
}
https://localhost:$PROXY_PORT {
	bind 127.0.0.1
	tls $work/certs/localhost.crt $work/certs/localhost.key
	reverse_proxy 127.0.0.1:$BACKEND_PORT {
		header_up X-Real-IP {remote_host}
		transport http {
			keepalive 90s
			keepalive_idle_conns_per_host 128
		}
	}
}
EOF

start_peer() {
    case $1 in
    porter)
        PORTER_WORKERS=1 RUST_LOG=warn taskset -c $CORE_PROXY "$PORTER_BIN" --config "$work/porter.yaml" \
            >"$OUT/porter.log" 2>&1 &
        ;;
    caddy)
        GOMAXPROCS=1 HOME="$work/caddy" XDG_DATA_HOME="$work/caddy" XDG_CONFIG_HOME="$work/caddy" \
            taskset -c $CORE_PROXY caddy run --adapter caddyfile --config "$work/caddy/Caddyfile" \
            >"$OUT/caddy.log" 2>&1 &
        ;;
    esac
    peer_pid=$!
    pids+=("$peer_pid")
    wait_tcp "$PROXY_PORT"
}

# utime + stime of a process (all its threads), in clock ticks.
ticks() {
    local line rest
    read -r line <"/proc/$1/stat"
    rest=${line##*) }
    # shellcheck disable=SC2086
    set -- $rest
    echo $((${12} + ${13}))
}

drive() {
    local mode=$1
    case $mode in
    h3) taskset -c $CORE_LOAD "$DRIVER" h3 --addr "127.0.0.1:$PROXY_PORT" --sni localhost \
        --connections "$CONNS" --streams "$STREAMS" --requests "$REQUESTS" --duration 60 ;;
    h3-handshakes) taskset -c $CORE_LOAD "$DRIVER" h3-handshakes --addr "127.0.0.1:$PROXY_PORT" \
        --sni localhost --concurrency "$HS_CONC" --duration "$HS_SECONDS" ;;
    tls-handshakes) taskset -c $CORE_LOAD "$DRIVER" connect --addr "127.0.0.1:$PROXY_PORT" \
        --sni localhost --concurrency "$HS_CONC" --duration "$HS_SECONDS" ;;
    esac
}

for peer in $PEERS; do
    start_peer "$peer"
    # Warm-up (not counted): the UDP listener answers, upstream connections exist.
    for _ in $(seq 50); do
        taskset -c $CORE_LOAD "$DRIVER" h3 --addr "127.0.0.1:$PROXY_PORT" --sni localhost \
            --connections 2 --streams 8 --requests 2000 --duration 10 --timeout 2 >"$work/warm" 2>&1 &&
            grep -q '"non200":0,"errors":0' "$work/warm" && break
        sleep 0.2
    done
    grep -q '"non200":0,"errors":0' "$work/warm" || { echo "h3.sh: $peer does not answer HTTP/3:" >&2; cat "$work/warm" >&2; exit 1; }
    for mode in $MODES; do
        for round in $(seq "$ROUNDS"); do
            before=$(ticks "$peer_pid")
            result=$(drive "$mode" | tail -1)
            after=$(ticks "$peer_pid")
            line="{\"peer\":\"$peer\",\"mode\":\"$mode\",\"round\":$round,\"cpu_ticks\":$((after - before)),\"clk_tck\":$(getconf CLK_TCK),\"driver\":$result}"
            echo "$line" | tee -a "$RAW"
        done
    done
    kill "$peer_pid"
    wait "$peer_pid" 2>/dev/null || true
    sleep 0.5
done

{
    echo "# HTTP/3 bench $(date -u +%FT%TZ)"
    echo
    echo "porter: $("$PORTER_BIN" --version 2>&1 | head -1); caddy: $(caddy version | cut -d' ' -f1); nginx: $(nginx -v 2>&1 | cut -d/ -f2)"
    echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); kernel $(uname -r)"
    echo "h3: $CONNS connections x $STREAMS streams, $REQUESTS requests/round; handshakes: $HS_CONC in flight, ${HS_SECONDS}s/round; $ROUNDS rounds, medians"
    echo
    python3 - "$RAW" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
groups = {}
for r in rows:
    groups.setdefault((r["peer"], r["mode"]), []).append(r)
print("| proxy | mode | requests/round | errors | req/s | CPU s per 100k | p50 ms | p99 ms |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for (peer, mode), rs in groups.items():
    d = [r["driver"] for r in rs]
    cpu = [r["cpu_ticks"] / r["clk_tck"] / max(1, x["requests"]) * 100000 for r, x in zip(rs, d)]
    med = lambda k: statistics.median(x[k] for x in d)
    errors = sum(x["errors"] + x["non200"] for x in d)
    print(f"| {peer} | {mode} | {med('requests'):.0f} | {errors} | {med('rps'):.0f} | "
          f"{statistics.median(cpu):.2f} | {med('p50_us') / 1000:.2f} | {med('p99_us') / 1000:.2f} |")
PY
} | tee "$OUT/summary.md"
