"""Aggregation (medians, ratios) and the outputs: markdown, JSON, SVG."""

from __future__ import annotations

from typing import TYPE_CHECKING

import math
import os
import platform
import statistics

from .system import first_line

if TYPE_CHECKING:
    from .peers import Peer
    from .scenarios import Scenario

METRICS = ["rps", "p50_ms", "p99_ms", "cpu_s_per_100k", "cpu_user_s_per_100k",
           "cpu_kernel_s_per_100k", "peak_rss_kib", "idle_kib_per_conn", "resumed_pct", "kx_pq_pct", "proxy_core_pct", "other_on_proxy_core_pct", "load_core_pct",
           "irq_on_proxy_core_pct", "steal_on_proxy_core_pct", "ksoftirqd_on_proxy_core_pct"]


def median_of(rounds: list[dict]) -> dict:
    good = [r for r in rounds if "error" not in r and "invalid" not in r]
    out: dict = {"rounds_ok": len(good), "rounds": len(rounds)}
    for m in METRICS:
        vals = [r[m] for r in good if r.get(m) is not None]
        if vals:
            out[m] = round(statistics.median(vals), 3)
    return out


def fmt(v, nd=2):
    if v is None:
        return "–"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{nd}f}"
    return str(v)


# ---------------------------------------------------------------- report


def machine_info() -> dict:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f.readline().split(":", 1)[1].strip()
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu_model": model, "mem_total": mem,
            "kernel": platform.release(), "os": first_line(["sh", "-c", ". /etc/os-release && "
                                                                  "echo $PRETTY_NAME"], "out")}


def tool_versions(args) -> dict:
    return {
        "wrk": first_line(["wrk", "-v"]),
        "h2load": first_line(["h2load", "--version"], "out"),
        "openssl": first_line(["openssl", "version"], "out"),
        "python": platform.python_version(),
        "driver": "bench/driver (rustls 0.23, aws-lc-rs)",
    }


def ratio(a, b):
    if a is None or b in (None, 0):
        return None
    return round(a / b, 2)


def build_report(meta: dict, scenarios: list[Scenario], peers: list[Peer], results: dict) -> dict:
    summary: dict = {}
    for sc in scenarios:
        sres = results[sc.name]
        ng = sres.get("nginx", {}).get("median", {})
        di = sres.get("direct", {}).get("median", {})
        for pname, pr in sres.items():
            med = pr["median"]
            key = "idle_kib_per_conn" if sc.idle else "cpu_s_per_100k"
            med["x_nginx_cpu" if not sc.idle else "x_nginx_mem"] = ratio(med.get(key), ng.get(key))
            if not sc.idle:
                med["x_nginx_user"] = ratio(med.get("cpu_user_s_per_100k"),
                                            ng.get("cpu_user_s_per_100k"))
                med["x_nginx_rps"] = ratio(med.get("rps"), ng.get("rps"))
                med["x_nginx_p99"] = ratio(med.get("p99_ms"), ng.get("p99_ms"))
                if pname != "direct":
                    med["x_direct_rps"] = ratio(med.get("rps"), di.get("rps"))
        summary[sc.name] = {p: (sres[p]["median"].get("x_nginx_mem") if sc.idle else
                                sres[p]["median"].get("x_nginx_cpu"))
                            for p in sres if p not in ("direct",)}
    return {"meta": meta, "scenarios": {sc.name: {"title": sc.title, "peers": results[sc.name]}
                                        for sc in scenarios},
            "ratio_to_nginx": summary}


