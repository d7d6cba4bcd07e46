"""Codec kernels under pytest-benchmark: encode of a 40-car tick, decode of one car-update.

Skipped in the ordinary test run (addopts has --benchmark-skip).  Run::

    pytest benchmarks/test_codec_kernels.py -o addopts="" --benchmark-only \\
        --benchmark-json benchmarks/results/codec_kernels.json

Frames are two consecutive ticks of the bench's simulated race
(slipstream.app.bench.codecs.simulated_race), 40 cars x 13 groups.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray
from pytest_benchmark.fixture import BenchmarkFixture

from slipstream.app.bench.codecs import simulated_race
from slipstream.catalogue import CATALOGUE
from slipstream.codecs import CODECS

GROUPS = CATALOGUE.groups
RACE = simulated_race(cars=40, ticks=2, seed=1, start_s=75.0)
PREV: NDArray[np.int32] = RACE[0]
NOW: NDArray[np.int32] = RACE[1]


@pytest.mark.benchmark(group="codec-encode-tick")
@pytest.mark.parametrize("name", sorted(CODECS))
def test_encode_deltas_of_a_40_car_tick(benchmark: BenchmarkFixture, name: str) -> None:
    codec = CODECS[name]
    parts = benchmark(codec.encode_deltas, PREV, NOW, GROUPS)
    assert len(parts) == 40 and len(parts[0]) == len(GROUPS)


@pytest.mark.benchmark(group="codec-encode-tick")
def test_encode_deltas_of_a_40_car_tick_all_codecs(benchmark: BenchmarkFixture) -> None:
    def all_codecs() -> int:
        return sum(len(codec.encode_deltas(PREV, NOW, GROUPS)) for codec in CODECS.values())

    assert benchmark(all_codecs) == 40 * len(CODECS)


@pytest.mark.benchmark(group="codec-encode-keyframe")
@pytest.mark.parametrize("name", sorted(CODECS))
def test_encode_keyframes_of_a_40_car_tick(benchmark: BenchmarkFixture, name: str) -> None:
    parts = benchmark(CODECS[name].encode_keyframes, NOW, GROUPS)
    assert len(parts) == 40


@pytest.mark.benchmark(group="codec-decode-car-update")
@pytest.mark.parametrize("name", sorted(CODECS))
def test_decode_one_car_update(benchmark: BenchmarkFixture, name: str) -> None:
    codec = CODECS[name]
    parts = codec.encode_deltas(PREV, NOW, GROUPS)[7]
    bases = [PREV[7, g.start : g.stop] for g in GROUPS]

    def decode() -> list[NDArray[np.int32]]:
        return [codec.decode_delta(b, p) for b, p in zip(bases, parts, strict=True)]

    out = benchmark(decode)
    np.testing.assert_array_equal(np.concatenate(out), NOW[7])
