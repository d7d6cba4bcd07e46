"""The node beside the bare ``websockets.broadcast()`` baseline, in one sitting.

:func:`run_with_baseline` runs the same measurement twice, one after the
other -- the broadcast node, then the baseline broadcaster of
:mod:`slipstream.bench.baseline` -- with the same race, subscription, load
generators and window, and returns the node's figures with the baseline's
under ``baseline``, the run order under ``order`` and the node's figures as
ratios to the baseline's under ``ratios`` (below 1 = the node uses less /
is faster, for CPU, latency and memory; above 1 = it delivers more).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from slipstream.bench.fanout import FanoutConfig, Progress, prepare_race, run_fanout

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
