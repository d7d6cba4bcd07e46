"""The node beside the bare ``websockets.broadcast()`` baseline, in one sitting.

:func:`run_with_baseline` runs the same measurement twice, one after the
other -- the broadcast node, then the baseline broadcaster of
:mod:`slipstream.app.bench.baseline` -- with the same race, subscription, load
generators and window, and returns the node's figures with the baseline's
under ``baseline``, the run order under ``order`` and the node's figures as
ratios to the baseline's under ``ratios`` (below 1 = the node uses less /
is faster, for CPU, latency and memory; above 1 = it delivers more).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from slipstream.app.bench.fanout import FanoutConfig, Progress, prepare_race, run_fanout

__all__ = ["RATIOS", "compared_rows", "ratios", "run_with_baseline"]

#: ``(name in "ratios", path to the figure in a run's result)``.
RATIOS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("server_cpu_us_per_update", ("server_cpu_us_per_update",)),
    ("latency_p50_ms", ("latency_ms", "p50")),
    ("latency_p99_ms", ("latency_ms", "p99")),
    ("delivered_ratio", ("delivered_ratio",)),
    ("updates_per_s", ("updates_per_s",)),
    ("server_rss_per_connection_kb", ("server_rss_per_connection_kb",)),
)


def _figure(result: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = result
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return float(value) if isinstance(value, int | float) else None


def ratios(node: dict[str, Any], baseline: dict[str, Any]) -> dict[str, float | None]:
    """The node's figures over the baseline's (None where either is missing or the base is 0)."""
    out: dict[str, float | None] = {}
    for name, path in RATIOS:
        a, b = _figure(node, path), _figure(baseline, path)
        out[name] = round(a / b, 3) if a is not None and b else None
    return out


def run_with_baseline(
    cfg: FanoutConfig,
    baseline_loop: str = "asyncio",
    race_path: Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run the node, then the baseline, with the same load; returns the combined figures.

    Args:
        cfg: The node's run (WebSocket).
        baseline_loop: Event loop of the baseline process.
        race_path: Pre-computed race (None: simulate or reuse the cached one).
        progress: Progress lines go here.

    Raises:
        BenchError: Either run failed.
        ValueError: ``cfg`` is not a WebSocket run of the node.
    """
    if cfg.server != "slipstream" or cfg.transport != "ws":
        raise ValueError("the baseline is compared with a WebSocket run of the node")
    base_cfg = dataclasses.replace(cfg, server="baseline", workers=1, loop=baseline_loop,
                                   profile_path=None)  # fmt: skip
    if race_path is None:
        longest = max(cfg.race_seconds(), base_cfg.race_seconds())
        race_path = prepare_race(cfg.race_cars, longest, cfg.seed, progress)
    node = run_fanout(cfg, race_path, progress)
    baseline = run_fanout(base_cfg, race_path, progress)
    node["baseline"] = baseline
    node["order"] = ["slipstream", "baseline"]
    node["ratios"] = ratios(node, baseline)
    return node


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def compared_rows(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """``(figure, node, baseline, ratio)`` rows of a result of :func:`run_with_baseline`."""
    base = result["baseline"]
    r = result["ratios"]
    rows = [("", "slipstream", "websockets.broadcast", "ratio")]
    rows.append(("event loop", result["server"]["loop"], base["server"]["loop"], ""))
    rows.append(("server processes", str(result["server"]["workers"]),
                 str(base["server"]["workers"]), ""))  # fmt: skip
    for name, path in RATIOS:
        a, b = _figure(result, path), _figure(base, path)
        digits = 0 if name == "updates_per_s" else 4 if name == "delivered_ratio" else 2
        rows.append((name, _fmt(a, digits), _fmt(b, digits), _fmt(r[name], 3)))
    for name in ("bytes_per_update", "server_cpu_pct", "other_cpu_pct", "generator_cpu_pct"):
        a, b = _figure(result, (name,)), _figure(base, (name,))
        rows.append((name, _fmt(a, 1), _fmt(b, 1), ""))
    return rows


def _compared_steps(summary: dict[str, Any]) -> list[dict[str, Any]]:
    steps = [r for r in summary.get("steps", []) if "baseline" in r and "ratios" in r]
    return sorted(steps, key=lambda r: r["subscribers"])


def _cell(result: dict[str, Any], name: str, path: tuple[str, ...], digits: int) -> str:
    a, b = _figure(result, path), _figure(result["baseline"], path)
    return f"{_fmt(a, digits)} / {_fmt(b, digits)} / {_fmt(result['ratios'][name], 2)}"


def goal_row(summary: dict[str, Any]) -> tuple[str, str, str, str] | None:
    """The goal row "server CPU per update <= 0.75x the bare broadcaster's" (None: no baseline)."""
    steps = _compared_steps(summary)
    if not steps:
        return None
    parts, met = [], []
    for r in steps:
        ratio = r["ratios"]["server_cpu_us_per_update"]
        parts.append(f"{_fmt(ratio, 2)}x at N={r['subscribers']}")
        met.append(ratio is not None and ratio <= 0.75)
    verdict = "met" if all(met) else "met at some N" if any(met) else "not met"
    return ("WebSocket server CPU per update vs a bare websockets.broadcast() server, "
            "same sitting", "<= 0.75x", "; ".join(parts), verdict)  # fmt: skip


def report_section(summary: dict[str, Any]) -> list[str]:
    """REPORT.md lines: every WebSocket step beside its baseline run (none without one)."""
    steps = _compared_steps(summary)
    if not steps:
        return []
    header = ["N", "node loop / processes", "baseline loop", "CPU µs/update", "p50 ms", "p99 ms",
              "delivered %", "updates/s", "KB/conn", "order"]  # fmt: skip
    rows = []
    for r in steps:
        ratio = r["ratios"]
        delivered = (f"{100 * r['delivered_ratio']:.2f} / "
                     f"{100 * r['baseline']['delivered_ratio']:.2f} / "
                     f"{_fmt(ratio['delivered_ratio'], 3)}")  # fmt: skip
        rows.append([
            r["subscribers"], f"{r['server']['loop']} / {r['server']['workers']}",
            r["baseline"]["server"]["loop"],
            _cell(r, "server_cpu_us_per_update", ("server_cpu_us_per_update",), 2),
            _cell(r, "latency_p50_ms", ("latency_ms", "p50"), 1),
            _cell(r, "latency_p99_ms", ("latency_ms", "p99"), 1), delivered,
            _cell(r, "updates_per_s", ("updates_per_s",), 0),
            _cell(r, "server_rss_per_connection_kb", ("server_rss_per_connection_kb",), 1),
            " then ".join(r.get("order", [])),
        ])  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return [
        "## Beside a bare websockets.broadcast() server (same sitting)",
        "",
        "Each WebSocket step ran twice, one run after the other with the same race, "
        "subscription, load generators and window: the node, then a bare "
        "`websockets.broadcast()` server (websockets' asyncio API, compression off, its own "
        "process) sending every 500 ms the bytes the node sends a live fan for that tick "
        "(built by the node's own tick assembler and encoder, `ts` = its emission time). "
        "Cells read node / baseline / node ÷ baseline.",
        "",
        *lines,
        "",
    ]
