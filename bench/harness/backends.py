"""The backends every peer proxies to, two options (`--backend`):

* `nginx` (default): two nginx instances, one worker each, serving static
  files the way real servers answer — a 13-byte file for every small
  path, a 64 KiB file for /big… — with nginx's usual response headers
  (Server, Date, Content-Type, Content-Length, Last-Modified, Connection,
  ETag, Accept-Ranges). One instance serves the small pool on both small
  ports (and h2c on one more port, for the direct HTTP/2 row), the other
  the 64 KiB pool on both big ports.
* `porter-example`: two processes of examples/backend.rs (single-threaded),
  which answer with almost no headers (the setup of the figures up to
  2026-11-25).

Both run on the load core (this script and its children are pinned there).
"""

from __future__ import annotations

import os
import subprocess
import textwrap
import time

from .system import http_get, spawn, wait_ports_free

BACKENDS = ("nginx", "porter-example")
SMALL_BODY = b"Hello, world\n"  # 13 bytes
BIG_SIZE = 65536


def describe(ctx) -> str:
    if ctx.args.backend == "nginx":
        return ("nginx (2 instances, 1 worker each) serving static files: 13 B and 64 KiB, "
                "with its usual 8 response headers")
    return "examples/backend.rs (2 single-threaded processes, minimal headers)"


def _nginx_conf(ctx, name: str, ports: list[int], file: str, h2c_port: int | None) -> str:
    d = os.path.join(ctx.work, f"backend-{name}")
    listens = "\n".join(f"    listen 127.0.0.1:{p} reuseport backlog=4096;" for p in ports)
    h2c = ""
    if h2c_port:
        # nginx 1.22: a plain `http2` listener speaks h2c with prior
        # knowledge only, so it gets a port of its own.
        h2c = f"""
          server {{
            listen 127.0.0.1:{h2c_port} http2 reuseport;
            root {ctx.work}/backend-files;
            location / {{ try_files /{file} =404; }}
          }}"""
    return textwrap.dedent(f"""
        worker_processes 1;
        worker_rlimit_nofile {ctx.nofile};
        daemon off;
        pid {d}/nginx.pid;
        error_log {d}/error.log warn;
        events {{ worker_connections {max(1024, min(ctx.nofile - 64, 65535))}; }}
        http {{
          access_log off;
          client_body_temp_path {d}/tmp-body;
          proxy_temp_path {d}/tmp-proxy;
          fastcgi_temp_path {d}/tmp-fastcgi;
          uwsgi_temp_path {d}/tmp-uwsgi;
          scgi_temp_path {d}/tmp-scgi;
          types {{ text/plain txt; application/octet-stream bin; }}
          sendfile on;
          tcp_nopush on;
          open_file_cache max=16 inactive=600s;
          open_file_cache_valid 600s;
          keepalive_timeout 90s;
          keepalive_requests 1000000;
          server {{
        {listens}
            root {ctx.work}/backend-files;
            # Every path gets the file, so /healthz, / and /big/64k all answer.
            location / {{ try_files /{file} =404; }}
          }}{h2c}
        }}
        """)


def _start_nginx(ctx, logs) -> list[subprocess.Popen]:
    files = os.path.join(ctx.work, "backend-files")
    os.makedirs(files, exist_ok=True)
    with open(os.path.join(files, "small.txt"), "wb") as f:
        f.write(SMALL_BODY)
    with open(os.path.join(files, "big.bin"), "wb") as f:
        f.write(bytes((i * 7 + 13) % 251 for i in range(BIG_SIZE)))
    procs = []
    for name, ports, file, h2c in (("small", ctx.small, "small.txt", ctx.h2c_port),
                                   ("big", ctx.big, "big.bin", None)):
        d = os.path.join(ctx.work, f"backend-{name}")
        os.makedirs(d, exist_ok=True)
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(_nginx_conf(ctx, name, ports, file, h2c))
        procs.append(spawn(["nginx", "-p", d, "-c", conf, "-e", os.path.join(d, "error.log")],
                           stdout=logs, stderr=logs))
    return procs


def _start_example(ctx, logs) -> list[subprocess.Popen]:
    be = ctx.args.backend_bin
    if not be or not os.access(be, os.X_OK):
        raise SystemExit(f"--backend porter-example needs examples/backend.rs built ({be!r})")
    return [
        spawn([be, "--listen", f"127.0.0.1:{ctx.small[0]}=a", "--listen",
               f"127.0.0.1:{ctx.small[1]}=b"], stdout=logs, stderr=logs),
        spawn([be, "--listen", f"127.0.0.1:{ctx.big[0]}=big-a", "--listen",
               f"127.0.0.1:{ctx.big[1]}=big-b", "--body-size", str(BIG_SIZE)],
              stdout=logs, stderr=logs),
    ]


def start_backends(ctx) -> list[subprocess.Popen]:
    ports = ctx.small + ctx.big + ([ctx.h2c_port] if ctx.args.backend == "nginx" else [])
    busy = wait_ports_free(ports, timeout=2)
    if busy:
        raise SystemExit(f"backend ports busy on 127.0.0.1: {busy} (another run?); "
                         f"use --port-base to move all ports")
    logs = open(os.path.join(ctx.work, "backends.log"), "ab")
    start = _start_nginx if ctx.args.backend == "nginx" else _start_example
    procs = start(ctx, logs)
    deadline = time.time() + 10
    for port in ctx.small + ctx.big:
        want = BIG_SIZE if port in ctx.big else None
        while True:
            try:
                path = "/big/64k" if want else "/healthz"
                st, body = http_get(f"http://127.0.0.1:{port}{path}")
                if st == 200 and (want is None or len(body) == want):
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise SystemExit(f"backend on port {port} did not come up; see {ctx.work}/backends.log")
            time.sleep(0.1)
    return procs


def direct_h2c_url(ctx) -> str:
    """Where the direct (no proxy) HTTP/2 row sends h2c with prior knowledge."""
    port = ctx.h2c_port if ctx.args.backend == "nginx" else ctx.small[0]
    return f"http://127.0.0.1:{port}/"