def split_table(rep: dict, order: list[str]) -> list[str]:
    """The summary table (docs/benchmarks.md): CPU s per 100k requests as user + kernel per
    peer, each peer's total and user time as a ratio to nginx; idle rows:
    KiB per connection."""
    others = [p for p in order if p != "nginx"]
    L = ["## CPU s per 100k requests, user + kernel (idle rows: KiB per idle connection)\n"]
    head = "| scenario | nginx user + kernel |"
    for p in others:
        head += f" {p} user + kernel | {p} total × nginx | {p} user × nginx |"
    L.append(head)
    L.append("|---|---|" + "---|---|---|" * len(others))
    scs = rep["scenarios"]

    def med(name, p):
        return scs.get(name, {}).get("peers", {}).get(p, {}).get("median", {})

    for name, sc in scs.items():
        if name.startswith("idle"):
            continue
        row = f"| {name} | " + _uk(med(name, "nginx")) + " |"
        for p in others:
            m = med(name, p)
            row += f" {_uk(m)} | {fmt(m.get('x_nginx_cpu'))} | {fmt(m.get('x_nginx_user'))} |"
        L.append(row)
    if "idle_plain" in scs or "idle_tls" in scs:
        def kib(p):
            return (f"{fmt(med('idle_plain', p).get('idle_kib_per_conn'), 1)} plain / "
                    f"{fmt(med('idle_tls', p).get('idle_kib_per_conn'), 1)} TLS")
        row = f"| idle keep-alive, KiB per conn | {kib('nginx')} |"
        for p in others:
            row += (f" {kib(p)} | {fmt(med('idle_plain', p).get('x_nginx_mem'))} / "
                    f"{fmt(med('idle_tls', p).get('x_nginx_mem'))} | – |")
        L.append(row)
    L.append("")
    return L


def _uk(m: dict) -> str:
    u, k = m.get("cpu_user_s_per_100k"), m.get("cpu_kernel_s_per_100k")
    if u is None or k is None:
        return "–"
    return f"{u:.2f} + {k:.2f}"


