"""The shared run context (ports, certificate) and the peers: how each proxy
is configured, started and versioned."""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import textwrap

from .system import CORE_PROXY, first_line, spawn

# ---------------------------------------------------------------- setup


class Ctx:
    """Everything the peers and scenarios share: ports, paths, files."""

    def __init__(self, args):
        self.args = args
        self.work = args.workdir
        base = args.port_base
        self.http_port = base + 80          # 28080
        self.https_port = base + 443        # 28443
        self.small = [base + 1001, base + 1002]  # 29001, 29002
        self.big = [base + 1011, base + 1012]    # 29011, 29012
        self.h2c_port = base + 1003              # nginx backend's h2c port (direct h2 row)
        self.certs = os.path.join(self.work, "certs")
        self.crt = os.path.join(self.certs, "localhost.crt")
        self.key = os.path.join(self.certs, "localhost.key")
        self.pem = os.path.join(self.work, "haproxy-localhost.pem")
        self.nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]

    @property
    def proxy_ports(self):
        return [self.http_port, self.https_port]


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1_048_576
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError):
        pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def make_cert(ctx: Ctx) -> None:
    """One ECDSA P-256 self-signed certificate for all peers."""
    os.makedirs(ctx.certs, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", ctx.key, "-out", ctx.crt, "-days", "30", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    with open(ctx.pem, "w") as out:
        for path in (ctx.crt, ctx.key):
            with open(path) as f:
                out.write(f.read())


# ---------------------------------------------------------------- peers


class Peer:
    name = "?"
    proxy = True  # False: "direct" (no proxy, load straight at the backend)

    def __init__(self, ctx: Ctx):
        self.ctx = ctx
        self.dir = os.path.join(ctx.work, self.name)

    def binary(self) -> str | None:
        return None

    def missing(self) -> str | None:
        """Why this peer cannot run, or None."""
        b = self.binary()
        if not b or not (os.path.isfile(b) and os.access(b, os.X_OK)):
            return f"binary not found ({b or self.name})"
        return None

    def version(self) -> str:
        return "?"

    def write_config(self) -> None:
        pass

    def command(self) -> tuple[list[str], dict]:
        raise NotImplementedError

    def start(self) -> subprocess.Popen:
        os.makedirs(self.dir, exist_ok=True)
        self.write_config()
        cmd, extra_env = self.command()
        env = dict(os.environ)
        env.update(extra_env)
        self.out = open(os.path.join(self.dir, "stdout.log"), "ab")
        self.err_path = os.path.join(self.dir, "stderr.log")
        self.err = open(self.err_path, "ab")
        return spawn(["taskset", "-c", CORE_PROXY] + cmd, env=env, stdout=self.out, stderr=self.err,
                     cwd=self.dir)

    def stderr_tail(self, n: int = 12) -> str:
        try:
            with open(self.err_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except (OSError, AttributeError):
            return ""


class Direct(Peer):
    name = "direct"
    proxy = False

    def missing(self):
        return None

    def version(self):
        return f"{self.ctx.args.backend} backend (no proxy)"


class Nginx(Peer):
    name = "nginx"

    def binary(self):
        return shutil.which("nginx")

    def version(self):
        return first_line(["nginx", "-v"], "err").replace("nginx version: ", "")

    def write_config(self):
        c = self.ctx
        d = self.dir
        wc = max(1024, min(c.nofile - 64, 65535))

        def servers(ports):
            return "\n".join(f"    server 127.0.0.1:{p};" for p in ports)

        conf = f"""
        worker_processes 1;
        worker_rlimit_nofile {c.nofile};
        daemon off;
        pid {d}/nginx.pid;
        error_log {d}/error.log warn;
        events {{ worker_connections {wc}; }}
        http {{
          access_log off;
          client_body_temp_path {d}/tmp-body;
          proxy_temp_path {d}/tmp-proxy;
          fastcgi_temp_path {d}/tmp-fastcgi;
          uwsgi_temp_path {d}/tmp-uwsgi;
          scgi_temp_path {d}/tmp-scgi;
          keepalive_timeout 75s;
          keepalive_requests 1000000;
          http2_max_requests 1000000;
          # As nginx users tune it for proxying: with the default 8 x 4 KiB buffers
          # nginx spools every 64 KiB response to a temporary file (docs/benchmarks.md).
          proxy_buffers 16 8k;
          proxy_max_temp_file_size 0;
          ssl_certificate {c.crt};
          ssl_certificate_key {c.key};
          ssl_protocols TLSv1.2 TLSv1.3;
          ssl_session_cache shared:SSL:10m;
          ssl_session_tickets on;
          upstream small {{
        {servers(c.small)}
            keepalive 128;
            keepalive_requests 1000000;
            keepalive_timeout 90s;
          }}
          upstream big {{
        {servers(c.big)}
            keepalive 128;
            keepalive_requests 1000000;
            keepalive_timeout 90s;
          }}
          proxy_http_version 1.1;
          proxy_set_header Connection "";
          proxy_set_header Host $http_host;
          proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
          proxy_set_header X-Forwarded-Proto $scheme;
          proxy_set_header X-Forwarded-Host $host;
          proxy_set_header X-Real-IP $remote_addr;
          server {{
            listen 127.0.0.1:{c.http_port} reuseport;
            listen 127.0.0.1:{c.https_port} ssl http2 reuseport;
            server_name _;
            location / {{ proxy_pass http://small; }}
            location /big {{ proxy_pass http://big; }}
          }}
        }}
        """
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(textwrap.dedent(conf))

    def command(self):
        d = self.dir
        return ["nginx", "-p", d, "-c", os.path.join(d, "nginx.conf"), "-e",
                os.path.join(d, "error.log")], {}


class HAProxy(Peer):
    name = "haproxy"

    def binary(self):
        return shutil.which("haproxy")

    def version(self):
        line = first_line(["haproxy", "-v"], "out")
        m = re.search(r"version (\S+)", line)
        return m.group(1) if m else line

    def write_config(self):
        c = self.ctx
        # HAProxy reserves two fds per connection (client + server side) and
        # refuses to start if 2 x maxconn exceeds the open-file limit; give it
        # the most the limit allows (bench.py sizes the idle test to fit).
        maxconn = max(500, (c.nofile - 20) // 2)

        def servers(ports, prefix):
            return "\n".join(f"    server {prefix}{i} 127.0.0.1:{p}" for i, p in enumerate(ports))

        conf = f"""
        global
            nbthread 1
            maxconn {maxconn}
            ulimit-n {c.nofile}
            pidfile {self.dir}/haproxy.pid
            ssl-default-bind-options ssl-min-ver TLSv1.2
            tune.ssl.cachesize 20000

        defaults
            mode http
            option http-keep-alive
            http-reuse always
            timeout connect 3s
            timeout client 75s
            timeout server 60s
            timeout http-request 10s
            timeout http-keep-alive 75s

        frontend fe
            bind 127.0.0.1:{c.http_port}
            bind 127.0.0.1:{c.https_port} ssl crt {c.pem} alpn h2,http/1.1
            option forwardfor
            http-request set-header X-Forwarded-Proto https if {{ ssl_fc }}
            http-request set-header X-Forwarded-Proto http if !{{ ssl_fc }}
            http-request set-header X-Forwarded-Host %[req.hdr(host)]
            http-request set-header X-Real-IP %[src]
            use_backend big if {{ path_beg /big }}
            default_backend small

        backend small
            balance roundrobin
        {servers(c.small, "s")}

        backend big
            balance roundrobin
        {servers(c.big, "b")}
        """
        with open(os.path.join(self.dir, "haproxy.cfg"), "w") as f:
            f.write(textwrap.dedent(conf))

    def command(self):
        return ["haproxy", "-db", "-f", os.path.join(self.dir, "haproxy.cfg")], {}


class Caddy(Peer):
    name = "caddy"

    def binary(self):
        return shutil.which("caddy")

    def version(self):
        return first_line(["caddy", "version"], "out").split()[0]

    def write_config(self):
        c = self.ctx

        def ups(ports):
            return " ".join(f"127.0.0.1:{p}" for p in ports)

        proxy_opts = """{
                lb_policy round_robin
                header_up X-Real-IP {remote_host}
                transport http {
                    keepalive 90s
                    keepalive_idle_conns_per_host 128
                }
            }"""
        conf = f"""
        {{
            admin off
            auto_https off
            servers {{
                protocols h1 h2
                timeouts {{
                    idle 75s
                }}
            }}
        }}

        (proxy) {{
            reverse_proxy /big* {ups(c.big)} {proxy_opts}
            reverse_proxy {ups(c.small)} {proxy_opts}
        }}

        http://:{c.http_port} {{
            bind 127.0.0.1
            import proxy
        }}

        https://localhost:{c.https_port} {{
            bind 127.0.0.1
            tls {c.crt} {c.key}
            import proxy
        }}
        """
        with open(os.path.join(self.dir, "Caddyfile"), "w") as f:
            f.write(textwrap.dedent(conf))

    def command(self):
        env = {"GOMAXPROCS": "1", "HOME": self.dir, "XDG_DATA_HOME": self.dir,
               "XDG_CONFIG_HOME": self.dir}
        return ["caddy", "run", "--adapter", "caddyfile", "--config",
                os.path.join(self.dir, "Caddyfile")], env


class Porter(Peer):
    name = "porter"

    def binary(self):
        return self.ctx.args.porter_bin

    def version(self):
        return first_line([self.binary(), "--version"], "out")

    def write_config(self):
        c = self.ctx

        def servers(ports):
            return ", ".join(f'{{ url: "http://127.0.0.1:{p}" }}' for p in ports)

        conf = f"""
        # generated by bench/bench.py
        listen: {{ https: "127.0.0.1:{c.https_port}", http: "127.0.0.1:{c.http_port}" }}
        tls: {{ certs: "{c.certs}" }}
        http: {{ redirect: false }}
        limits: {{ idle_timeout: 75s, max_connections: {max(1000, c.nofile)} }}
        access_log: {{ enabled: false }}
        upstreams:
          small: {{ servers: [ {servers(c.small)} ] }}
          big: {{ servers: [ {servers(c.big)} ] }}
        routes:
          - {{ path: "/big", upstream: big }}
          - {{ upstream: small }}
        """
        with open(os.path.join(self.dir, "porter.yaml"), "w") as f:
            f.write(textwrap.dedent(conf))

    def command(self):
        return [self.binary(), "--config", os.path.join(self.dir, "porter.yaml")], {
            "PORTER_WORKERS": "1",
            "RUST_LOG": "warn",  # porter's own lines; the access log is off in the config
        }


PEER_CLASSES = {cls.name: cls for cls in (Direct, Nginx, HAProxy, Caddy, Porter)}
