#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind (cachegrind): a figure
# that does not move with what else runs on the machine, unlike CPU time.
# porter (one worker) runs twice under valgrind in front of an nginx static-file
# backend; h2load sends N1 then N2 keep-alive requests over one connection for a
# 13-byte file; (I refs at N2 - I refs at N1) / (N2 - N1) is the per-request cost.
#
#   bench/instructions.sh target/release/porter [porter] [N1 N2]
#   bench/instructions.sh "$(command -v nginx)" nginx [N1 N2]
#
# The second form counts nginx itself as the proxy (one worker, no master process,
# upstream keep-alive and the forwarding headers porter adds: the bench's nginx peer),
# for the figure porter is compared with.
#
# MODE=h1_tls counts the same over HTTPS/1.1 (one TLS connection); MODE=tls_conn
# one request per new TLS connection (curl, full handshake: X25519), so the
# figure is per handshake and request (use smaller N, e.g. 100 300).
#
# Needs valgrind, nginx, h2load (nghttp2-client), curl. Binds 127.0.0.1:19001,
# 19002 (nginx) and 18080/18443 (porter); everything stops when the script ends.
set -euo pipefail
BIN=$(realpath "$1")
PROXY=${2:-porter}
if [ "$PROXY" != porter ] && [ "$PROXY" != nginx ]; then echo "the proxy is porter or nginx, not $PROXY" >&2; exit 1; fi
# 10,000 requests apart: porter's start gathers entropy for aws-lc (jitterentropy), whose
# count varies by a few million instructions from run to run; over 2,000 requests that
# moved the figure by up to 1,100 per request, over 10,000 by about 200.
N1=${3:-1000}
N2=${4:-11000}
WORK=$(mktemp -d /tmp/porter-instructions.XXXX)
trap 'kill "$(cat "$WORK/nginx.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/www" "$WORK/certs"
chmod 755 "$WORK" "$WORK/www" # nginx workers run as nobody
printf 'hello, world\n' >"$WORK/www/small.txt"
# A certificate on disk: without one porter would make a self-signed one at start,
# whose cost varies from run to run and would not cancel out.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost -keyout "$WORK/certs/localhost.key" -out "$WORK/certs/localhost.crt" 2>/dev/null
cat >"$WORK/nginx.conf" <<NGINX
worker_processes 1; daemon on; pid $WORK/nginx.pid; error_log $WORK/error.log;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:19001; root $WORK/www; }
  server { listen 127.0.0.1:19002; root $WORK/www; } }
NGINX
for port in 18080 18443 19001 19002; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "port $port is taken" >&2; exit 1; fi
done
nginx -c "$WORK/nginx.conf" -p "$WORK"
cat >"$WORK/porter.yaml" <<YAML
listen: { http: "127.0.0.1:18080", https: "127.0.0.1:18443" }
tls: { certs: $WORK/certs }
http: { redirect: false }
access_log: { enabled: false }
upstreams:
  web: { servers: [ { url: "http://127.0.0.1:19001" }, { url: "http://127.0.0.1:19002" } ] }
routes: [ { upstream: web } ]
YAML
cat >"$WORK/proxy.conf" <<NGINX
worker_processes 1; master_process off; daemon off; error_log $WORK/proxy-error.log;
pid $WORK/proxy.pid;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  upstream web { server 127.0.0.1:19001; server 127.0.0.1:19002; keepalive 128; keepalive_requests 1000000; }
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header Host \$http_host;
  proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
  proxy_set_header X-Forwarded-Proto \$scheme;
  proxy_set_header X-Forwarded-Host \$host;
  proxy_set_header X-Real-IP \$remote_addr;
  server { listen 127.0.0.1:18080; location / { proxy_pass http://web; } } }
NGINX
URL=http://127.0.0.1:18080/small.txt
MODE=${MODE:-h1}
if [ "$PROXY" = nginx ] && [ "$MODE" != h1 ]; then echo "nginx is counted with MODE=h1 only" >&2; exit 1; fi
TLS_URL=https://localhost:18443/small.txt

count() {
  if [ "$PROXY" = nginx ]; then
    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
      "$BIN" -p "$WORK" -c "$WORK/proxy.conf" >"$WORK/vg.log" 2>&1 &
  else
    PORTER_WORKERS=1 RUST_LOG=warn valgrind --tool=cachegrind --cache-sim=no \
      --cachegrind-out-file=/dev/null "$BIN" --config "$WORK/porter.yaml" >"$WORK/vg.log" 2>&1 &
  fi
  local pid=$!
  for _ in $(seq 150); do curl -s -o /dev/null "$URL" && break; sleep 0.2; done
  case $MODE in
    h1) h2load --h1 -n "$1" -c 1 "$URL" >"$WORK/h2load.log" 2>&1 ;;
    h1_tls) h2load --h1 -n "$1" -c 1 "$TLS_URL" >"$WORK/h2load.log" 2>&1 ;;
    tls_conn)
      for _ in $(seq "$1"); do curl -sk --http1.1 -o /dev/null "$TLS_URL" || exit 1; done
      echo "$1 succeeded" >"$WORK/h2load.log" ;;
  esac
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  grep -q "$1 succeeded" "$WORK/h2load.log" || { cat "$WORK/h2load.log" "$WORK/vg.log" >&2; exit 1; }
  awk '/I *refs:/ {gsub(",","",$NF); print $NF}' "$WORK/vg.log"
}

a=$(count "$N1")
b=$(count "$N2")
echo "$(basename "$BIN") proxy=$PROXY mode=$MODE: $(((b - a) / (N2 - N1))) instructions per proxied request"
