"""The fan-out sweep: capacity per transport, bytes per codec, a profile at capacity.

:func:`run_sweep` steps subscribers up per transport and stops a transport at
the first step whose p99 latency or delivery fails the pass mark; then it
measures bytes per update of every codec on both transports at the smallest
step, profiles the node (cProfile) at each transport's capacity, and writes
one JSON per run, ``fanout-sweep.json``, the plots and ``REPORT.md``.
"""

from __future__ import annotations

import json
import pstats
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from slipstream.app.bench import BenchError
from slipstream.app.bench.compare import run_with_baseline
from slipstream.app.bench.fanout import (
    FanoutConfig,
    Progress,
    default_codec,
    prepare_race,
    run_fanout,
)
from slipstream.app.bench.plots import make_plots
from slipstream.app.bench.report import write_report
from slipstream.app.bench.stats import Capacity, meets, realtime_ratio
from slipstream.codecs import CODECS

__all__ = ["profile_summary", "run_sweep"]

_CODEC_RUN_S = 5.0
_IDLE = "event loop wait (idle)"
_PROFILE_RUN_S = 5.0


def _write(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


def _category(filename: str, name: str) -> str:
    """Where a profiled function's own time goes, in a few words."""
    if filename == "~":
        if "socket" in name or "send" in name or "write" in name:
            return "socket writes (kernel)"
        if "msgpack" in name or "pack" in name:
            return "msgpack"
        if "select" in name or "epoll" in name or "poll" in name:
            return _IDLE
        return "other built-ins"
    for marker, label in (
        ("/websockets/", "websockets (framing, broadcast)"),
        ("/aiohttp/", "aiohttp (HTTP, long-poll)"),
        ("/asyncio/", "asyncio (event loop, transports)"),
        ("/broadcast/", "broadcast node (hub, sessions, assembly)"),
        ("/slipstream/codecs/", "codecs"),
        ("/msgpack/", "msgpack"),
        ("/numpy/", "numpy"),
    ):
        if marker in filename:
            return label
    return "other Python"


def profile_summary(path: Path, top: int = 12) -> dict[str, Any]:
    """Top functions by own time and own time per category, from cProfile stats.

    Shares are of the node's busy time: the event loop's wait in ``epoll``
    is idle time and is reported apart (``idle_s``).
    """
    stats = pstats.Stats(str(path))
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    idle = sum(row[2] for key, row in table.items() if _category(key[0], key[2]) == _IDLE)
    busy = {key: row for key, row in table.items() if _category(key[0], key[2]) != _IDLE}
    total = sum(row[2] for row in busy.values()) or 1e-9
    rows = sorted(busy.items(), key=lambda item: item[1][2], reverse=True)
    functions = [
        {
            "function": f"{Path(filename).name}:{line}({name})" if filename != "~" else name,
            "calls": int(row[1]),
            "own_pct": round(100 * row[2] / total, 1),
            "cumulative_s": round(row[3], 3),
        }
        for (filename, line, name), row in rows[:top]
    ]
    categories: dict[str, float] = {}
    for (filename, _, name), row in busy.items():
        key = _category(filename, name)
        categories[key] = categories.get(key, 0.0) + row[2]
    shares = [
        {"category": k, "own_pct": round(100 * v / total, 1)}
        for k, v in sorted(categories.items(), key=lambda kv: -kv[1])
    ]
    return {
        "busy_s": round(total, 3),
        "idle_s": round(idle, 3),
        "functions": functions,
        "categories": shares,
    }


def _run(
    cfg: FanoutConfig,
    race: Path,
    say: Progress,
    capacity: Capacity,
    baseline_loop: str | None = None,
) -> dict[str, Any]:
    try:
        if baseline_loop is not None and cfg.transport == "ws":
            result = run_with_baseline(cfg, baseline_loop, race, say)
        else:
            result = run_fanout(cfg, race, say)
    except BenchError as exc:
        say(f"[{cfg.transport} N={cfg.subscribers}] failed: {exc}")
        result = {
            "transport": cfg.transport, "subscribers": cfg.subscribers,
            "codec": cfg.codec or cfg.node_codec or default_codec(), "error": str(exc),
        }  # fmt: skip
        result["passed"] = False
        return result
    result["passed"] = meets(result, capacity)
    return result


def run_sweep(
    base: FanoutConfig,
    steps: Sequence[int],
    transports: Sequence[str],
    duration_s: float,
    capacity: Capacity,
    out_dir: Path,
    say: Progress,
    baseline_loop: str | None = None,
) -> dict[str, Any]:
    """Run the sweep (see module doc); returns what ``fanout-sweep.json`` holds.

    With ``baseline_loop``, every WebSocket step also runs the bare
    ``websockets.broadcast()`` baseline on that loop (:mod:`slipstream.app.bench.compare`).
    """

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise BenchError(
            "the sweep draws plots with matplotlib: pip install matplotlib "
            "(it comes with the test extras: pip install -e '.[test]')"
        ) from None
    out_dir.mkdir(parents=True, exist_ok=True)
    longest = replace(base, subscribers=max(steps), duration_s=duration_s)
    race = prepare_race(base.race_cars, longest.race_seconds(), base.seed, say)
    steps_runs: list[dict[str, Any]] = []
    capacities: dict[str, dict[str, Any]] = {}
    for transport in transports:
        best: dict[str, Any] | None = None
        failed: dict[str, Any] | None = None
        for n in steps:
            cfg = replace(base, transport=transport, subscribers=n, duration_s=duration_s,
                          profile_path=None)  # fmt: skip
            result = _run(cfg, race, say, capacity, baseline_loop)
            _write(out_dir / f"fanout-{transport}-{n}.json", result)
            steps_runs.append(result)
            verdict = "passed" if result["passed"] else "FAILED"
            say(f"[{transport} N={n}] {verdict}")
            if not result["passed"]:
                failed = result
                break
            best = result
        capacities[transport] = {
            "capacity": best["subscribers"] if best else 0,
            "first_failure": failed["subscribers"] if failed else None,
            "failure_reason": _reason(failed, capacity) if failed else None,
        }
    codec_runs: list[dict[str, Any]] = []
    for codec in CODECS:
        for transport in transports:
            cfg = replace(base, transport=transport, subscribers=min(steps), codec=codec,
                          duration_s=min(duration_s, _CODEC_RUN_S), profile_path=None)  # fmt: skip
            result = _run(cfg, race, say, capacity)
            _write(out_dir / f"fanout-codec-{codec}-{transport}.json", result)
            codec_runs.append(result)
    profiles: dict[str, Any] = {}
    for transport in transports:
        n = capacities[transport]["capacity"]
        if not n:
            continue
        # Raw stats stay out of the results folder: the summary goes into the JSON.
        path = Path(tempfile.gettempdir()) / f"slipstream-bench-profile-{transport}-{n}.pstats"
        cfg = replace(base, transport=transport, subscribers=n, profile_path=str(path),
                      duration_s=min(duration_s, _PROFILE_RUN_S))  # fmt: skip
        result = _run(cfg, race, say, capacity)
        if path.exists():
            profiles[transport] = {
                "subscribers": n, "run": result, "stats_file": str(path), **profile_summary(path)
            }  # fmt: skip
    summary = {
        "command": " ".join(["slipstream", *sys.argv[1:]]),
        "capacity_rule": {},
        "duration_s": duration_s,
        "steps_codec": base.codec or base.node_codec or default_codec(),
        "steps": steps_runs,
        "capacities": capacities,
        "codecs": codec_runs,
        "profiles": profiles,
    }  # fmt: skip
    evaluate(summary, capacity)
    _write(out_dir / "fanout-sweep.json", summary)
    plots = make_plots(summary, out_dir)
    write_report(summary, plots, out_dir / "REPORT.md")
    say(f"wrote {out_dir / 'fanout-sweep.json'}, {len(plots)} plots and {out_dir / 'REPORT.md'}")
    return summary


def _reason(result: dict[str, Any], capacity: Capacity) -> str:
    if "error" in result:
        return str(result["error"])
    reasons = []
    p99 = result["latency_ms"]["p99"]
    if p99 is None or p99 > capacity.max_p99_ms:
        reasons.append(f"p99 {p99} ms > {capacity.max_p99_ms:g} ms")
    if result["delivered_ratio"] < capacity.min_delivered_ratio:
        reasons.append(
            f"delivered {100 * result['delivered_ratio']:.2f} % "
            f"< {100 * capacity.min_delivered_ratio:g} %"
        )
    ratio = realtime_ratio(result)
    if ratio < capacity.min_realtime_ratio:
        reasons.append(
            f"kept {100 * ratio:.0f} % of real time (updates/s vs N x 2 Hz) "
            f"< {100 * capacity.min_realtime_ratio:g} %"
        )
    return "; ".join(reasons)


def evaluate(summary: dict[str, Any], capacity: Capacity) -> None:
    """(Re)judge every step against ``capacity``: ``passed`` flags and capacities, in place.

    A transport's capacity is its last passing step before the first failing one.
    """
    summary["capacity_rule"] = {
        "max_p99_ms": capacity.max_p99_ms,
        "min_delivered_ratio": capacity.min_delivered_ratio,
        "min_realtime_ratio": capacity.min_realtime_ratio,
    }
    for run in summary["codecs"]:
        run["passed"] = meets(run, capacity)
    capacities: dict[str, dict[str, Any]] = {}
    for transport in dict.fromkeys(r["transport"] for r in summary["steps"]):
        runs = sorted(
            (r for r in summary["steps"] if r["transport"] == transport),
            key=lambda r: int(r["subscribers"]),
        )
        best: dict[str, Any] | None = None
        failed: dict[str, Any] | None = None
        for run in runs:
            run["passed"] = meets(run, capacity)
            if failed is None:
                if run["passed"]:
                    best = run
                else:
                    failed = run
        capacities[transport] = {
            "capacity": best["subscribers"] if best else 0,
            "first_failure": failed["subscribers"] if failed else None,
            "failure_reason": _reason(failed, capacity) if failed else None,
        }
    summary["capacities"] = capacities
