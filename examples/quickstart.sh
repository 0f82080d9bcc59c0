#!/usr/bin/env bash
# Builds porter and the demo backend, starts three backends on 127.0.0.1:9001-9003
# and porter in front of them (https://localhost:8443, http://localhost:8080).
# Then, in another terminal:   curl -k https://localhost:8443/
# Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --bin porter --example backend

./target/release/examples/backend \
  --listen 127.0.0.1:9001=one --listen 127.0.0.1:9002=two --listen 127.0.0.1:9003=three &
backends=$!
trap 'kill $backends 2>/dev/null; wait 2>/dev/null' EXIT

./target/release/porter check --config examples/quickstart.yaml
echo
echo "porter is starting: try   curl -k https://localhost:8443/   (weights 3:2:1 over one, two, three)"
echo "                          curl -k https://localhost:8443/api/hello   (prefix stripped, to three)"
echo "                          curl -i http://localhost:8080/x?y=1   (redirect to https)"
echo
./target/release/porter --config examples/quickstart.yaml
