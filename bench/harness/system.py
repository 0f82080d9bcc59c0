"""Processes the harness starts (and always stops), /proc readings, ports and
small helpers."""

from __future__ import annotations

import atexit
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

CORE_PROXY = "0"  # the proxy under test
CORE_LOAD = "1"   # backends, load generators, the harness

# ---------------------------------------------------------------- processes

_started: list[subprocess.Popen] = []


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def loud(msg: str) -> None:
    bar = "!" * 72
    print(f"\n{bar}\n!!! {msg}\n{bar}\n", flush=True)


def spawn(cmd, *, env=None, stdout=None, stderr=None, stdin=subprocess.DEVNULL, cwd=None):
    """Starts a process in its own session so that it and its children can
    be stopped as a group; remembers it for the exit cleanup."""
    p = subprocess.Popen(
        cmd, env=env, stdout=stdout, stderr=stderr, stdin=stdin, cwd=cwd,
        start_new_session=True,
    )
    _started.append(p)
    return p


def stop(p: subprocess.Popen | None, grace: float = 5.0) -> None:
    if p is None:
        return
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(5)
    else:
        # The leader is gone; make sure no child of its group lingers.
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if p in _started:
        _started.remove(p)


def cleanup() -> None:
    for p in list(reversed(_started)):
        try:
            stop(p, grace=2.0)
        except Exception as e:  # noqa: BLE001 - best effort at exit
            print(f"cleanup: {e}", file=sys.stderr)


def _on_signal(signum, _frame):
    log(f"signal {signum}: stopping everything")
    cleanup()
    sys.exit(128 + signum)


atexit.register(cleanup)
for _s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(_s, _on_signal)

# ---------------------------------------------------------------- /proc

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(")") + 2:].split()


def process_tree(root: int) -> list[int]:
    """root and all its descendants (nginx: master + worker)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        f = _stat_fields(int(d))
        if f:
            children.setdefault(int(f[1]), []).append(int(d))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes, in seconds."""
    total = 0
    for pid in pids:
        f = _stat_fields(pid)
        if f:
            total += int(f[11]) + int(f[12])
    return total / CLK_TCK


def cpu_split(pids: list[int]) -> tuple[float, float]:
    """(utime, stime) of the processes, in seconds: user and kernel time."""
    user = kern = 0
    for pid in pids:
        f = _stat_fields(pid)
        if f:
            user += int(f[11])
            kern += int(f[12])
    return user / CLK_TCK, kern / CLK_TCK


def status_kib(pids: list[int], key: str) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def core_ticks() -> dict[str, dict[str, int]]:
    """Per core (from /proc/stat): ticks spent in tasks (user+nice+system),
    in interrupts (irq+softirq), stolen by the hypervisor, and in all."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3:4].isdigit():
                parts = line.split()
                v = [int(x) for x in parts[1:9]] + [0] * (8 - len(parts[1:9]))
                out[parts[0][3:]] = {"task": v[0] + v[1] + v[2], "irq": v[5] + v[6], "steal": v[7],
                                     "total": sum(v)}
    return out


def core_busy_pct(before: dict, after: dict, kinds=("task", "irq", "steal")) -> dict[str, float]:
    """Per core: % of wall time spent in the given kinds of work."""
    res = {}
    for core, a in after.items():
        b = before.get(core)
        if not b or a["total"] <= b["total"]:
            res[core] = 0.0
            continue
        busy = sum(a[k] - b[k] for k in kinds)
        res[core] = round(100.0 * busy / (a["total"] - b["total"]), 1)
    return res


# ---------------------------------------------------------------- helpers


def pids_named(comm: str) -> list[int]:
    """Processes whose /proc/PID/comm is exactly `comm` (e.g. ksoftirqd/0)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/comm") as f:
                    if f.read().strip() == comm:
                        out.append(int(d))
            except OSError:
                pass
    return out


def established_on(port: int) -> int:
    """Established TCP connections whose local port is `port` (IPv4)."""
    n = 0
    want = f":{port:04X}"
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split(None, 4)
            if parts[1].endswith(want) and parts[3] == "01":
                n += 1
    return n


def port_free(port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def wait_ports_free(ports, timeout=10.0) -> list[int]:
    deadline = time.time() + timeout
    while True:
        busy = [p for p in ports if not port_free(p)]
        if not busy or time.time() > deadline:
            return busy
        time.sleep(0.2)


_insecure = ssl.create_default_context()
_insecure.check_hostname = False
_insecure.verify_mode = ssl.CERT_NONE


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"User-Agent": "porter-bench"})
    with urllib.request.urlopen(req, timeout=timeout, context=_insecure) as r:
        return r.status, r.read()


def run_cmd(cmd, timeout: float, env=None) -> subprocess.CompletedProcess:
    """Runs a load generator, bounded in time; kills its group on timeout."""
    p = spawn(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(p, grace=1.0)
        out, err = p.communicate()
        return subprocess.CompletedProcess(cmd, -9, out.decode(errors="replace"),
                                           err.decode(errors="replace") + "\n[timed out]")
    if p in _started:
        _started.remove(p)
    return subprocess.CompletedProcess(cmd, p.returncode, out.decode(errors="replace"),
                                       err.decode(errors="replace"))


def first_line(cmd, stream="both") -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"
    text = {"out": r.stdout, "err": r.stderr}.get(stream, r.stdout + "\n" + r.stderr)
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return "unknown"
