"""`slipstream bench codecs` and its frame generator."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from slipstream.app.bench.codecs import BenchConfig, simulated_race, synthetic_race
from slipstream.app.bench.codecs_cli import register_bench
from slipstream.catalogue import CATALOGUE
from slipstream.errors import ConfigError


def main(argv: list[str]) -> int:
    """``slipstream bench ...`` with only this package's harness registered."""
    parser = argparse.ArgumentParser(prog="slipstream")
    commands = parser.add_subparsers(dest="command")
    bench = commands.add_parser("bench")
    register_bench(bench.add_subparsers(dest="bench"))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def test_the_bench_writes_figures_per_codec(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "codecs.json"
    argv = ["bench", "codecs", "--ticks", "3", "--cars", "2", "--decode-ticks", "1"]
    assert main([*argv, "--xdelta3-ticks", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    for name in ("full", "sparse", "vcdiff", "xdelta3"):
        for key in ("bytes_per_car_update", "encode_us_per_car_update", "decode_us_per_car_update"):
            assert result[name][key] > 0, (name, key)
    assert result["full"]["bytes_per_car_update"] == 4 * len(CATALOGUE)
    assert result["frames"]["cars"] == 2
    assert result["frames"]["source"] == "simulator"
    assert "sparse" in capsys.readouterr().out


def test_the_bench_runs_on_synthetic_frames_without_xdelta3(tmp_path: Path) -> None:
    out = tmp_path / "codecs.json"
    argv = ["bench", "codecs", "--frames", "synthetic", "--ticks", "2", "--cars", "1"]
    assert main([*argv, "--xdelta3-ticks", "0", "--json", str(out)]) == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["frames"]["source"] == "synthetic"
    assert "xdelta3" not in result
    assert result["sparse"]["bytes_per_car_update"] < result["full"]["bytes_per_car_update"]


def test_bad_bench_arguments_are_user_errors() -> None:
    with pytest.raises(ConfigError, match="ticks must be at least 2"):
        main(["bench", "codecs", "--ticks", "1"])
    with pytest.raises(ConfigError, match="--xdelta3-ticks 0"):
        main(["bench", "codecs", "--ticks", "2", "--xdelta3", "/nonexistent/xdelta3"])


def test_the_synthetic_race_is_deterministic_and_in_range() -> None:
    a = synthetic_race(3, 20, seed=4)
    assert a.shape == (20, 3, len(CATALOGUE)) and a.dtype == np.int32
    np.testing.assert_array_equal(a, synthetic_race(3, 20, seed=4))
    assert not np.array_equal(a, synthetic_race(3, 20, seed=5))
    counts = CATALOGUE.quantise(CATALOGUE.dequantise(a))
    np.testing.assert_array_equal(counts, a)


def test_simulated_frames_are_deterministic_quantised_2hz_frames() -> None:
    a = simulated_race(2, 6, seed=3, start_s=10.0)
    assert a.shape == (6, 2, len(CATALOGUE)) and a.dtype == np.int32
    np.testing.assert_array_equal(a, simulated_race(2, 6, seed=3, start_s=10.0))
    np.testing.assert_array_equal(CATALOGUE.quantise(CATALOGUE.dequantise(a)), a)
    speed = CATALOGUE.index["speed"]
    assert np.all(a[:, :, speed] > 0)  # racing, past the start
    assert np.any(a[1:] != a[:-1])


@pytest.mark.parametrize(
    "kwargs", [{"cars": 0}, {"ticks": 1}, {"frames": "replay"}, {"start_s": -1.0}]
)
def test_config_checks_its_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        BenchConfig(**kwargs)  # type: ignore[arg-type]
