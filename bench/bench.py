#!/usr/bin/env python3
"""porter benchmark harness: porter against nginx, HAProxy and Caddy.

Run through bench/run.sh (which installs the tools and builds the binaries);
see bench/README.md for the method. Standard library only.

Layout of one run:
  * backends (nginx serving files, or examples/backend.rs: --backend) and
    every load generator run on core 1
    (this script is started pinned to core 1 and its children inherit that);
  * each proxy runs on core 0 with one worker / thread, started fresh for each
    (round, scenario, peer), so its peak RSS belongs to that scenario alone;
  * peers are interleaved: within a round every scenario runs on every peer,
    and the peer order rotates from round to round; figures are medians
    over rounds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from harness.backends import BACKENDS, describe as describe_backend, start_backends  # noqa: E402
from harness.peers import PEER_CLASSES, Ctx, Peer, make_cert, raise_nofile  # noqa: E402
from harness.report import (build_report, machine_info, median_of, tool_versions,  # noqa: E402
                            write_markdown, write_svg)
from harness.scenarios import SCENARIO_CLASSES, Scenario  # noqa: E402
from harness.system import (CORE_LOAD, CORE_PROXY, core_busy_pct, core_ticks,  # noqa: E402
                            cpu_seconds, cpu_split, http_get, log, loud, pids_named, process_tree,
                            status_kib, stop, wait_ports_free)

# ---------------------------------------------------------------- running


def wait_ready(ctx: Ctx, peer: Peer, p: subprocess.Popen, timeout: float = 15.0) -> None:
    urls = [f"http://127.0.0.1:{ctx.http_port}/", f"http://127.0.0.1:{ctx.http_port}/big/64k",
            f"https://localhost:{ctx.https_port}/"]
    deadline = time.time() + timeout
    pending = list(urls)
    last = ""
    while pending:
        if p.poll() is not None:
            raise RuntimeError(f"{peer.name} exited with {p.returncode}:\n{peer.stderr_tail()}")
        try:
            st, body = http_get(pending[0], timeout=1.0)
            if st == 200 and (not pending[0].endswith("64k") or len(body) == 65536):
                pending.pop(0)
                continue
            last = f"{pending[0]}: status {st}, {len(body)} bytes"
        except Exception as e:  # noqa: BLE001
            last = f"{pending[0]}: {e}"
        if time.time() > deadline:
            raise RuntimeError(f"{peer.name} not ready after {timeout}s ({last})\n{peer.stderr_tail()}")
        time.sleep(0.1)


def run_one(ctx: Ctx, sc: Scenario, peer: Peer, rnd: int) -> dict:
    args = ctx.args
    tag = f"{sc.name}-{peer.name}-r{rnd}"
    p = None
    try:
        if peer.proxy:
            busy = wait_ports_free(ctx.proxy_ports, timeout=10)
            if busy:
                raise RuntimeError(f"proxy ports still busy: {busy}")
            p = peer.start()
            wait_ready(ctx, peer, p)
        if sc.idle:
            return sc.measure_idle(peer, p.pid)
        if args.warmup > 0:
            sc.load(peer, args.warmup, tag + "-warmup")
        pids = process_tree(p.pid) if p else []
        # The kernel thread that takes over softirq work (loopback packets)
        # on the proxy's core when there is a lot of it: network work for
        # this very traffic, not noise.
        ksoftirqd = pids_named(f"ksoftirqd/{CORE_PROXY}")
        cpu0, ksi0 = cpu_split(pids), cpu_seconds(ksoftirqd)
        ticks0, t0 = core_ticks(), time.time()
        res = sc.load(peer, args.duration, tag)
        ticks1 = core_ticks()
        busy = core_busy_pct(ticks0, ticks1)
        # Tick-based accounting (this kernel has no IRQ_TIME_ACCOUNTING): a
        # tick in softirq is counted as softirq in /proc/stat *and* as system
        # time of the task it interrupted, usually the proxy. So what the
        # proxy did not use of its core is task + irq time minus the proxy's.
        tasks = core_busy_pct(ticks0, ticks1, ("task", "irq"))
        wall = time.time() - t0
        res["core_busy_pct"] = busy
        # Interrupt time (mostly loopback softirq for this traffic) and
        # hypervisor steal on the proxy's core, for the record.
        res["irq_on_proxy_core_pct"] = core_busy_pct(ticks0, ticks1, ("irq",)).get(CORE_PROXY)
        res["steal_on_proxy_core_pct"] = core_busy_pct(ticks0, ticks1, ("steal",)).get(CORE_PROXY)
        res["load_core_pct"] = busy.get(CORE_LOAD)
        for k in ("p50_ms", "p99_ms"):
            if res.get(k) is not None:
                res[k] = round(res[k], 3)
        res["rps"] = round(res["rps"], 1)
        if p:
            pids = process_tree(p.pid)
            split1 = cpu_split(pids)
            user, kern = split1[0] - cpu0[0], split1[1] - cpu0[1]
            cpu = user + kern
            res["cpu_s"] = round(cpu, 3)
            # How busy the proxy kept its core, and how much of that core
            # went to anything else (other processes on the machine).
            res["proxy_core_pct"] = round(100.0 * cpu / wall, 1)
            ksi_pct = round(100.0 * (cpu_seconds(ksoftirqd) - ksi0) / wall, 1)
            res["ksoftirqd_on_proxy_core_pct"] = ksi_pct
            res["other_on_proxy_core_pct"] = round(
                max(0.0, tasks.get(CORE_PROXY, 0.0) - res["proxy_core_pct"] - ksi_pct), 1)
            n = res["requests"]
            res["cpu_s_per_100k"] = round(cpu / n * 1e5, 3) if n else None
            # utime / stime: the proxy's own work vs. the kernel's on its
            # behalf (syscalls, and the loopback softirq charged to it).
            res["cpu_user_s_per_100k"] = round(user / n * 1e5, 3) if n else None
            res["cpu_kernel_s_per_100k"] = round(kern / n * 1e5, 3) if n else None
            res["peak_rss_kib"] = status_kib(pids, "VmHWM")
            res["peak_rss_kib_largest_process"] = max(status_kib([x], "VmHWM") for x in pids)
            if p.poll() is not None:
                raise RuntimeError(f"{peer.name} died during the run:\n{peer.stderr_tail()}")
        total = res["requests"] + res.get("non2xx", 0)
        bad = res.get("non2xx", 0) + res.get("errors", 0)
        if total == 0 or bad > 0.01 * max(total, 1):
            res["invalid"] = f"{res.get('non2xx', 0)} non-2xx, {res.get('errors', 0)} errors " \
                             f"of {total}"
        return res
    finally:
        stop(p)


# ---------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description="porter benchmark harness (use bench/run.sh)")
    ap.add_argument("--quick", action="store_true",
                    help="short runs: 3s, 1s warm-up, 1 round, 2000 idle connections")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--duration", type=float, help="seconds per measured run (default 10)")
    ap.add_argument("--warmup", type=float, help="seconds of warm-up load before each run")
    ap.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    ap.add_argument("--newconn-concurrency", type=int, default=32)
    ap.add_argument("--idle-count", type=int, help="idle connections (default 10000)")
    ap.add_argument("--idle-settle", type=float, default=2.0)
    ap.add_argument("--peers", default="direct,nginx,haproxy,caddy,porter")
    ap.add_argument("--backend", choices=BACKENDS, default="nginx",
                    help="what the proxies forward to: nginx serving static files with a real "
                         "server's headers (default), or porter-example (examples/backend.rs)")
    ap.add_argument("--fixed-rate", type=float, default=10000.0,
                    help="requests per second of the fixed-rate scenario (default 10000)")
    ap.add_argument("--scenarios", default=",".join(c.name for c in SCENARIO_CLASSES))
    ap.add_argument("--port-base", type=int, default=28000,
                    help="proxy listens on BASE+80 and BASE+443, backends on BASE+1001.. (default 28000)")
    ap.add_argument("--workdir", default="/tmp/porter-bench")
    ap.add_argument("--out", default=None, help="results folder (default bench/results, "
                                                "bench/results/quick with --quick)")
    ap.add_argument("--backend-bin", default="", help="examples/backend.rs binary "
                                                         "(--backend porter-example)")
    ap.add_argument("--driver-bin", required=True)
    ap.add_argument("--porter-bin", default=os.path.join(REPO, "target/release/porter"))
    ap.add_argument("--note", action="append", default=[], help="skip note to record (run.sh)")
    args = ap.parse_args()

    q = args.quick
    args.rounds = args.rounds or (1 if q else 3)
    args.duration = args.duration or (3.0 if q else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if q else 2.0)
    args.idle_count = args.idle_count or (2000 if q else 10000)
    args.out = args.out or os.path.join(HERE, "results", "quick" if q else "")
    args.out = args.out.rstrip("/")

    os.makedirs(args.workdir, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    nofile = raise_nofile()
    need = args.idle_count + 300
    if nofile < need:
        new = max(100, nofile - 300)
        loud(f"open-file limit {nofile} is below {need}: idle test reduced to {new} connections")
        args.idle_count = new
    if "haproxy" in args.peers.split(","):
        cap = (nofile - 200) // 2 // 100 * 100
        if args.idle_count > cap:
            loud(f"open-file limit {nofile}: HAProxy can hold at most ~{(nofile - 20) // 2} "
                 f"connections (2 fds each), so the idle test uses {cap} connections for every "
                 f"peer instead of {args.idle_count} (raise the hard limit, or leave haproxy out, "
                 f"for more)")
            args.idle_count = cap
    ctx = Ctx(args)
    log(f"workdir {ctx.work}; ports: proxy {ctx.http_port}/{ctx.https_port}, "
        f"backends {ctx.small + ctx.big}; nofile {nofile}; affinity {sorted(os.sched_getaffinity(0))}")

    peers: list[Peer] = []
    skipped: dict = {}
    for name in [p.strip() for p in args.peers.split(",") if p.strip()]:
        cls = PEER_CLASSES.get(name)
        if not cls:
            raise SystemExit(f"unknown peer {name}; known: {', '.join(PEER_CLASSES)}")
        peer = cls(ctx)
        why = peer.missing()
        if why:
            loud(f"SKIPPING PEER {name}: {why}")
            skipped[name] = why
            continue
        peers.append(peer)
    for note in args.note:
        k, _, v = note.partition("=")
        skipped.setdefault(k, v)
    by_name = {c.name: c for c in SCENARIO_CLASSES}
    scenarios = []
    for name in [s.strip() for s in args.scenarios.split(",") if s.strip()]:
        if name not in by_name:
            raise SystemExit(f"unknown scenario {name}; known: {', '.join(by_name)}")
        scenarios.append(by_name[name](ctx))

    busy = wait_ports_free(ctx.proxy_ports, timeout=1)
    if busy:
        raise SystemExit(f"proxy ports busy on 127.0.0.1: {busy}; use --port-base to move all ports")
    make_cert(ctx)
    ticks0 = core_ticks()
    time.sleep(1.0)
    background = core_busy_pct(ticks0, core_ticks())
    if max(background.values(), default=0) > 15:
        loud(f"the machine is not idle before the run (busy % per core: {background}): "
             f"figures will be noisy; compare ratios within this run only")
    versions = {p.name: p.version() for p in peers}
    load_before = os.getloadavg()
    start_backends(ctx)
    log("backends up: " + ", ".join(str(p) for p in ctx.small + ctx.big))

    results: dict = {sc.name: {} for sc in scenarios}
    names = [p.name for p in peers]
    t_start = time.time()
    for rnd in range(args.rounds):
        order = peers[rnd % len(peers):] + peers[:rnd % len(peers)] if peers else []
        for sc in scenarios:
            for peer in order:
                if not peer.proxy and not sc.direct:
                    continue
                log(f"round {rnd + 1}/{args.rounds} · {sc.name} · {peer.name}")
                try:
                    res = run_one(ctx, sc, peer, rnd)
                except Exception as e:  # noqa: BLE001 - record and go on with the next peer
                    res = {"error": str(e)}
                    loud(f"{peer.name} failed in {sc.name}: {str(e).strip()[:1500] or repr(e)}")
                res["round"] = rnd + 1
                slot = results[sc.name].setdefault(peer.name, {"rounds": []})
                slot["rounds"].append(res)
                brief = {k: res[k] for k in ("rps", "p50_ms", "p99_ms", "cpu_s_per_100k",
                                             "cpu_user_s_per_100k", "kx_pq_pct",
                                             "peak_rss_kib", "idle_kib_per_conn", "resumed_pct",
                                             "proxy_core_pct", "other_on_proxy_core_pct",
                                             "load_core_pct", "invalid") if k in res}
                log(f"    {json.dumps(brief)}")
    for sc in scenarios:
        for pname, slot in results[sc.name].items():
            slot["median"] = median_of(slot["rounds"])

    meta = {
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "quick": q,
        "machine": machine_info(),
        "versions": versions,
        "tools": tool_versions(args),
        "skipped": skipped,
        "background_busy_pct_before_run": background,
        "elapsed_s": round(time.time() - t_start, 1),
        "backend": describe_backend(ctx),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "args": {k: v for k, v in vars(args).items() if k not in ("note",)},
        "ports": {"http": ctx.http_port, "https": ctx.https_port, "backends_small": ctx.small,
                  "backends_64k": ctx.big},
        "cores": {"proxy": CORE_PROXY, "load_and_backends": CORE_LOAD},
    }
    rep = build_report(meta, scenarios, peers, results)
    md = os.path.join(args.out, "results.md")
    js = os.path.join(args.out, "results.json")
    svg = os.path.join(args.out, "ratio-to-nginx.svg")
    with open(js, "w") as f:
        json.dump(rep, f, indent=2)
    write_markdown(rep, md, names)
    write_svg(rep, svg, names)
    log(f"wrote {md}, {js}, {svg}")
    print()
    with open(md) as f:
        print(f.read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
