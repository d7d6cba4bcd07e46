"""Downsample kernels under pytest-benchmark: the window reduction and one tick of a field.

Skipped in the ordinary test run (addopts has --benchmark-skip).  Run::

    pytest benchmarks/test_downsample_kernels.py -o addopts="" --benchmark-only \\
        --benchmark-json benchmarks/results/downsample_kernels.json

The end-to-end figure (raw -> 2 Hz as a multiple of real time, kernel and
through Kafka) is ``slipstream bench pipeline``; see docs/pipeline.md.
"""

from __future__ import annotations

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from downsample.kernel import AggregationPlan, reduce_segments
from downsample.synthetic import synthetic_batches
from downsample.windows import PartitionWindows
from slipstream.bus.base import Record
from slipstream.catalogue import CATALOGUE
from slipstream.records import car_key, encode_raw

PLAN = AggregationPlan.from_catalogue(CATALOGUE)


@pytest.mark.benchmark(group="downsample-window-kernel")
@pytest.mark.parametrize("cars", [1, 5, 40])
def test_reduce_one_tick(benchmark: BenchmarkFixture, cars: int) -> None:
    """One 500 ms window of ``cars`` cars at 120 Hz (60 samples each), 2 % dropouts."""
    rng = np.random.default_rng(cars)
    lo, hi = CATALOGUE.minimum, CATALOGUE.maximum
    values = (lo + (hi - lo) * rng.random((cars * 60, len(CATALOGUE)))).astype(np.float32)
    values[rng.random(values.shape) < 0.02] = np.nan
    starts = np.arange(0, cars * 60, 60, dtype=np.intp)
    out = benchmark(reduce_segments, values, starts, PLAN)
    assert out.shape == (cars, len(CATALOGUE))


@pytest.mark.benchmark(group="downsample-partition")
def test_partition_one_second_of_five_cars(benchmark: BenchmarkFixture) -> None:
    """Decode, validate, window and reduce 1 s of 5 cars (one partition's share of 40)."""
    batches = list(synthetic_batches(cars=5, seconds=3, rate_hz=120, seed=1))
    records = [Record("raw", 0, i, car_key(b.car), encode_raw(b), 0) for i, b in enumerate(batches)]

    def run() -> int:
        windows = PartitionWindows("raw", 0)
        frames, _ = windows.process(records)
        return len(frames) + len(windows.flush_all())

    assert benchmark(run) == 5 * 6
