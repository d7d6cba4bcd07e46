"""Synthetic raw telemetry for benchmarks and tests (not a simulator: values are noise).

Values are drawn per car around a random level inside each channel's range,
with optional NaN dropouts; record layout and timing are what the simulator
sends (one record per car per ``batch_ms``, sequence numbers from 0).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from slipstream.catalogue import CATALOGUE, Catalogue
from slipstream.records import RawBatch

__all__ = ["synthetic_batches"]


def synthetic_batches(
    race: str = "race-1",
    cars: int = 40,
    rate_hz: int = 120,
    seconds: float = 10.0,
    batch_ms: int = 100,
    seed: int = 0,
    dropout_rate: float = 0.0,
    catalogue: Catalogue = CATALOGUE,
) -> Iterator[RawBatch]:
    """Raw batches of ``cars`` cars (numbers 1..cars), interleaved in time order.

    Args:
        race: Race id.
        cars: Number of cars.
        rate_hz: Samples per second per car.
        seconds: Race time covered.
        batch_ms: Race time per record.
        seed: Random seed (same seed, same batches).
        dropout_rate: Probability that a value is NaN.
        catalogue: Channels.
    """
    if cars <= 0 or rate_hz <= 0 or seconds <= 0 or batch_ms <= 0:
        raise ValueError("cars, rate_hz, seconds and batch_ms must be positive")
    rng = np.random.default_rng(seed)
    lo, hi = catalogue.minimum, catalogue.maximum
    span = hi - lo
    level = lo + span * rng.uniform(0.2, 0.8, size=(cars, len(catalogue)))
    per_batch = max(1, rate_hz * batch_ms // 1000)
    total = int(seconds * rate_hz)
    for seq, start in enumerate(range(0, total, per_batch)):
        n = min(per_batch, total - start)
        t0_ns = start * 1_000_000_000 // rate_hz
        noise = rng.normal(0.0, 0.02, size=(cars, n, len(catalogue))) * span
        values = np.clip(level[:, None, :] + noise, lo, hi).astype(np.float32)
        if dropout_rate > 0:
            values[rng.random(values.shape) < dropout_rate] = np.nan
        for car in range(cars):
            yield RawBatch(race, car + 1, seq, t0_ns, rate_hz, values[car])
