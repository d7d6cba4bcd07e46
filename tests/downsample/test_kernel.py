"""The window kernel against the slow reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from downsample.kernel import AggregationPlan, reduce_segments, segment_starts
from slipstream.catalogue import AGGREGATIONS, CATALOGUE, Catalogue, Channel
from tests.downsample.reference import reduce_reference

PLAN = AggregationPlan.from_catalogue(CATALOGUE)


def _random_values(rng: np.random.Generator, rows: int, nan_rate: float) -> np.ndarray:
    lo, hi = CATALOGUE.minimum, CATALOGUE.maximum
    values = (lo + (hi - lo) * rng.random((rows, len(CATALOGUE)))).astype(np.float32)
    values[rng.random(values.shape) < nan_rate] = np.nan
    return values


def _random_starts(rng: np.random.Generator, rows: int, segments: int) -> np.ndarray:
    cuts = np.sort(rng.choice(np.arange(1, rows), size=min(segments - 1, rows - 1), replace=False))
    return np.concatenate(([0], cuts)).astype(np.intp)


@pytest.mark.parametrize("rows,segments", [(1, 1), (7, 3), (60, 1), (600, 40), (2000, 400)])
@pytest.mark.parametrize("nan_rate", [0.0, 0.3, 0.95])
def test_every_rule_matches_reference(rows: int, segments: int, nan_rate: float) -> None:
    rng = np.random.default_rng(rows * 7 + segments)
    values = _random_values(rng, rows, nan_rate)
    starts = _random_starts(rng, rows, segments)
    got = reduce_segments(values, starts, PLAN)
    want = reduce_reference(values, starts.tolist())
    np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(CATALOGUE.quantise(got), CATALOGUE.quantise(want))


def test_each_rule_on_a_tiny_catalogue() -> None:
    # One channel per rule, so a wrong rule cannot hide behind another.
    channels = tuple(Channel(f"c_{r}", "g", "", -100, 100, 0.001, r, "") for r in AGGREGATIONS)
    catalogue = Catalogue(channels)
    plan = AggregationPlan.from_catalogue(catalogue)
    column = np.array([np.nan, 3.0, -1.0, 5.0, np.nan], dtype=np.float32)
    values = np.repeat(column[:, None], len(AGGREGATIONS), axis=1)
    got = dict(zip(AGGREGATIONS, reduce_segments(values, np.array([0]), plan)[0], strict=True))
    assert got == {"mean": 7 / 3, "last": 5.0, "min": -1.0, "max": 5.0, "first": 3.0, "sum": 7.0}


def test_all_nan_channel_is_nan_and_quantises_to_missing() -> None:
    values = np.full((5, len(CATALOGUE)), np.nan, dtype=np.float32)
    values[:, 0] = 50.0
    out = reduce_segments(values, np.array([0]), PLAN)
    assert out[0, 0] == 50.0
    assert np.isnan(out[0, 1:]).all()
    q = CATALOGUE.quantise(out)
    assert (q[0, 1:] == -(2**31)).all()


def test_segment_starts_on_two_keys() -> None:
    ticks = np.array([0, 0, 0, 1, 1, 2], dtype=np.int64)
    cars = np.array([1, 1, 2, 2, 2, 2], dtype=np.int64)
    assert segment_starts(ticks, cars).tolist() == [0, 2, 3, 5]
    assert segment_starts(np.zeros(0, dtype=np.int64)).tolist() == []


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.integers(1, 300),
    segments=st.integers(1, 50),
    nan_rate=st.floats(0.0, 1.0),
)
def test_property_vectorised_equals_reference(
    seed: int, rows: int, segments: int, nan_rate: float
) -> None:
    rng = np.random.default_rng(seed)
    values = _random_values(rng, rows, nan_rate)
    starts = _random_starts(rng, rows, segments) if rows > 1 else np.array([0], dtype=np.intp)
    got = reduce_segments(values, starts, PLAN)
    want = reduce_reference(values, starts.tolist())
    np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)