def write_markdown(rep: dict, path: str, peers: list[str]) -> None:
    meta = rep["meta"]
    m = meta["machine"]
    L = []
    L.append(f"# porter benchmark results{' (quick run)' if meta['quick'] else ''}\n")
    L.append(f"- date: {meta['date']}")
    L.append(f"- machine: {m['nproc']} cores, {m['cpu_model']}, {m['mem_total']}, "
             f"kernel {m['kernel']}, {m['os']}")
    L.append("- peers: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()))
    L.append("- tools: " + ", ".join(f"{k}: {v}" for k, v in meta["tools"].items()))
    a = meta["args"]
    L.append(f"- backend: {meta.get('backend', '?')}")
    if meta.get("loadavg_before"):
        L.append(f"- load average (1, 5, 15 min) before the run: {meta['loadavg_before']}, after: "
                 f"{meta['loadavg_after']} (2 cores; above ~1 means other work shared the "
                 f"machine: req/s and latency are disturbed more than CPU per request, which "
                 f"counts the proxy's own CPU time)")
    L.append(f"- method: proxy on core 0 (1 worker/thread), backends + load generators on core 1; "
             f"{a['duration']}s per run after {a['warmup']}s warm-up, {a['rounds']} round(s), "
             f"median reported; {a['connections']} wrk connections; idle test with "
             f"{a['idle_count']} connections")
    bg = meta.get("background_busy_pct_before_run") or {}
    L.append("- machine load just before the run (busy % per core, 1 s sample): "
             + ", ".join(f"core {k}: {v}" for k, v in bg.items())
             + ("  **— not idle: figures are noisy**" if max(bg.values(), default=0) > 15 else ""))
    if meta.get("skipped"):
        L.append("- skipped peers: " + "; ".join(f"{k}: {v}" for k, v in meta["skipped"].items()))
    L.append("")
    # summary table
    order = [p for p in peers if p != "direct"]
    L.append("## CPU per request (idle rows: memory per idle connection) as a ratio to nginx\n")
    L.append("Lower is better; nginx = 1.00.\n")
    L.append("| scenario | " + " | ".join(order) + " |")
    L.append("|---|" + "---|" * len(order))
    for name, row in rep["ratio_to_nginx"].items():
        L.append(f"| {name} | " + " | ".join(fmt(row.get(p)) for p in order) + " |")
    L.append("")
    L += split_table(rep, order)
    for name, sc in rep["scenarios"].items():
        L.append(f"## {name}: {sc['title']}\n")
        rows = sc["peers"]
        if name.startswith("idle"):
            L.append("| peer | KiB per idle conn | × nginx | conns held | peak RSS MiB | rounds ok |")
            L.append("|---|---|---|---|---|---|")
            for p in peers:
                if p not in rows:
                    continue
                med = rows[p]["median"]
                held = [r.get("idle_open") for r in rows[p]["rounds"] if r.get("idle_open")]
                L.append(f"| {p} | {fmt(med.get('idle_kib_per_conn'))} | "
                         f"{fmt(med.get('x_nginx_mem'))} | {max(held) if held else '–'} | "
                         f"{fmt(med.get('peak_rss_kib', 0) / 1024 if med.get('peak_rss_kib') else None, 1)} | "
                         f"{med['rounds_ok']}/{med['rounds']} |")
        else:
            extra = " resumed % | X25519MLKEM768 % |" if name.startswith("tls_") else ""
            L.append("| peer | req/s | p50 ms | p99 ms | CPU s / 100k req | user | kernel | CPU × nginx "
                     "| user × nginx | req/s × nginx "
                     "| p99 × nginx | req/s ÷ direct | peak RSS MiB |" + extra +
                     " proxy core % | other on proxy core % | load core % | rounds ok |")
            L.append("|---|" + "---|" * (16 + (2 if extra else 0)))
            for p in peers:
                if p not in rows:
                    continue
                med = rows[p]["median"]
                rss = med.get("peak_rss_kib")
                cells = [p, fmt(med.get("rps"), 0), fmt(med.get("p50_ms")), fmt(med.get("p99_ms")),
                         fmt(med.get("cpu_s_per_100k")), fmt(med.get("cpu_user_s_per_100k")),
                         fmt(med.get("cpu_kernel_s_per_100k")), fmt(med.get("x_nginx_cpu")),
                         fmt(med.get("x_nginx_user")),
                         fmt(med.get("x_nginx_rps")), fmt(med.get("x_nginx_p99")),
                         fmt(med.get("x_direct_rps")), fmt(rss / 1024 if rss else None, 1)]
                if extra:
                    cells.append(fmt(med.get("resumed_pct"), 1))
                    cells.append(fmt(med.get("kx_pq_pct"), 1))
                cells += [fmt(med.get("proxy_core_pct"), 0), fmt(med.get("other_on_proxy_core_pct"), 0),
                          fmt(med.get("load_core_pct"), 0)]
                cells.append(f"{med['rounds_ok']}/{med['rounds']}")
                L.append("| " + " | ".join(cells) + " |")
        failures = [(p, r) for p in rows for r in rows[p]["rounds"]
                    if "error" in r or "invalid" in r or "note" in r]
        if failures:
            L.append("")
            for p, r in failures:
                why = r.get("error") or r.get("invalid") or "(counted) " + r["note"]
                why = " / ".join(x.strip() for x in (why or "?").splitlines() if x.strip())
                L.append(f"- **{p}, round {r.get('round')}**: {why[:400]}")
        L.append("")
    L.append("Columns: req/s = successful responses per second; p50/p99 = latency percentiles from the "
             "load generator; CPU s / 100k req = (utime+stime of the proxy's processes after − before "
             "the measured run) / requests × 100,000; peak RSS = VmHWM summed over the proxy's "
             "processes (started fresh for each scenario); KiB per idle conn = (VmRSS with N idle "
             "connections − VmRSS before) / N; proxy core % = the proxy's CPU time over the run's "
             "wall time; other on proxy core % = CPU time of other processes on the proxy's "
             "core, less ksoftirqd (noise; interrupt, ksoftirqd and steal time are in the JSON); load core % = how busy the load generators' + backends' core was "
             "(near 100: the client side, not the proxy, limited req/s). See bench/README.md.\n")
    with open(path, "w") as f:
        f.write("\n".join(L))


COLORS = {"porter": "#d95f02", "haproxy": "#1b9e77", "caddy": "#7570b3", "nginx": "#666666"}


def write_svg(rep: dict, path: str, peers: list[str]) -> None:
    """Diverging bars on a log2 scale from nginx = 1: left of the line is
    cheaper than nginx, right is dearer."""
    order = [p for p in peers if p not in ("direct", "nginx")]
    rows = list(rep["ratio_to_nginx"].items())
    vals = [v for _, r in rows for p in order for v in [r.get(p)] if v]
    vmin = min([0.25] + [v / 1.3 for v in vals])
    vmax = max([4.0] + [v * 1.3 for v in vals])
    lo, hi = math.floor(math.log2(vmin)), math.ceil(math.log2(vmax))
    bar_h, gap, left, right, top = 14, 14, 150, 40, 96
    group_h = bar_h * max(1, len(order)) + gap
    width = 860
    plot_w = width - left - right
    n_idle = sum(1 for name, _ in rows if name.startswith("idle"))
    height = top + group_h * len(rows) + (24 if n_idle else 0) + 64
    meta = rep["meta"]

    def x(v):
        return left + plot_w * (math.log2(v) - lo) / (hi - lo)

    def esc(s):
        return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    m = meta["machine"]
    vers = ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if k != "direct")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">'
           f'Cost relative to nginx (log scale): CPU per request; idle rows: memory per connection'
           f'</text>',
           f'<text x="{width / 2}" y="40" text-anchor="middle" fill="#444">'
           f'{esc(meta["date"])} · {m["nproc"]} cores, {esc(m["cpu_model"])} · proxy on 1 core'
           + (" · QUICK RUN (indicative only)" if meta["quick"] else
              f' · median of {meta["args"]["rounds"]} rounds') + '</text>',
           f'<text x="{width / 2}" y="56" text-anchor="middle" fill="#444" font-size="11">'
           f'{esc(vers)}</text>',
           f'<text x="{x(1) - 6:.1f}" y="{top - 14}" text-anchor="end" fill="#2a7">'
           f'← cheaper than nginx</text>',
           f'<text x="{x(1) + 6:.1f}" y="{top - 14}" fill="#c33">dearer than nginx →</text>']
    axis_bottom = height - 50
    for e in range(lo, hi + 1):
        v = 2.0 ** e
        out.append(f'<line x1="{x(v):.1f}" y1="{top - 6}" x2="{x(v):.1f}" y2="{axis_bottom}" '
                   f'stroke="#e4e4e4"/>')
        out.append(f'<text x="{x(v):.1f}" y="{axis_bottom + 14}" text-anchor="middle" fill="#555">'
                   f'{v:g}×</text>')
    y = top
    for gi, (name, r) in enumerate(rows):
        if name.startswith("idle") and (gi == 0 or not rows[gi - 1][0].startswith("idle")):
            out.append(f'<line x1="10" y1="{y + 4}" x2="{width - 10}" y2="{y + 4}" stroke="#bbb"/>')
            out.append(f'<text x="12" y="{y + 18}" fill="#555" font-style="italic">'
                       f'memory per idle connection</text>')
            y += 24
        out.append(f'<text x="{left - 8}" y="{y + group_h / 2 - gap / 2:.1f}" text-anchor="end" '
                   f'dominant-baseline="middle">{esc(name)}</text>')
        for bi, p in enumerate(order):
            v = r.get(p)
            by = y + bi * bar_h
            color = COLORS.get(p, "#999")
            if not v:
                out.append(f'<text x="{x(1) + 4:.1f}" y="{by + bar_h - 3}" fill="#999" '
                           f'font-size="10">{esc(p)}: no data</text>')
                continue
            x0, x1 = sorted((x(1), x(v)))
            out.append(f'<rect x="{x0:.1f}" y="{by + 1}" width="{max(1.0, x1 - x0):.1f}" '
                       f'height="{bar_h - 2}" fill="{color}"/>')
            if v >= 1:
                out.append(f'<text x="{x1 + 4:.1f}" y="{by + bar_h - 3}" font-size="10">'
                           f'{v:.2f}</text>')
            else:
                out.append(f'<text x="{x0 - 4:.1f}" y="{by + bar_h - 3}" font-size="10" '
                           f'text-anchor="end">{v:.2f}</text>')
        y += group_h
    out.append(f'<line x1="{x(1):.1f}" y1="{top - 8}" x2="{x(1):.1f}" y2="{axis_bottom}" '
               f'stroke="#333" stroke-width="1.5"/>')
    out.append(f'<text x="{x(1):.1f}" y="{axis_bottom + 28}" text-anchor="middle" fill="#333">'
               f'nginx = 1</text>')
    lx = width - right - 100 * len(order)
    for p in order:
        out.append(f'<rect x="{lx}" y="{height - 16}" width="12" height="12" '
                   f'fill="{COLORS.get(p, "#999")}"/>')
        out.append(f'<text x="{lx + 16}" y="{height - 6}">{esc(p)}</text>')
        lx += 100
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
