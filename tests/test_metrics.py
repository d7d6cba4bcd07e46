"""slipstream/metrics.py: the registry's API on prometheus_client, and its multiprocess mode."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from broadcast.metrics import NodeMetrics, TickLag
from broadcast.ticks import TickData
from slipstream.metrics import Registry

ROOT = Path(__file__).resolve().parents[1]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_counters_gauges_histograms_and_their_labels() -> None:
    r = Registry()
    dlq = r.counter("slipstream_dlq_records_total", "Dead letters", ("reason",))
    dlq.init(reason="truncated")
    dlq.inc(2, reason="bad_car")
    subscribers = r.gauge("slipstream_subscribers", "Fans")
    fans = [1, 2]
    subscribers.set_function(lambda: float(len(fans)), transport="ws")
    lag = r.histogram("slipstream_x_seconds", "X", buckets=(0.1, 1.0))
    lag.observe(0.5)
    lag.observe(5.0)
    r.counter("slipstream_quiet_total", "Never counted", labels=())
    got = samples(r.render())
    assert got["slipstream_dlq_records_total", (("reason", "truncated"),)] == 0
    assert got["slipstream_dlq_records_total", (("reason", "bad_car"),)] == 2
    assert got["slipstream_subscribers", (("transport", "ws"),)] == 2
    fans.append(3)  # a callback is read at each scrape
    assert samples(r.render())["slipstream_subscribers", (("transport", "ws"),)] == 3
    assert got["slipstream_x_seconds_bucket", (("le", "1.0"),)] == 1
    assert got["slipstream_x_seconds_count", ()] == 2 and lag.count() == 2 and lag.total() == 5.5
    assert got["slipstream_quiet_total", ()] == 0, "declared without labels: exported at 0"
    for name in ("process_open_fds", "process_max_fds", "process_cpu_seconds_total"):
        assert (name, ()) in got
    assert any(name == "slipstream_build_info" for name, _ in got)
    assert dlq.value(reason="bad_car") == 2 and dlq.value(reason="never") == 0
    # The same name gives the same metric; label names are fixed once known.
    assert r.counter("slipstream_dlq_records_total", "") is dlq
    with pytest.raises(ValueError, match="labels"):
        dlq.inc(1, code="x")
    with pytest.raises(ValueError, match="already registered as a counter"):
        r.gauge("slipstream_dlq_records_total", "")
    with pytest.raises(ValueError, match="share the name"):
        r.gauge("slipstream_dlq_records", "a counter's family")
    with pytest.raises(ValueError, match="_total"):
        r.counter("slipstream_frames", "")
    with pytest.raises(ValueError, match="only goes up"):
        dlq.inc(-1, reason="x")


def test_node_metrics_declare_the_histograms_and_the_tick_lag() -> None:
    r = Registry()
    node = NodeMetrics(r)
    got = samples(r.render())
    for name in ("tick_lag", "fanout", "encode", "resume"):
        assert (f"slipstream_broadcast_{name}_seconds_count", ()) in got
    assert got["slipstream_slow_fan_disconnects_total", ()] == 0
    assert got["slipstream_bytes_sent_total", (("transport", "sse"),)] == 0
    lag = TickLag(max_pending=2)
    lag.frame("R", 1, 10_000)
    lag.frame("R", 1, 10_400)  # the tick's newest frame counts
    lag.frame("R", 2, 10_500)
    lag.frame("R", 3, 10_600)  # evicts tick 1, the oldest
    assert lag.emitted([_tick("R", 1), _tick("R", 2)], now_s=11.0) == [pytest.approx(0.5)]
    node.frame_read("R", 5, 20_000)
    node.ticks_emitted([_tick("R", 5)], now_s=20.25)
    assert node.tick_lag.count() == 1 and node.tick_lag.total() == pytest.approx(0.25)


def _tick(race: str, tick: int) -> TickData:
    import numpy as np

    empty = np.zeros(0, dtype=np.int64)
    q = np.zeros((0, 1), dtype=np.int32)
    return TickData(race, tick, empty, q, empty, q, empty, q, empty, empty, ())


def test_multiprocess_mode_sums_processes_and_forgets_dead_ones_gauges(tmp_path: Path) -> None:
    # Multiprocess mode is chosen once per process: run each "worker" as its own.
    worker = textwrap.dedent(
        """
        import sys
        from slipstream.metrics import Registry
        r = Registry(multiprocess_dir=sys.argv[1])
        r.counter("slipstream_ticks_total", "Ticks", labels=()).inc(int(sys.argv[2]))
        fans = r.gauge("slipstream_subscribers", "Fans")
        fans.set_function(lambda: float(sys.argv[2]), transport="ws")
        r.histogram("slipstream_lag_seconds", "Lag", buckets=(1.0,), labels=()).observe(0.5)
        r.refresh()
        print(__import__("os").getpid())
        """
    )
    from slipstream.metrics import forget_process, prepare_multiprocess_dir

    directory = prepare_multiprocess_dir(tmp_path / "node")
    pids = []
    for count in ("3", "4"):
        done = subprocess.run(
            [sys.executable, "-c", worker, str(directory), count],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        pids.append(int(done.stdout))
    render = textwrap.dedent(
        """
        import sys
        from slipstream.metrics import Registry
        sys.stdout.write(Registry(multiprocess_dir=sys.argv[1]).render())
        """
    )

    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        done = subprocess.run(
            [sys.executable, "-c", render, str(directory)],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        return samples(done.stdout)

    got = scrape()
    assert got["slipstream_ticks_total", ()] == 7
    assert got["slipstream_subscribers", (("transport", "ws"),)] == 7
    assert got["slipstream_lag_seconds_count", ()] == 2
    assert {dict(k)["pid"] for n, k in got if n == "process_open_fds"} >= {str(p) for p in pids}
    forget_process(pids[0], directory)
    got = scrape()
    assert got["slipstream_subscribers", (("transport", "ws"),)] == 4, "a dead worker's fans"
    assert got["slipstream_ticks_total", ()] == 7, "its counts stay in the totals"
    assert prepare_multiprocess_dir(directory) == directory and not list(directory.iterdir())
