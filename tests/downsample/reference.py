"""Slow, obvious reference implementations: the oracles of the vectorised kernel."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from numpy.typing import NDArray

from slipstream.catalogue import CATALOGUE, Catalogue
from slipstream.records import TICK_NS, Frame, RawBatch, sample_times_ns


def reduce_one(rule: str, column: list[float]) -> float:
    """One channel of one window, sample by sample (column in time order)."""
    finite = [v for v in column if not math.isnan(v) and not math.isinf(v)]
    if not finite:
        return math.nan
    if rule == "mean":
        total = 0.0
        for v in finite:
            total += v
        return total / len(finite)
    if rule == "sum":
        total = 0.0
        for v in finite:
            total += v
        return total
    if rule == "min":
        return min(finite)
    if rule == "max":
        return max(finite)
    if rule == "first":
        return finite[0]
    if rule == "last":
        return finite[-1]
    raise ValueError(rule)


def reduce_reference(
    values: NDArray[np.float32], starts: list[int], catalogue: Catalogue = CATALOGUE
) -> NDArray[np.float64]:
    """Like kernel.reduce_segments, with Python loops per segment and channel."""
    bounds = [*starts, values.shape[0]]
    out = np.full((len(starts), len(catalogue)), np.nan)
    for s in range(len(starts)):
        rows = values[bounds[s] : bounds[s + 1]]
        for c, channel in enumerate(catalogue.channels):
            out[s, c] = reduce_one(channel.agg, [float(v) for v in rows[:, c]])
    return out


def frames_reference(
    batches: list[RawBatch], catalogue: Catalogue = CATALOGUE
) -> dict[tuple[str, int, int], Frame]:
    """Frames of a set of batches with no lateness: group samples by (race, car, tick)."""
    groups: dict[tuple[str, int, int], list[tuple[int, int, NDArray[np.float32]]]] = defaultdict(
        list
    )
    for batch in batches:
        ts = sample_times_ns(batch.t0_ns, batch.rate_hz, batch.values.shape[0])
        for i, t in enumerate(ts.tolist()):
            groups[(batch.race, batch.car, t // TICK_NS)].append((t, batch.seq, batch.values[i]))
    frames = {}
    for (race, car, tick), rows in groups.items():
        rows.sort(key=lambda r: (r[0], r[1]))
        block = np.array([r[2] for r in rows], dtype=np.float32)
        agg = reduce_reference(block, [0], catalogue)
        frames[(race, car, tick)] = Frame(race, tick, car, catalogue.quantise(agg)[0], len(rows))
    return frames
