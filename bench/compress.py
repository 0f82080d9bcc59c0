#!/usr/bin/env python3
"""Response compression: porter against nginx `gzip on; gzip_comp_level 1` on the same file.

Both proxies forward to the same origin (an nginx serving the file, no gzip)
and compress its answer for a client that asks for it. The figure is the
proxy's CPU time (user + system, from /proc, every process of the proxy) per
MiB of uncompressed body, and the ratio compressed / original, each the median
of --rounds rounds. A run without compression gives each proxy's cost of
forwarding alone, so the compression's own cost is the difference.

    cargo build --release            # or PORTER_BIN=/path/to/porter
    python3 bench/compress.py        # ~1 minute: 16 MiB file, 10 requests per run, 3 rounds
    python3 bench/compress.py --size-mib 32 --requests 20 --rounds 5

Figures in docs/benchmarks.md (Compression).
"""

import argparse
import glob
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


def cpu_seconds(pids):
    """User + system CPU of `pids` (and their children's finished time), in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def make_file(path, size):
    """Real text (porter's own sources and docs) repeated to `size` bytes: one file for everyone."""
    parts = []
    for pattern in ("docs/*.md", "src/**/*.rs", "README.md"):
        for name in sorted(glob.glob(os.path.join(REPO, pattern), recursive=True)):
            with open(name, "rb") as f:
                parts.append(f.read())
    corpus = b"".join(parts)
    with open(path, "wb") as f:
        written = 0
        while written < size:
            chunk = corpus[: size - written]
            f.write(chunk)
            written += len(chunk)


def nginx(work, name, body):
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(
            f"""worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  types {{ text/plain txt; }}
{body}
}}
"""
        )
    process = subprocess.Popen(["nginx", "-p", d, "-c", conf, "-e", f"{d}/error.log"])
    return process


def run_client(url, encoding, requests):
    """Sends `requests` GETs one after another; returns the bytes received in all."""
    received = 0
    header = ["-H", f"Accept-Encoding: {encoding}"] if encoding else []
    for _ in range(requests):
        out = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{size_download}", *header, url],
            capture_output=True, text=True, check=True,
        )
        received += int(out.stdout)
    return received


def measure(pids_of, url, encoding, requests, size):
    run_client(url, encoding, 1)  # warm: connections, buffers, the page cache
    pids = pids_of()
    before = cpu_seconds(pids)
    received = run_client(url, encoding, requests)
    used = cpu_seconds(pids) - before
    mib = size * requests / (1 << 20)
    return used / mib * 1000, received / (size * requests)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=16)
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    porter_bin = os.environ.get("PORTER_BIN", os.path.join(REPO, "target/release/porter"))
    for tool in ("nginx", "curl"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed (apt-get install {tool})")
    if not os.path.exists(porter_bin):
        sys.exit(f"no porter at {porter_bin}: cargo build --release, or set PORTER_BIN")

    work = tempfile.mkdtemp(prefix="porter-compress-bench-")
    size = args.size_mib << 20
    www = os.path.join(work, "www")
    os.makedirs(www)
    make_file(os.path.join(www, "page.txt"), size)
    origin_port, nginx_port, nginx_plain_port, porter_port = (free_port() for _ in range(4))

    upstream = f"upstream origin {{ server 127.0.0.1:{origin_port}; keepalive 16; }}"
    proxy = "proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection \"\";"
    processes = [
        nginx(work, "origin", f"server {{ listen 127.0.0.1:{origin_port}; root {www}; }}"),
        nginx(
            work,
            "proxy",
            f"""  {upstream}
  gzip on; gzip_comp_level 1; gzip_types text/plain; gzip_proxied any; gzip_min_length 1024;
  server {{ listen 127.0.0.1:{nginx_port}; location / {{ {proxy} }} }}
  server {{ listen 127.0.0.1:{nginx_plain_port}; gzip off; location / {{ {proxy} }} }}""",
        ),
    ]
    certs = os.path.join(work, "certs")
    os.makedirs(certs)
    config = os.path.join(work, "porter.yaml")
    with open(config, "w") as f:
        f.write(
            f"""listen: {{ http: "127.0.0.1:{porter_port}" }}
http: {{ redirect: false }}
access_log: {{ enabled: false }}
upstreams:
  origin: {{ servers: [{{ url: "http://127.0.0.1:{origin_port}" }}] }}
routes:
  - path: /gzip1/
    strip_prefix: true
    upstream: origin
    compress: {{ algorithms: [gzip], level: 1 }}
  - path: /default/
    strip_prefix: true
    upstream: origin
    compress: true
  - upstream: origin
"""
        )
    processes.append(
        subprocess.Popen([porter_bin, "--config", config, "--workers", "1"], env={**os.environ, "RUST_LOG": "warn"})
    )
    try:
        for port in (origin_port, nginx_port, porter_port):
            wait_port(port)
        nginx_pids = lambda: [processes[1].pid, *children(processes[1].pid)]
        porter_pids = lambda: [processes[2].pid]
        runs = [
            ("nginx 1.22, gzip off", nginx_pids, f"http://127.0.0.1:{nginx_plain_port}/page.txt", "gzip"),
            ("nginx 1.22, gzip_comp_level 1", nginx_pids, f"http://127.0.0.1:{nginx_port}/page.txt", "gzip"),
            ("porter, no compress", porter_pids, f"http://127.0.0.1:{porter_port}/page.txt", "gzip"),
            ("porter, gzip level 1", porter_pids, f"http://127.0.0.1:{porter_port}/gzip1/page.txt", "gzip"),
            ("porter, zstd (default level 3)", porter_pids, f"http://127.0.0.1:{porter_port}/default/page.txt", "zstd"),
            ("porter, br (default level 3)", porter_pids, f"http://127.0.0.1:{porter_port}/default/page.txt", "br"),
        ]
        results = {name: [] for name, *_ in runs}
        for _ in range(args.rounds):
            for name, pids, url, encoding in runs:
                results[name].append(measure(pids, url, encoding, args.requests, size))
        print(f"\n{args.size_mib} MiB text file, {args.requests} requests per run, median of {args.rounds} rounds")
        print(f"(load average {os.getloadavg()[0]:.1f}; porter {porter_bin})\n")
        print("| proxy | CPU ms per MiB | compressed / original |")
        print("|---|---|---|")
        for name, *_ in runs:
            cpu = statistics.median(r[0] for r in results[name])
            ratio = statistics.median(r[1] for r in results[name])
            print(f"| {name} | {cpu:.2f} | {ratio:.3f} |")
    finally:
        for p in processes:
            p.terminate()
        for p in processes:
            p.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
