"""Ingest kernels under pytest-benchmark: decode + validate one raw record.

Skipped in the ordinary test run.  Run::

    pytest benchmarks/test_ingest_kernels.py -o addopts="" --benchmark-only
"""

from __future__ import annotations

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from downsample.synthetic import synthetic_batches
from ingest.validate import Validator
from slipstream.records import encode_raw


@pytest.mark.benchmark(group="ingest-validate")
@pytest.mark.parametrize("samples", [12, 24, 60])
def test_decode_and_validate(benchmark: BenchmarkFixture, samples: int) -> None:
    """One record of ``samples`` samples x the catalogue (12 = 100 ms at 120 Hz)."""
    batch = next(iter(synthetic_batches(cars=1, rate_hz=samples * 10, seconds=1, batch_ms=100)))
    data = encode_raw(batch)
    validator = Validator()
    out = benchmark(validator.check, data)
    assert out.values.shape[0] == samples
