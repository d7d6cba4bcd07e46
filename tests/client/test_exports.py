"""Analysts' exports read back with pandas: live (``subscribe --format``) and recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from slipstream.app.cli import main
from slipstream.bus import MemoryBus
from slipstream.catalogue import CATALOGUE
from tests.broadcast.helpers import expected_values, node
from tests.broadcast.test_cli import run_cli

GROUPS = ["tyres", "engine"]
CHANNELS = [c.name for c in CATALOGUE if c.group in GROUPS]
UNITS = {c.name: c.unit for c in CATALOGUE}


def _read(path: Path, fmt: str) -> pd.DataFrame:
    if fmt == "parquet":
        return pd.read_parquet(path)
    if fmt == "csv":
        return pd.read_csv(path)
    return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines()])


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
async def test_subscribe_writes_one_row_per_car_frame(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"live.{fmt}"
    async with node(MemoryBus()) as (server, feeder):
        await feeder.start_race()
        for tick in range(6):
            await feeder.tick(tick)
        code, _stdout, err = await run_cli(
            "subscribe", server.url, "--cars", "24,48", "--groups", ",".join(GROUPS),
            "--from", "R1:1", "--count", "8", "--format", fmt, "--out", str(out),
        )  # fmt: skip
    assert code == 0, err
    df = _read(out, fmt)
    assert list(df.columns) == ["race", "tick", "car", *CHANNELS]
    assert len(df) == 8
    assert [(int(t), int(c)) for t, c in zip(df.tick, df.car, strict=True)] == [
        (t, c) for t in range(2, 6) for c in (24, 48)
    ]
    assert set(df.race) == {"R1"}
    for row in df.itertuples(index=False):
        want = expected_values("R1", int(row.tick), int(row.car), GROUPS)
        assert [getattr(row, n) for n in CHANNELS] == pytest.approx([want[n] for n in CHANNELS])
    if fmt == "parquet":
        schema = pq.read_schema(out)
        for name in CHANNELS:
            assert schema.field(name).metadata == {b"unit": UNITS[name].encode()}
        assert json.loads(schema.metadata[b"units"]) == {n: UNITS[n] for n in CHANNELS}


def test_export_of_a_recording_needs_no_node(tmp_path: Path) -> None:
    recording = tmp_path / "race.slip"
    argv = ["simulate", "--record", str(recording), "--cars", "3", "--duration", "4", "--seed", "5"]
    assert main(argv) == 0
    out = tmp_path / "race.parquet"
    assert main(["export", str(recording), "--format", "parquet", "--out", str(out)]) == 0
    df = pd.read_parquet(out)
    every = [c.name for c in CATALOGUE]
    assert list(df.columns) == ["race", "tick", "car", *every]
    cars = sorted(set(df.car))
    assert len(cars) == 3
    # 4 s of race at 2 Hz: ticks 0..7 for every car, each car-frame once.
    assert sorted(set(df.tick)) == list(range(8))
    assert len(df) == 3 * 8
    assert not df.duplicated(["race", "tick", "car"]).any()
    # Channel units: within each channel's range, on its resolution's grid.
    for c in CATALOGUE:
        column = df[c.name].dropna()
        assert ((column >= c.min - c.resolution) & (column <= c.max + c.resolution)).all(), c.name
        steps = column / c.resolution
        assert (abs(steps - steps.round()) < 1e-6).all(), c.name
    speed = df["speed"].dropna()
    assert UNITS["speed"] == "mph" and speed.max() > 50  # a racing car, in mph
    schema = pq.read_schema(out)
    assert schema.field("speed").metadata == {b"unit": b"mph"}

    only = tmp_path / "car.csv"
    argv = ["export", str(recording), "--format", "csv", "--out", str(only),
            "--cars", str(cars[0]), "--groups", "tyres"]  # fmt: skip
    assert main(argv) == 0
    small = pd.read_csv(only)
    assert list(small.columns) == ["race", "tick", "car", *[c.name for c in CATALOGUE
                                                            if c.group == "tyres"]]  # fmt: skip
    assert len(small) == 8 and set(small.car) == {cars[0]}
    merged = small.merge(df, on=["race", "tick", "car"], suffixes=("", "_all"))
    for name in small.columns[3:]:
        pd.testing.assert_series_equal(
            merged[name], merged[f"{name}_all"], check_dtype=False, check_names=False
        )


def test_export_refuses_a_file_that_is_not_a_recording(tmp_path: Path) -> None:
    bogus = tmp_path / "x.slip"
    bogus.write_bytes(b"not a recording")
    assert main(["export", str(bogus), "--out", str(tmp_path / "x.parquet")]) == 2
