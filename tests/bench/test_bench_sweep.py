"""The sweep's control flow: steps, stop at the first failure, codec runs, profiles, files.

The runs themselves are replaced by a model of a node (figures from N), so this
checks the sweep's logic without starting processes; test_bench_cli runs real ones.
"""

from __future__ import annotations

import cProfile
import json
from pathlib import Path
from typing import Any

import pytest

from slipstream.app.bench import BenchError, sweep
from slipstream.app.bench.fanout import FanoutConfig
from slipstream.app.bench.stats import Capacity, meets

SIZES = {"full": 1400.0, "sparse": 400.0, "vcdiff": 900.0}


def _model(cfg: FanoutConfig, race: Path, say: Any) -> dict[str, Any]:
    """WebSocket copes with everything; long-poll's p99 passes 1 s beyond 1,000."""
    n = cfg.subscribers
    if cfg.transport == "poll" and n > 5000:
        raise BenchError("timed out while connecting")
    p99 = 50.0 if cfg.transport == "ws" else 0.5 * n
    if cfg.profile_path:
        with cProfile.Profile() as prof:
            sum(range(10_000))
        prof.dump_stats(cfg.profile_path)
    return {
        "transport": cfg.transport, "subscribers": n, "codec": cfg.codec or "sparse",
        "delivered_ratio": 1.0, "updates_per_s": 2.0 * n,
        "latency_ms": {"p50": p99 / 2, "p99": p99, "max": p99},
        "server_cpu_pct": 1.0, "server_cpu_us_per_update": 10.0, "window_s": 5.0,
        "bytes_per_update": SIZES.get(cfg.codec, 400.0),
        "server_rss_per_connection_kb": 15.0, "generator_cpu_pct": 1.0,
    }  # fmt: skip


def test_sweep_steps_until_failure_and_writes_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, int, str, bool]] = []

    def run(cfg: FanoutConfig, race: Path, say: Any) -> dict[str, Any]:
        calls.append((cfg.transport, cfg.subscribers, cfg.codec, bool(cfg.profile_path)))
        return _model(cfg, race, say)

    monkeypatch.setattr(sweep, "run_fanout", run)
    monkeypatch.setattr(sweep, "prepare_race", lambda *a, **k: tmp_path / "race.npz")
    said: list[str] = []
    summary = sweep.run_sweep(
        FanoutConfig(), (100, 1000, 5000, 10000), ("ws", "poll"), 5.0,
        Capacity(1000.0, 0.99), tmp_path, said.append,
    )  # fmt: skip
    steps = [(c[0], c[1]) for c in calls if not c[2] and not c[3]]
    assert steps == [("ws", 100), ("ws", 1000), ("ws", 5000), ("ws", 10000),
                     ("poll", 100), ("poll", 1000), ("poll", 5000)]  # fmt: skip
    assert summary["capacities"]["ws"] == {
        "capacity": 10000, "first_failure": None, "failure_reason": None
    }  # fmt: skip
    poll = summary["capacities"]["poll"]
    assert poll["capacity"] == 1000 and poll["first_failure"] == 5000
    assert poll["failure_reason"] == "p99 2500.0 ms > 1000 ms"
    codec_runs = {(c[0], c[2]) for c in calls if c[2]}
    assert codec_runs == {(t, c) for t in ("ws", "poll") for c in ("full", "sparse", "vcdiff")}
    assert all(c[1] == 100 for c in calls if c[2])
    assert {(c[0], c[1]) for c in calls if c[3]} == {("ws", 10000), ("poll", 1000)}
    assert set(summary["profiles"]) == {"ws", "poll"}
    assert Path(summary["profiles"]["ws"]["stats_file"]).exists()
    assert not list(tmp_path.glob("*.pstats"))
    for name in ("fanout-ws-10000.json", "fanout-poll-5000.json", "fanout-codec-full-poll.json",
                 "fanout-sweep.json", "REPORT.md", "fanout-latency.png", "fanout-cpu.png",
                 "fanout-bytes.png"):  # fmt: skip
        assert (tmp_path / name).exists(), name
    saved = json.loads((tmp_path / "fanout-poll-5000.json").read_text())
    assert saved["passed"] is False
    assert "| poll | 1000 | 5000 |" in (tmp_path / "REPORT.md").read_text()


def test_a_run_that_fails_to_finish_counts_as_a_failed_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweep, "run_fanout", _model)
    monkeypatch.setattr(sweep, "prepare_race", lambda *a, **k: tmp_path / "race.npz")
    summary = sweep.run_sweep(
        FanoutConfig(), (100, 6000), ("poll",), 5.0, Capacity(5000.0, 0.99), tmp_path,
        lambda text: None,
    )  # fmt: skip
    assert summary["capacities"]["poll"] == {
        "capacity": 100, "first_failure": 6000, "failure_reason": "timed out while connecting"
    }  # fmt: skip
    assert summary["steps"][-1] == {
        "transport": "poll", "subscribers": 6000, "codec": "sparse",
        "error": "timed out while connecting", "passed": False,
    }  # fmt: skip


def test_evaluate_judges_again_with_real_time_kept() -> None:
    steps = [
        _model(FanoutConfig(transport="ws", subscribers=n), Path("x"), None) for n in (100, 1000)
    ]
    steps[1]["updates_per_s"] = 1500.0  # 75 % of 1,000 x 2 Hz: the node fell behind
    summary: dict[str, Any] = {"steps": steps, "codecs": []}
    sweep.evaluate(summary, Capacity(1000.0, 0.99, 0.95))
    assert summary["capacities"]["ws"] == {
        "capacity": 100, "first_failure": 1000,
        "failure_reason": "kept 75 % of real time (updates/s vs N x 2 Hz) < 95 %",
    }  # fmt: skip
    assert [meets(r, Capacity()) for r in steps] == [True, False]
    assert summary["capacity_rule"]["min_realtime_ratio"] == 0.95


def test_sweep_with_baseline_pairs_every_websocket_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slipstream.app.bench.compare import ratios

    paired: list[tuple[int, str]] = []

    def pair(cfg: FanoutConfig, loop: str, race: Path, say: Any) -> dict[str, Any]:
        paired.append((cfg.subscribers, loop))
        node, base = _model(cfg, race, say), _model(cfg, race, say)
        base["server_cpu_us_per_update"] = 20.0
        for run in (node, base):
            run["server"] = {"loop": "asyncio", "workers": 1}
        return {**node, "baseline": base, "order": ["slipstream", "baseline"],
                "ratios": ratios(node, base)}  # fmt: skip

    monkeypatch.setattr(sweep, "run_fanout", _model)
    monkeypatch.setattr(sweep, "run_with_baseline", pair)
    monkeypatch.setattr(sweep, "prepare_race", lambda *a, **k: tmp_path / "race.npz")
    summary = sweep.run_sweep(
        FanoutConfig(), (100, 1000), ("ws", "poll"), 5.0, Capacity(1000.0, 0.99), tmp_path,
        lambda text: None, baseline_loop="asyncio",
    )  # fmt: skip
    # Steps only (not codec or profile runs), WebSocket only.
    assert paired == [(100, "asyncio"), (1000, "asyncio")]
    ws = [r for r in summary["steps"] if r["transport"] == "ws"]
    assert all(r["ratios"]["server_cpu_us_per_update"] == 0.5 for r in ws)
    assert "baseline" not in next(r for r in summary["steps"] if r["transport"] == "poll")
    assert "## Beside a bare websockets.broadcast() server" in (tmp_path / "REPORT.md").read_text()
