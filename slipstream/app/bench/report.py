"""``benchmarks/results/REPORT.md`` from a fan-out sweep: machine, commands, tables, goals."""

from __future__ import annotations

import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from broadcast.config import BroadcastConfig
from slipstream.app.bench.compare import goal_row, report_section

__all__ = ["goals", "headline", "machine", "write_report"]


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    versions = {}
    for package in ("websockets", "aiohttp", "msgpack", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "?"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(memory_gb, 1),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "open_files_limit": f"{soft} soft / {hard} hard",
        "packages": versions,
    }


def _steps(summary: dict[str, Any], transport: str) -> list[Any]:
    rows = [r for r in summary["steps"] if r["transport"] == transport and "latency_ms" in r]
    return sorted(rows, key=lambda r: r["subscribers"])


def _codec_run(summary: dict[str, Any], transport: str, codec: str) -> dict[str, Any] | None:
    for r in summary["codecs"]:
        if r["transport"] == transport and r.get("codec") == codec and "bytes_per_update" in r:
            return r  # type: ignore[no-any-return]
    return None


def goals(summary: dict[str, Any], default_codec: str) -> list[tuple[str, str, str, str]]:
    """``(goal, target, measured, verdict)`` rows for the issue's goals."""
    rows: list[tuple[str, str, str, str]] = []
    ws = {r["subscribers"]: r for r in _steps(summary, "ws")}
    poll = {r["subscribers"]: r for r in _steps(summary, "poll")}
    both = sorted(n for n in set(ws) & set(poll) if ws[n].get("passed") and poll[n].get("passed"))
    common = both or sorted(set(ws) & set(poll))
    if common:
        parts, met = [], []
        for n in common:
            w, p = ws[n]["server_cpu_us_per_update"], poll[n]["server_cpu_us_per_update"]
            ratio = w / max(p, 1e-9)
            parts.append(f"1/{1 / ratio:.1f} at N={n} ({w} vs {p} us)")
            met.append(ratio <= 1 / 6)
        if all(met):
            verdict = "met"
        elif any(met):
            ok_at = [str(n) for n, ok in zip(common, met, strict=True) if ok]
            verdict = "met at N=" + ", ".join(ok_at)
        else:
            verdict = "not met"
        rows.append(
            ("WebSocket server CPU per update vs long-poll's", "<= 1/6", "; ".join(parts), verdict)
        )
    passing_ws = [r for r in ws.values() if r.get("passed")]
    if passing_ws:
        top = max(passing_ws, key=lambda r: r["subscribers"])
        us = top["server_cpu_us_per_update"]
        rows.append(
            (
                "WebSocket server CPU per delivered update",
                "<= 12 us",
                f"{us} us at N={top['subscribers']}",
                "met" if us <= 12 else "not met",
            )
        )
        kb = top["server_rss_per_connection_kb"]
        rows.append(
            (
                "Server memory per WebSocket connection",
                "<= 20 KB",
                f"{kb} KB at N={top['subscribers']}",
                "met" if kb <= 20 else "not met",
            )
        )
        p99 = top["latency_ms"]["p99"]
        near = top["subscribers"] >= 19_000  # the cap is ~19,990 sockets per process
        rows.append(("One node process near the socket cap (~19,990) at 2 Hz",
                     "p99 <= 250 ms", f"N={top['subscribers']}: p99 {p99} ms",
                     "met" if near and p99 <= 250 else "not met"))  # fmt: skip

    if (row := goal_row(summary)) is not None:
        rows.append(row)
    ws_default = _codec_run(summary, "ws", default_codec)
    poll_full = _codec_run(summary, "poll", "full")
    if ws_default and poll_full:
        ratio = ws_default["bytes_per_update"] / poll_full["bytes_per_update"]
        rows.append((
            f"Bytes per update, WebSocket + {default_codec} vs long-poll + full", "<= 1/10",
            f"1/{1 / ratio:.1f} ({ws_default['bytes_per_update']} vs "
            f"{poll_full['bytes_per_update']} B)", "met" if ratio <= 0.1 else "not met",
        ))  # fmt: skip
    return rows


