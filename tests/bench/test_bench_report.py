"""Plots, REPORT.md and the goal verdicts, from a hand-made sweep summary."""

from __future__ import annotations

import cProfile
import json
from pathlib import Path
from typing import Any

from slipstream.app.bench.plots import make_plots
from slipstream.app.bench.report import goals, headline, machine, write_report
from slipstream.app.bench.sweep import profile_summary


def _run(
    transport: str,
    n: int,
    us: float,
    p99: float,
    codec: str = "full",
    size: float = 1400.0,
    kb: float = 15.0,
    passed: bool = True,
) -> dict[str, Any]:
    return {
        "transport": transport, "subscribers": n, "codec": codec, "delivered_ratio": 1.0,
        "updates_per_s": 2.0 * n, "latency_ms": {"p50": p99 / 3, "p99": p99, "max": p99 * 1.2},
        "server_cpu_pct": us * 2 * n / 1e4, "server_cpu_us_per_update": us,
        "bytes_per_update": size, "server_rss_per_connection_kb": kb,
        "generator_cpu_pct": 10.0, "passed": passed, "node_encode_ms_per_tick": 1.5,
        "node_ws_write_us_per_update": us / 2 if transport == "ws" else None,
        "node_emit_delay_ms": {"p50": 0.7}, "node_loop_lag_ms": {"p99": 3.0, "max": 4.0},
    }  # fmt: skip


def _summary() -> dict[str, Any]:
    return {
        "command": "slipstream bench fanout --sweep",
        "capacity_rule": {"max_p99_ms": 1000.0, "min_delivered_ratio": 0.99},
        "duration_s": 10.0,
        "steps": [
            _run("ws", 1000, 11.0, 20.0), _run("ws", 19000, 10.0, 200.0),
            _run("poll", 1000, 90.0, 60.0), _run("poll", 5000, 95.0, 3000.0, passed=False),
            {"transport": "poll", "subscribers": 19000, "codec": "full", "error": "timed out",
             "passed": False},
        ],
        "capacities": {
            "ws": {"capacity": 19000, "first_failure": None, "failure_reason": None},
            "poll": {"capacity": 1000, "first_failure": 5000, "failure_reason": "p99 3000 ms"},
        },
        "codecs": [
            _run("ws", 100, 30.0, 5.0, codec="full", size=1366.0),
            _run("ws", 100, 30.0, 5.0, codec="sparse", size=130.0),
            _run("poll", 100, 90.0, 5.0, codec="full", size=1735.0),
        ],
        "profiles": {},
    }  # fmt: skip


def test_goal_verdicts() -> None:
    rows = {row[0]: row for row in goals(_summary(), "sparse")}
    cpu_ratio = rows["WebSocket server CPU per update vs long-poll's"]
    assert cpu_ratio[2].startswith("1/8.2 at N=1000") and cpu_ratio[3] == "met"
    assert rows["WebSocket server CPU per delivered update"][3] == "met"
    assert rows["Server memory per WebSocket connection"][3] == "met"
    assert rows["One node process near the socket cap (~19,990) at 2 Hz"][3] == "met"
    size = rows["Bytes per update, WebSocket + sparse vs long-poll + full"]
    assert size[2].startswith("1/13.3") and size[3] == "met"
    # With the full codec as the default the bytes goal is not met.
    full = {row[0]: row for row in goals(_summary(), "full")}
    assert full["Bytes per update, WebSocket + full vs long-poll + full"][3] == "not met"


