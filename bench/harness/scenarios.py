"""Scenarios and the load generators that drive them (wrk, h2load,
bench/driver), with their output parsers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

from .backends import direct_h2c_url
from .peers import Ctx, Peer
from .system import (cpu_seconds, established_on, process_tree, run_cmd, spawn,
                     status_kib, stop)

# ---------------------------------------------------------------- load tools

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text.strip())
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict:
    r: dict = {}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+),", out)
    if not m:
        raise ValueError("wrk: no request count in output:\n" + out[-800:])
    total = int(m.group(1))
    m2 = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    bad = int(m2.group(1)) if m2 else 0
    m3 = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = sum(int(x) for x in m3.groups()) if m3 else 0
    r["requests"] = total - bad
    r["non2xx"] = bad
    r["errors"] = errors
    r["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        r[f"p{pct}_ms"] = _ms(m.group(1)) if m else None
    return r


def parse_h2load(out: str, logfile: str) -> dict:
    m = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", out)
    if not m:
        raise ValueError("h2load: no summary in output:\n" + out[-800:])
    rps = float(m.group(2))
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", out)
    succeeded, failed, errored, tmo = (int(m.group(i)) for i in (4, 5, 6, 7))
    m2 = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    ok2xx = int(m2.group(1)) if m2 else succeeded
    lat = []
    try:
        with open(logfile) as f:
            for line in f:
                parts = line.split("\t")
                if len(parts) >= 3 and parts[1].startswith("2"):
                    lat.append(int(parts[2]))
    except OSError:
        pass
    lat.sort()

    def pct(p):
        if not lat:
            return None
        return lat[min(len(lat) - 1, round((len(lat) - 1) * p))] / 1000.0

    return {"requests": ok2xx, "non2xx": succeeded - ok2xx + failed, "errors": errored + tmo,
            "rps": rps, "p50_ms": pct(0.50), "p99_ms": pct(0.99)}


def parse_driver(out: str) -> dict:
    j = json.loads(out.strip().splitlines()[-1])
    return {"requests": j["requests"], "non2xx": j["non200"], "errors": j["errors"],
            "rps": j["rps"], "p50_ms": j["p50_us"] / 1000.0, "p99_ms": j["p99_us"] / 1000.0,
            "resumed": j["resumed"], "pq": j.get("pq", 0), "first_error": j.get("first_error")}


# ---------------------------------------------------------------- scenarios


class Scenario:
    name = "?"
    title = "?"
    direct = True   # has a "direct" (no proxy) variant
    idle = False

    def __init__(self, ctx: Ctx):
        self.ctx = ctx

    def load(self, peer: Peer, seconds: float, tag: str) -> dict:
        raise NotImplementedError


class WrkScenario(Scenario):
    tls = False
    path = "/"
    extra: list[str] = []
    label = "?"

    @property
    def title(self):
        return f"{self.label} (wrk, {self.ctx.args.connections} conns)"

    def url(self, peer: Peer) -> str:
        c = self.ctx
        if not peer.proxy:
            port = (c.big if self.path.startswith("/big") else c.small)[0]
            return f"http://127.0.0.1:{port}{self.path}"
        if self.tls:
            return f"https://localhost:{c.https_port}{self.path}"
        return f"http://127.0.0.1:{c.http_port}{self.path}"

    def load(self, peer, seconds, tag):
        secs = max(1, int(round(seconds)))
        cmd = ["wrk", "-t1", f"-c{self.ctx.args.connections}", f"-d{secs}s", "--latency",
               "--timeout", "5s"] + self.extra + [self.url(peer)]
        r = run_cmd(cmd, timeout=secs + 30)
        if r.returncode != 0:
            raise RuntimeError(f"wrk exit {r.returncode}: {r.stderr[-500:]}")
        return parse_wrk(r.stdout)


class H1(WrkScenario):
    name = "h1"
    label = "HTTP/1.1 keep-alive, small responses"


class H1Tls(WrkScenario):
    name = "h1_tls"
    label = "HTTPS/1.1 keep-alive, small responses"
    tls = True
    direct = False


class Big(WrkScenario):
    name = "big_64k"
    label = "64 KiB responses, HTTP/1.1 keep-alive"
    path = "/big/64k"


class H2(Scenario):
    name = "h2_tls"
    title = "HTTP/2 over TLS, 16 conns x 32 streams (h2load); direct = h2c"

    def load(self, peer, seconds, tag):
        c = self.ctx
        if peer.proxy:
            url = f"https://localhost:{c.https_port}/"
        else:
            url = direct_h2c_url(c)
        logfile = os.path.join(c.work, f"h2load-{tag}.log")
        secs = max(1, int(round(seconds)))
        cmd = ["h2load", "-t1", "-c16", "-m32", f"-D{secs}", f"--log-file={logfile}", url]
        try:
            r = run_cmd(cmd, timeout=secs + 30)
            if r.returncode != 0:
                raise RuntimeError(f"h2load exit {r.returncode}: {(r.stdout + r.stderr)[-500:]}")
            return parse_h2load(r.stdout, logfile)
        finally:
            try:
                os.remove(logfile)
            except OSError:
                pass


class FixedRate(Scenario):
    """A fixed request rate (default 10k/s) over 64 keep-alive HTTP/1.1
    connections, open loop (bench/driver rate): CPU per request and p99 at a
    load every peer can carry, instead of at saturation."""

    name = "fixed_rate"

    @property
    def title(self):
        return (f"HTTP/1.1 keep-alive at a fixed {self.ctx.args.fixed_rate:,.0f} req/s (driver rate, "
                f"64 conns), small responses")

    def load(self, peer, seconds, tag):
        c = self.ctx
        port = c.http_port if peer.proxy else c.small[0]
        cmd = [c.args.driver_bin, "rate", "--addr", f"127.0.0.1:{port}", "--rate",
               str(c.args.fixed_rate), "--connections", "64", "--duration", str(seconds)]
        r = run_cmd(cmd, timeout=seconds + 30)
        if r.returncode != 0:
            raise RuntimeError(f"driver exit {r.returncode}: {r.stderr[-500:]}")
        res = parse_driver(r.stdout)
        if res["rps"] < 0.97 * c.args.fixed_rate:
            # Still a valid CPU-per-request figure, but the peer (or the
            # shared load core) was saturated: its p99 is queueing.
            res["note"] = (f"held {res['rps']:,.0f} of {c.args.fixed_rate:,.0f} req/s: saturated "
                           f"(proxy or load core), so p99 is queueing, not service time")
        return res


class NewConn(Scenario):
    """One request per TLS connection, closed loop (bench/driver)."""

    direct = False
    resume = False
    kx = "x25519"

    def load(self, peer, seconds, tag):
        c = self.ctx
        cmd = [c.args.driver_bin, "connect", "--addr", f"127.0.0.1:{c.https_port}", "--sni",
               "localhost", "--concurrency", str(c.args.newconn_concurrency),
               "--duration", str(seconds), "--kx", self.kx]
        if self.resume:
            cmd.append("--resume")
        r = run_cmd(cmd, timeout=seconds + 30)
        if r.returncode != 0:
            raise RuntimeError(f"driver exit {r.returncode}: {r.stderr[-500:]}")
        res = parse_driver(r.stdout)
        total = res["requests"] + res["non2xx"]
        res["resumed_pct"] = round(100.0 * res["resumed"] / total, 1) if total else 0.0
        # Share of handshakes that settled on X25519MLKEM768.
        res["kx_pq_pct"] = round(100.0 * res["pq"] / total, 1) if total else 0.0
        return res


class TlsResume(NewConn):
    name = "tls_resumed"
    title = "New TLS connection per request, session resumed, client offers X25519 only (driver, 32 in flight)"
    resume = True


class TlsFull(NewConn):
    name = "tls_full"
    title = "New TLS connection per request, full TLS 1.3 handshake, client offers X25519 only (driver, 32 in flight)"
    resume = False


class TlsResumePq(TlsResume):
    name = "tls_resumed_pq"
    title = ("New TLS connection per request, session resumed, client offers X25519MLKEM768 "
             "first + X25519 (driver, 32 in flight)")
    kx = "pq"


class TlsFullPq(TlsFull):
    name = "tls_full_pq"
    title = ("New TLS connection per request, full TLS 1.3 handshake, client offers "
             "X25519MLKEM768 first + X25519 (driver, 32 in flight)")
    kx = "pq"


class Idle(Scenario):
    direct = False
    idle = True
    tls = False

    def measure_idle(self, peer: Peer, pid: int) -> dict:
        c = self.ctx
        n = c.args.idle_count
        cmd = [c.args.driver_bin, "idle", "--addr",
               f"127.0.0.1:{c.https_port if self.tls else c.http_port}",
               "--count", str(n), "--concurrency", "200", "--hold", "300"]
        if self.tls:
            cmd += ["--sni", "localhost"]
        time.sleep(0.5)
        pids = process_tree(pid)
        rss0 = status_kib(pids, "VmRSS")
        cpu0 = cpu_seconds(pids)
        p = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.PIPE)
        try:
            deadline = time.time() + 240
            line = b""
            while time.time() < deadline:
                line = p.stdout.readline()
                if not line or line.startswith(b"READY"):
                    break
            if not line.startswith(b"READY"):
                raise RuntimeError(f"idle driver did not get ready: {p.stderr.read()[-500:]!r}")
            info = json.loads(line[len(b"READY"):].decode())
            time.sleep(c.args.idle_settle)
            pids = process_tree(pid)
            rss1 = status_kib(pids, "VmRSS")
            cpu1 = cpu_seconds(pids)
            # Server-side sockets still open: the proxy must not have closed them.
            held = established_on(c.https_port if self.tls else c.http_port)
            hwm = status_kib(pids, "VmHWM")
            p.stdin.write(b"\n")
            p.stdin.flush()
            p.wait(30)
        finally:
            stop(p, grace=2.0)
        opened = info["open"]
        if opened == 0:
            raise RuntimeError(f"no idle connection opened: {info.get('first_error')}")
        res = {
            "idle_open": opened,
            "idle_established_at_measure": held,
            "errors": info["errors"],
            "idle_kib_per_conn": round((rss1 - rss0) / opened, 2),
            "rss_before_kib": rss0,
            "rss_after_kib": rss1,
            "peak_rss_kib": hwm,
            "open_s": info["open_s"],
            # CPU spent accepting the connections and serving their one request
            # (recorded, not reported: it is dominated by handshakes).
            "open_cpu_s": round(cpu1 - cpu0, 3),
            "first_error": info.get("first_error"),
        }
        if held < 0.95 * opened or info["errors"] > 0.01 * c.args.idle_count:
            res["invalid"] = (f"{opened} opened ({info['errors']} failed), {held} still open at "
                              f"measurement")
        return res


class IdlePlain(Idle):
    name = "idle_plain"
    title = "Idle keep-alive connections, plain HTTP/1.1: RSS per connection"


class IdleTls(Idle):
    name = "idle_tls"
    title = "Idle keep-alive connections, HTTPS/1.1: RSS per connection"
    tls = True


SCENARIO_CLASSES = [H1, H1Tls, H2, Big, FixedRate, IdlePlain, IdleTls, TlsFullPq, TlsFull,
                    TlsResumePq, TlsResume]