def headline(summary: dict[str, Any], default_codec: str) -> list[str]:
    """The few ratios worth quoting, as markdown bullet points."""
    out: list[str] = []
    caps = summary["capacities"]
    if "ws" in caps and "poll" in caps:
        ws_cap, poll_cap = caps["ws"]["capacity"], caps["poll"]["capacity"]
        ws_more = "" if caps["ws"]["first_failure"] else " (every step passed)"
        out.append(
            f"- Capacity of one node process at 2 Hz: **{ws_cap:,} WebSocket subscribers**"
            f"{ws_more} vs **{poll_cap:,} long-poll subscribers**."
        )
    ws = {r["subscribers"]: r for r in _steps(summary, "ws") if r.get("passed")}
    poll = {r["subscribers"]: r for r in _steps(summary, "poll") if r.get("passed")}
    common = sorted(set(ws) & set(poll))
    if common:
        n = common[-1]
        w, p = ws[n], poll[n]
        factor = p["server_cpu_us_per_update"] / max(w["server_cpu_us_per_update"], 1e-9)
        out.append(
            f"- At {n:,} subscribers long-poll costs the node **{factor:.1f}x the CPU per "
            f"update** of WebSocket ({p['server_cpu_us_per_update']} vs "
            f"{w['server_cpu_us_per_update']} µs), with p99 {p['latency_ms']['p99']} vs "
            f"{w['latency_ms']['p99']} ms."
        )
    poll_full = _codec_run(summary, "poll", "full")
    for codec in sorted({r.get("codec") for r in summary["codecs"] if r.get("codec")}):
        w_codec = _codec_run(summary, "ws", codec)
        p_codec = _codec_run(summary, "poll", codec)
        if w_codec and poll_full:
            extra = ""
            if p_codec:
                overhead = p_codec["bytes_per_update"] - w_codec["bytes_per_update"]
                extra = f"; long-poll adds {overhead:.0f} B per update over WebSocket with {codec}"
            mark = " (the node's default codec)" if codec == default_codec else ""
            out.append(
                f"- Bytes per update, WebSocket + {codec}{mark}: {w_codec['bytes_per_update']:.0f}"
                f" B = **1/{poll_full['bytes_per_update'] / w_codec['bytes_per_update']:.1f}** "
                f"of long-poll + full ({poll_full['bytes_per_update']:.0f} B){extra}."
            )
    return out


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _run_row(r: dict[str, Any]) -> list[Any]:
    if "latency_ms" not in r:
        return [r["transport"], r["subscribers"], r.get("codec", ""), "error: " + r["error"]]
    lat = r["latency_ms"]
    return [
        r["transport"], r["subscribers"], r["codec"], f"{100 * r['delivered_ratio']:.2f}",
        f"{r['updates_per_s']:,.0f}", lat["p50"], lat["p99"], lat["max"], r["server_cpu_pct"],
        r["server_cpu_us_per_update"], r["bytes_per_update"], r["server_rss_per_connection_kb"],
        r["generator_cpu_pct"], r.get("other_cpu_pct", "-"),
        "yes" if r.get("passed") else "**no**",
    ]  # fmt: skip


def _timer_row(r: dict[str, Any]) -> list[Any] | None:
    if "latency_ms" not in r:
        return None
    lag = r.get("node_loop_lag_ms") or {}
    emit = r.get("node_emit_delay_ms") or {}
    write = r.get("node_ws_write_us_per_update")
    return [
        r["transport"], r["subscribers"], r["codec"], r["server_cpu_us_per_update"],
        "-" if write is None else write, r.get("node_encode_ms_per_tick") or "-",
        emit.get("p50", "-"), lag.get("p99", "-"), lag.get("max", "-"),
    ]  # fmt: skip