def test_plots_and_report_are_written(tmp_path: Path) -> None:
    summary = _summary()
    with cProfile.Profile() as prof:
        sum(i * i for i in range(100_000))
    prof.dump_stats(tmp_path / "p.pstats")
    profile = profile_summary(tmp_path / "p.pstats")
    assert profile["functions"] and abs(sum(c["own_pct"] for c in profile["categories"]) - 100) < 1
    summary["profiles"]["ws"] = {"subscribers": 19000, "run": {"window_s": 5.0}, **profile}
    plots = make_plots(summary, tmp_path)
    assert [p.name for p in plots] == ["fanout-latency.png", "fanout-cpu.png", "fanout-bytes.png"]
    for plot in plots:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    kernels = {
        "datetime": "2026-11-24T12:00:00",
        "benchmarks": [
            {"name": "test_ws_client_per_message[full]", "group": "fanout-client-message",
             "stats": {"median": 4.0e-6, "mean": 5.5e-6}},
        ],
    }  # fmt: skip
    (tmp_path / "fanout_kernels.json").write_text(json.dumps(kernels))
    write_report(summary, plots, tmp_path / "REPORT.md")
    text = (tmp_path / "REPORT.md").read_text()
    assert "## Machine" in text and machine()["cpu"] in text
    assert "slipstream bench fanout --sweep" in text
    assert "| poll | 1000 | 5000 | p99 3000 ms |" in text
    assert "error: timed out" in text
    assert "![fanout-cpu.png](fanout-cpu.png)" in text
    assert "## Where the time goes: ws at N=19000" in text
    assert "| `test_ws_client_per_message[full]` | fanout-client-message | 4.0 | 5.5 |" in text
    assert "| ws | 19000 | full | 10.0 | 5.0 | 1.5 | 0.7 | 3.0 | 4.0 |" in text
    assert "| poll | 1000 | full | 90.0 | - | 1.5 |" in text


def test_headline_quotes_capacity_cpu_and_bytes() -> None:
    lines = headline(_summary(), "sparse")
    text = "\n".join(lines)
    assert "**19,000 WebSocket subscribers** (every step passed)" in text
    assert "**1,000 long-poll subscribers**" in text
    assert "**8.2x the CPU per update**" in text
    assert "WebSocket + sparse (the node's default codec): 130 B = **1/13.3**" in text
    assert "WebSocket + full: 1366 B = **1/1.3**" in text
    assert "long-poll adds 369 B per update over WebSocket with full" in text


def _with_baseline(summary: dict[str, Any]) -> dict[str, Any]:
    from slipstream.app.bench.compare import ratios

    for step, base_us in zip(summary["steps"][:2], (10.0, 16.0), strict=True):
        base = _run("ws", step["subscribers"], base_us, step["latency_ms"]["p99"] * 2, kb=30.0)
        base["server"] = {"loop": "asyncio", "workers": 1}
        step["server"] = {"loop": "uvloop", "workers": 1}
        step["baseline"], step["order"] = base, ["slipstream", "baseline"]
        step["ratios"] = ratios(step, base)
    return summary


def test_report_sets_each_ws_step_beside_its_baseline(tmp_path: Path) -> None:
    summary = _with_baseline(_summary())
    rows = {row[0]: row for row in goals(summary, "sparse")}
    goal = rows[
        "WebSocket server CPU per update vs a bare websockets.broadcast() server, same sitting"
    ]
    assert goal[1:] == ("<= 0.75x", "1.10x at N=1000; 0.62x at N=19000", "met at some N")
    write_report(summary, [], tmp_path / "REPORT.md")
    text = (tmp_path / "REPORT.md").read_text()
    assert "## Beside a bare websockets.broadcast() server (same sitting)" in text
    assert (
        "| 19000 | uvloop / 1 | asyncio | 10.00 / 16.00 / 0.62 | 66.7 / 133.3 / 0.50 | "
        "200.0 / 400.0 / 0.50 | 100.00 / 100.00 / 1.000 | 38,000 / 38,000 / 1.00 | "
        "15.0 / 30.0 / 0.50 | slipstream then baseline |"
    ) in text
    # Without baseline runs, neither the goal nor the section appears.
    plain = tmp_path / "plain.md"
    write_report(_summary(), [], plain)
    assert "websockets.broadcast" not in plain.read_text()
