"""``slipstream bench fanout`` end to end: real node, generator processes, JSON out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
    for flag in ("--transport", "--subscribers", "--duration", "--json", "--sweep", "--steps"):
        assert flag in text


def test_bad_arguments_are_user_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "fanout", "--codec", "nope"]) == 2
    assert "unknown codec 'nope'" in capsys.readouterr().err
    assert main(["bench", "fanout", "--subscribers", "0"]) == 2
    assert "subscribers must be between" in capsys.readouterr().err


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