_TIMER_HEADER = [
    "transport", "N", "codec", "server CPU µs/update", "WebSocket write µs/update",
    "encode ms/tick", "bus -> emitted p50 ms", "loop lag p99 ms", "loop lag max ms",
]  # fmt: skip


_RUN_HEADER = [
    "transport", "N", "codec", "delivered %", "updates/s", "p50 ms", "p99 ms", "max ms",
    "server CPU %", "CPU µs/update", "bytes/update", "KB/conn", "generator CPU %",
    "other processes CPU %", "pass",
]  # fmt: skip


def _kernels(path: Path) -> list[str]:
    """A table of the pytest-benchmark kernels, when their JSON is beside the report."""
    if not path.exists():
        return []
    import json

    data = json.loads(path.read_text())
    rows = [
        [f"`{b['name']}`", b["group"], round(b["stats"]["median"] * 1e6, 2),
         round(b["stats"]["mean"] * 1e6, 2)]
        for b in data.get("benchmarks", [])
    ]  # fmt: skip
    return [
        "## Kernels (pytest-benchmark, benchmarks/test_fanout_assembly.py)",
        "",
        "Per tick at the node (encode every car once per codec and assemble one "
        "subscription's message) and per message at the load generator's clients, from "
        f"`{path.name}` ({data.get('datetime', '?')}):",
        "",
        _table(["benchmark", "group", "median µs", "mean µs"], rows),
        "",
    ]


