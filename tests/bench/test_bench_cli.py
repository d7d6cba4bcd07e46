"""``slipstream bench fanout`` end to end: real node, generator processes, JSON out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from slipstream.app.cli import main

KEYS = {
    "transport", "subscribers", "delivered_ratio", "latency_ms", "updates_per_s",
    "server_cpu_pct", "server_cpu_us_per_update", "bytes_per_update",
    "server_rss_per_connection_kb", "generator_cpu_pct",
}  # fmt: skip


def test_help_describes_the_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "fanout", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--transport", "--subscribers", "--duration", "--json", "--sweep", "--steps",
                 "--baseline", "--baseline-loop", "--workers", "--loop",
                 "--generator-loop"):  # fmt: skip
        assert flag in text


def test_bad_arguments_are_user_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "fanout", "--codec", "nope"]) == 2
    assert "unknown codec 'nope'" in capsys.readouterr().err
    assert main(["bench", "fanout", "--subscribers", "0"]) == 2
    assert "subscribers must be between" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workers", "0"], "workers must be between 1 and 32"),
        (["--workers", "33"], "workers must be between 1 and 32"),
        (["--baseline", "--transport", "poll"], "--baseline is a WebSocket broadcaster"),
        (["--baseline", "--transport", "sse"], "--baseline is a WebSocket broadcaster"),
        (["--subscribers", "20000", "--generators", "1"], "at most 10,000 subscribers per"),
        (["--subscribers", "3", "--generators", "4"], "more generator processes than"),
    ],
)
def test_new_flags_are_validated(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["bench", "fanout", *argv]) == 2
    assert message in capsys.readouterr().err


def test_loop_choices_are_checked(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "fanout", "--loop", "trio"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'trio'" in capsys.readouterr().err
    from slipstream.app.bench import loops

    monkeypatch.setattr(loops, "_uvloop_importable", lambda: False)
    assert main(["bench", "fanout", "--loop", "uvloop"]) == 2
    assert "uvloop is not installed" in capsys.readouterr().err
    assert main(["bench", "fanout", "--baseline-loop", "uvloop", "--baseline"]) == 2
    assert "uvloop is not installed" in capsys.readouterr().err


def _bench(tmp_path: Path, *argv: str) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, "-m", "slipstream", "bench", "fanout", "--subscribers", "20",
         "--duration", "2", "--warmup", "0", "--json", str(out), *argv],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # Every process the run started is gone.
    pids = [p for line in proc.stderr.splitlines() if " pid " in line
            for p in line.split(" pid ")[1].split(" on port")[0].split()]  # fmt: skip
    assert pids and not any(Path(f"/proc/{pid}").exists() for pid in pids)
    return json.loads(out.read_text()), proc


def _every_tick_delivered(result: dict[str, Any]) -> None:
    assert result.keys() >= KEYS
    assert result["connected"] == 20 and result["failed_connections"] == 0
    assert result["expected_updates"] == 20 * 4
    assert result["delivered_updates"] == result["expected_updates"], result["errors"]
    assert result["closed_mid_run"] == 0 and not result["errors"]


def test_baseline_runs_in_the_same_sitting(tmp_path: Path) -> None:
    result, proc = _bench(tmp_path, "--baseline")
    _every_tick_delivered(result)
    _every_tick_delivered(result["baseline"])
    assert result["order"] == ["slipstream", "baseline"]
    assert result["server"]["kind"] == "slipstream" and result["server"]["loop"] == "asyncio"
    base = result["baseline"]["server"]
    assert base["kind"] == "websockets.broadcast" and base["loop"] == "asyncio"
    assert base["fans_each"] == [20]
    # Same subscription, same bytes on the wire per update.
    assert result["baseline"]["bytes_per_update"] == result["bytes_per_update"]
    assert set(result["ratios"]) == {
        "server_cpu_us_per_update", "latency_p50_ms", "latency_p99_ms", "delivered_ratio",
        "updates_per_s", "server_rss_per_connection_kb",
    }  # fmt: skip
    assert result["ratios"]["delivered_ratio"] == 1.0
    assert "side by side" in proc.stdout and "websockets.broadcast" in proc.stdout


def test_workers_share_the_port_and_the_feed(tmp_path: Path) -> None:
    result, proc = _bench(tmp_path, "--workers", "2", "--loop", "asyncio",
                          "--generator-loop", "uvloop")  # fmt: skip
    _every_tick_delivered(result)
    server = result["server"]
    assert server["workers"] == 2 and server["loop"] == "asyncio"
    assert result["config"]["generator_loop"] == "uvloop"
    # The kernel spread the fans over both workers, and both served them every tick.
    assert len(server["fans_each"]) == 2 and sum(server["fans_each"]) == 20
    assert all(n > 0 for n in server["fans_each"])
    assert len(server["server_cpu_pct_each"]) == 2
    assert "node x2" in proc.stderr


@pytest.mark.parametrize("transport", ["ws", "poll"])
def test_single_run_writes_the_figures(tmp_path: Path, transport: str) -> None:
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, "-m", "slipstream", "bench", "fanout", "--transport", transport,
         "--subscribers", "20", "--duration", "2", "--warmup", "0", "--json", str(out)],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result.keys() >= KEYS
    assert result["transport"] == transport and result["subscribers"] == 20
    assert result["expected_updates"] == 20 * 4
    assert 0.9 <= result["delivered_ratio"] <= 1.0
    assert set(result["latency_ms"]) == {"p50", "p99", "max"}
    assert 0 <= result["latency_ms"]["p50"] <= result["latency_ms"]["p99"]
    assert result["bytes_per_update"] > 100
    assert "measuring ticks" in proc.stderr
    assert "delivered" in proc.stdout
    # Every process the run started is gone.
    pids = [line.split("pid ")[1].split()[0] for line in proc.stderr.splitlines() if "pid " in line]
    assert pids and not any(Path(f"/proc/{pid}").exists() for pid in pids)


def test_replot_rebuilds_the_report_from_the_sweep_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.bench.test_bench_report import _summary

    assert main(["bench", "fanout", "--replot", "--out", str(tmp_path)]) == 2
    assert "run --sweep first" in capsys.readouterr().err
    (tmp_path / "fanout-sweep.json").write_text(json.dumps(_summary()))
    (tmp_path / "fanout-poll-5000.json").write_text("{}")
    assert main(["bench", "fanout", "--replot", "--out", str(tmp_path)]) == 0
    report = (tmp_path / "REPORT.md").read_text()
    assert "| poll | 1000 | 5000 | p99 3000.0 ms > 1000 ms |" in report
    assert (tmp_path / "fanout-cpu.png").stat().st_size > 10_000
    step = json.loads((tmp_path / "fanout-poll-5000.json").read_text())
    assert step["subscribers"] == 5000 and step["passed"] is False
