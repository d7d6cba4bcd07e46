"""Figures of a fan-out run: /proc readings and the pure arithmetic of the result.

:func:`summarise` turns what the orchestrator collected (generator results,
CPU and RSS readings, the window) into the JSON figures of a run; it does no
I/O, so it is unit-tested on hand-made inputs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "Capacity",
    "ProcSample",
    "latency_ms",
    "machine_busy_s",
    "meets",
    "proc_sample",
    "realtime_ratio",
    "summarise",
]

_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class ProcSample:
    """CPU time and resident memory of a process at one moment.

    Attributes:
        cpu_s: User + system CPU time since the process started.
        rss_bytes: Resident set size.
    """

    cpu_s: float
    rss_bytes: int


def proc_sample(pid: int) -> ProcSample:
    """Read ``/proc/PID/stat`` and ``/proc/PID/status``.

    Raises:
        OSError: The process does not exist (any more).
    """
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        stat = f.read()
    # Fields after the command name (which may hold spaces) start at field 3.
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / _CLK_TCK
    rss = 0
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
                break
    return ProcSample(cpu_s, rss)


def machine_busy_s() -> float:
    """CPU time all cores have spent busy since boot (``/proc/stat``, not idle or iowait)."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    # Guest time is already counted in user time.
    return (sum(fields[:8]) - idle) / _CLK_TCK


def latency_ms(latencies_us: Sequence[int] | np.ndarray[Any, Any]) -> dict[str, float | None]:
    """p50, p99 and max of latencies in microseconds, as milliseconds (None when empty)."""
    values = np.asarray(latencies_us, dtype=np.float64)
    if values.size == 0:
        return {"p50": None, "p99": None, "max": None}
    p50, p99 = np.percentile(values, [50, 99])
    return {
        "p50": round(float(p50) / 1000, 3),
        "p99": round(float(p99) / 1000, 3),
        "max": round(float(values.max()) / 1000, 3),
    }


@dataclass(frozen=True, slots=True)
class Capacity:
    """The pass mark of a step of the sweep.

    Attributes:
        max_p99_ms: Highest p99 delivery latency.
        min_delivered_ratio: Lowest share of expected updates delivered.
        min_realtime_ratio: Lowest delivered updates/s as a share of
            subscribers x 2 Hz: a node that cannot emit ticks at 2 Hz stretches
            the window (its feed runs late), which latency from emission hides.
    """

    max_p99_ms: float = 1000.0
    min_delivered_ratio: float = 0.99
    min_realtime_ratio: float = 0.95


def realtime_ratio(result: dict[str, Any]) -> float:
    """Delivered updates/s over subscribers x 2 Hz."""
    return float(result["updates_per_s"]) / (2.0 * int(result["subscribers"]))


def meets(result: dict[str, Any], capacity: Capacity) -> bool:
    """Whether a run's figures pass ``capacity``."""
    if "latency_ms" not in result:
        return False
    p99 = result["latency_ms"]["p99"]
    return (
        p99 is not None
        and p99 <= capacity.max_p99_ms
        and result["delivered_ratio"] >= capacity.min_delivered_ratio
        and realtime_ratio(result) >= capacity.min_realtime_ratio
    )


def summarise(
    *,
    transport: str,
    subscribers: int,
    window_ticks: int,
    window_s: float,
    generators: Sequence[dict[str, Any]],
    server_cpu_s: float,
    generator_cpu_s: float,
    rss_baseline_bytes: int,
    rss_connected_bytes: int,
    emit_delays_ms: Sequence[float] = (),
    loop_lags_ms: Sequence[float] = (),
    machine_busy_s: float | None = None,
) -> dict[str, Any]:
    """The figures of one run.

    Args:
        transport: ``ws`` or ``poll``.
        subscribers: Subscribers asked for (the delivery ratio's denominator).
        window_ticks: Ticks in the measurement window.
        window_s: Wall time of the window.
        generators: Each generator's result (see ``GeneratorResult``).
        server_cpu_s: Server CPU time over the window.
        generator_cpu_s: CPU time of all generators over the window.
        rss_baseline_bytes: Server RSS before any subscriber connected.
        rss_connected_bytes: Server RSS with every subscriber connected.
        emit_delays_ms: Per window tick, its frames on the bus -> the node emitting it.
        loop_lags_ms: Per window tick, how late the feed ran against its schedule
            (the node's event-loop lag).
        machine_busy_s: CPU time of the whole machine over the window; what
            neither the node nor the generators used is reported as
            ``other_cpu_pct`` (other processes competing for the cores).

    Raises:
        ValueError: Non-positive subscribers, window or generators missing.
    """
    if subscribers <= 0 or window_ticks <= 0 or window_s <= 0:
        raise ValueError("subscribers, window_ticks and window_s must be positive")
    delivered = sum(int(g["delivered"]) for g in generators)
    bytes_down = sum(int(g["bytes_down"]) for g in generators)
    bytes_up = sum(int(g["bytes_up"]) for g in generators)
    latencies = np.concatenate(
        [np.frombuffer(g["latencies_us"], dtype=np.int64) for g in generators]
        or [np.zeros(0, dtype=np.int64)]
    )
    expected = subscribers * window_ticks
    per_update = max(delivered, 1)
    errors = [e for g in generators for e in g["errors"]]
    return {
        "transport": transport,
        "subscribers": subscribers,
        "connected": sum(int(g["connected"]) for g in generators),
        "failed_connections": sum(int(g["failed"]) for g in generators),
        "closed_mid_run": sum(int(g["closed"]) for g in generators),
        "window_ticks": window_ticks,
        "window_s": round(window_s, 3),
        "expected_updates": expected,
        "delivered_updates": delivered,
        "delivered_ratio": round(delivered / expected, 5),
        "updates_per_s": round(delivered / window_s, 1),
        "latency_ms": latency_ms(latencies),
        "server_cpu_pct": round(100 * server_cpu_s / window_s, 1),
        "server_cpu_us_per_update": round(1e6 * server_cpu_s / per_update, 2),
        "bytes_per_update": round((bytes_down + bytes_up) / per_update, 1),
        "bytes_down_per_update": round(bytes_down / per_update, 1),
        "bytes_up_per_update": round(bytes_up / per_update, 1),
        "server_rss_baseline_mb": round(rss_baseline_bytes / 2**20, 1),
        "server_rss_connected_mb": round(rss_connected_bytes / 2**20, 1),
        "server_rss_per_connection_kb": round(
            (rss_connected_bytes - rss_baseline_bytes) / subscribers / 1024, 2
        ),
        "generator_cpu_pct": round(100 * generator_cpu_s / window_s, 1),
        "other_cpu_pct": None
        if machine_busy_s is None
        else round(max(0.0, 100 * (machine_busy_s - server_cpu_s - generator_cpu_s) / window_s), 1),
        "node_emit_delay_ms": latency_ms(np.asarray(emit_delays_ms, dtype=np.float64) * 1000),
        "node_loop_lag_ms": latency_ms(np.asarray(loop_lags_ms, dtype=np.float64) * 1000),
        "generator_processes": len(generators),
        "errors": errors[:10],
    }