def write_report(summary: dict[str, Any], plots: list[Path], path: Path) -> None:
    """Write the markdown report of a sweep."""

    default_codec = BroadcastConfig().default_codec
    m = machine()
    rule = summary["capacity_rule"]
    out: list[str] = [
        "# Fan-out benchmark: WebSocket vs long-polling",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by "
        "`slipstream bench fanout --sweep` (slipstream/app/bench/). Every figure below comes "
        "from the JSON files beside this report; rerun the commands to reproduce them.",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu']}, {m['cores']} cores (shared by the node, the load generators "
        "and anything else running: the 'other processes CPU %' column says how much of "
        "the machine other work took during each window, in % of one core)",
        f"- Memory: {m['memory_gb']} GiB; kernel {m['kernel']}; Python {m['python']}",
        f"- Open files per process: {m['open_files_limit']}",
        "- Packages: " + ", ".join(f"{k} {v}" for k, v in m["packages"].items()),
        "",
        "## Commands",
        "",
        "```bash",
        f"{summary.get('command') or 'slipstream bench fanout --sweep'}   # this report",
        "slipstream bench fanout --transport ws --subscribers 1000 --duration 20 --json ws.json",
        "slipstream bench fanout --transport poll --subscribers 1000 --duration 20 "
        "--json poll.json",
        "slipstream bench fanout --transport ws --subscribers 10000 --duration 10 --baseline "
        "--json ws-vs-baseline.json",
        "slipstream bench fanout --transport ws --subscribers 35000 --workers 2 "
        "--json whole-box.json",
        "```",
        "",
        "## What is measured",
        "",
        "One broadcast node process (the real `BroadcastServer`, in-process bus) is fed "
        "pre-computed 2 Hz frames of a simulated 40-car race (simulator kernel + downsample "
        "windows, computed before the run). Load-generator processes open N subscribers "
        "with lean raw-asyncio clients (RFC 6455 / HTTP/1.1 keep-alive). Each subscriber "
        "follows 2 cars, all channel groups, in codec "
        f"`{summary.get('steps_codec', default_codec)}` (the steps) or the codec named "
        "(the codec table). A run measures a window of "
        f"{summary['duration_s']:g} s of ticks announced before it starts: delivered = tick "
        "messages of the window decoded by subscribers (expected: N per tick); latency = "
        "decode time at the client minus the node's emission time (`ts` in the tick "
        "message, same wall clock); server CPU from /proc/PID/stat over the window; memory "
        "per connection = (RSS with N connected - RSS before) / N; bytes per update = bytes "
        "received per tick message (WebSocket frame headers; HTTP status line, headers and "
        "body) plus, for long-poll, the request; node loop lag = how late the node's "
        "event loop woke up for each tick's feed (a busy loop delays everything, "
        "including the emission timestamps). The node's replay ring is filled (240 "
        "ticks) before the baseline RSS is read. A step passes with p99 <= "
        f"{rule['max_p99_ms']:g} ms, delivery >= {100 * rule['min_delivered_ratio']:g} % and "
        f"updates/s >= {100 * rule.get('min_realtime_ratio', 0):g} % of N x 2 Hz (the node "
        "keeps up with real time; latency from emission alone would hide a node that emits "
        "late); "
        "the sweep stops a transport at its first failing step.",
        "",
        "## Headline",
        "",
        *headline(summary, default_codec),
        "",
        "## Goals",
        "",
        _table(
            ["goal", "target", "measured", "verdict"],
            [list(g) for g in goals(summary, default_codec)],
        ),
        "",
        "## Capacity (one node process, 2 Hz)",
        "",
        _table(
            ["transport", "capacity (largest passing N)", "first failing N", "why"],
            [
                [t, c["capacity"], c["first_failure"] or "-", c["failure_reason"] or "-"]
                for t, c in summary["capacities"].items()
            ],
        ),
        "",
        "## Steps",
        "",
        _table(_RUN_HEADER, [_run_row(r) for r in summary["steps"]]),
        "",
        *report_section(summary),
        "## The node's own timers (no profiler)",
        "",
        "Wall-clock timers of the node itself. WebSocket write = time inside the node's "
        "synchronous `broadcast()` loop per delivered update (frame, `transport.write`, the "
        "socket send); encode = encoding and assembling a tick's WebSocket messages; bus -> "
        "emitted = frames on the bus until the tick is emitted; loop lag = how late the "
        "node's event loop woke for the feed. Being wall time, they include any time the "
        "node waited for a core while other processes ran (see 'other processes CPU %').",
        "",
        _table(_TIMER_HEADER, [row for r in summary["steps"] if (row := _timer_row(r))]),
        "",
        "## Bytes per update by codec (smallest step)",
        "",
        _table(_RUN_HEADER, [_run_row(r) for r in summary["codecs"]]),
        "",
    ]
    for name in (p.name for p in plots):
        out += [f"![{name}]({name})", ""]
    for transport, prof in summary["profiles"].items():
        out += [
            f"## Where the time goes: {transport} at N={prof['subscribers']} (cProfile)",
            "",
            *([prof["note"], ""] if prof.get("note") else []),
            f"Busy {prof['busy_s']} s and idle (waiting in epoll) {prof['idle_s']} s over "
            f"{prof['run'].get('window_s', '?')} s. Own time of the busy part by category "
            "(cProfile slows Python code down, so read the shares, not absolute figures):",
            "",
            _table(
                ["category", "own time %"],
                [[c["category"], c["own_pct"]] for c in prof["categories"]],
            ),
            "",
            _table(
                ["function", "calls", "own time %", "cumulative s"],
                [
                    [f"`{f['function']}`", f["calls"], f["own_pct"], f["cumulative_s"]]
                    for f in prof["functions"]
                ],
            ),
            "",
        ]
    out += _kernels(path.parent / "fanout_kernels.json")
    out += [
        "## Caveats",
        "",
        "- Loopback on one 2-core machine: the load generators share the CPU with the node "
        "(their CPU is reported), so absolute capacities are lower bounds.",
        "- The long-poll client sends a minimal request (~100 bytes); a browser adds several "
        "hundred bytes of headers per poll, so real long-poll traffic is larger.",
        "- Bytes exclude TCP/IP headers; RSS excludes kernel socket buffers.",
        "",
    ]
    path.write_text("\n".join(out))
