"""Figures of a run: the pure arithmetic, and /proc readings of a real process."""

from __future__ import annotations

import os
from array import array
from typing import Any

import pytest

from slipstream.app.bench.stats import (
    Capacity,
    latency_ms,
    machine_busy_s,
    meets,
    proc_sample,
    summarise,
)


def _gen(delivered: int, latencies: list[int], down: int, up: int = 0) -> dict[str, Any]:
    return {
        "delivered": delivered, "bytes_down": down, "bytes_up": up, "connected": 10,
        "failed": 0, "closed": 0, "latencies_us": array("q", latencies).tobytes(), "errors": [],
    }  # fmt: skip


def test_latency_percentiles_in_ms() -> None:
    values = list(range(1000, 101_000, 1000))  # 1..100 ms
    got = latency_ms(values)
    assert got == {"p50": 50.5, "p99": 99.01, "max": 100.0}
    assert latency_ms([]) == {"p50": None, "p99": None, "max": None}


def test_summarise_combines_generators() -> None:
    result = summarise(
        transport="ws",
        subscribers=20,
        window_ticks=10,
        window_s=5.0,
        generators=[_gen(100, [1000] * 100, 100_000), _gen(99, [3000] * 99, 99_000, 990)],
        server_cpu_s=0.5,
        generator_cpu_s=1.0,
        rss_baseline_bytes=50 * 2**20,
        rss_connected_bytes=50 * 2**20 + 20 * 30 * 1024,
        emit_delays_ms=[1.0, 3.0],
        loop_lags_ms=[0.0, 0.0, 250.0],
        machine_busy_s=2.0,
    )
    assert result["delivered_updates"] == 199 and result["expected_updates"] == 200
    assert result["delivered_ratio"] == 0.995
    assert result["updates_per_s"] == 39.8
    assert result["latency_ms"]["p50"] == 1.0 and result["latency_ms"]["max"] == 3.0
    assert result["server_cpu_pct"] == 10.0
    assert result["server_cpu_us_per_update"] == round(0.5e6 / 199, 2)
    assert result["bytes_per_update"] == round((199_000 + 990) / 199, 1)
    assert result["bytes_up_per_update"] == round(990 / 199, 1)
    assert result["server_rss_per_connection_kb"] == 30.0
    assert result["generator_cpu_pct"] == 20.0
    assert result["connected"] == 20 and result["generator_processes"] == 2
    assert result["node_emit_delay_ms"]["p50"] == 2.0
    assert result["node_loop_lag_ms"]["max"] == 250.0
    assert result["other_cpu_pct"] == 10.0  # (2.0 - 0.5 - 1.0) s over 5 s


def test_summarise_checks_arguments() -> None:
    with pytest.raises(ValueError, match="positive"):
        summarise(
            transport="ws", subscribers=0, window_ticks=1, window_s=1.0, generators=[],
            server_cpu_s=0, generator_cpu_s=0, rss_baseline_bytes=0, rss_connected_bytes=0,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("p99", "ratio", "rate", "passes"),
    [
        (999.0, 0.99, 200.0, True),
        (1001.0, 1.0, 200.0, False),
        (10.0, 0.98, 200.0, False),
        (None, 0.0, 200.0, False),
        (10.0, 1.0, 189.0, False),  # 100 subscribers at 2 Hz: 200/s; 189/s is behind
    ],
)
def test_pass_mark(p99: float | None, ratio: float, rate: float, passes: bool) -> None:
    result = {
        "latency_ms": {"p99": p99}, "delivered_ratio": ratio, "updates_per_s": rate,
        "subscribers": 100,
    }  # fmt: skip
    assert meets(result, Capacity(1000.0, 0.99, 0.95)) is passes
    assert not meets({"error": "timed out"}, Capacity())


def test_proc_sample_reads_this_process() -> None:
    before = proc_sample(os.getpid())
    sum(i * i for i in range(2_000_000))  # burn some CPU
    after = proc_sample(os.getpid())
    assert after.cpu_s > before.cpu_s
    assert 10 * 2**20 < after.rss_bytes < 10 * 2**30
    with pytest.raises(OSError):
        proc_sample(2**22 + 12345)
    assert machine_busy_s() >= after.cpu_s
