"""The window kernel: reduce sorted runs of samples to one value per channel.

Input rows are grouped into *segments* (one segment = one car's samples in
one 500 ms window), sorted by time within each segment.  Every aggregation
rule of the catalogue is applied to its own columns with one numpy
``reduceat`` over all segments at once: the cost grows with the number of
rules (six), never with the number of samples, cars or channels in Python.

NaN marks a dropout and is ignored by every rule; a segment with no finite
sample of a channel yields NaN there (quantised to ``MISSING`` later).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from slipstream.catalogue import AGGREGATIONS, Catalogue

__all__ = ["AggregationPlan", "reduce_segments", "segment_starts"]


@dataclass(frozen=True, slots=True)
class AggregationPlan:
    """Column indices of each aggregation rule, computed once per catalogue.

    Attributes:
        channels: Number of channels (columns).
        columns: ``(rule, column indices)`` for every rule that has columns.
    """

    channels: int
    columns: tuple[tuple[str, NDArray[np.intp]], ...]

    @classmethod
    def from_catalogue(cls, catalogue: Catalogue) -> AggregationPlan:
        """The plan of ``catalogue``'s aggregation rules."""
        columns = tuple(
            (rule, catalogue.channels_with(rule))
            for rule in AGGREGATIONS
            if len(catalogue.channels_with(rule))
        )
        return cls(len(catalogue), columns)


def segment_starts(*keys: NDArray[np.int64]) -> NDArray[np.intp]:
    """Start index of each run of rows whose ``keys`` are all equal, shape (segments,).

    Rows must be sorted so that equal key tuples are adjacent.
    """
    if not keys or len(keys[0]) == 0:
        return np.zeros(0, dtype=np.intp)
    change = np.zeros(len(keys[0]) - 1, dtype=bool)
    for key in keys:
        change |= key[1:] != key[:-1]
    return np.concatenate(([0], np.flatnonzero(change) + 1)).astype(np.intp)


def reduce_segments(
    values: NDArray[np.float32], starts: NDArray[np.intp], plan: AggregationPlan
) -> NDArray[np.float64]:
    """Aggregate each segment of ``values`` by each channel's rule.

    Args:
        values: Samples, shape (rows, channels), rows sorted by segment and
            by time within a segment.  NaN is a dropout; +-inf must have been
            rejected before (it is treated like NaN here).
        starts: Index of each segment's first row, strictly increasing,
            ``starts[0] == 0``; every segment non-empty.
        plan: Columns of each rule.

    Returns:
        Aggregated values, shape (segments, channels), float64; NaN where a
        segment had no finite sample of a channel.
    """
    rows = values.shape[0]
    out = np.full((len(starts), plan.channels), np.nan, dtype=np.float64)
    if rows == 0 or len(starts) == 0:
        return out
    for rule, cols in plan.columns:
        block = values[:, cols]  # a copy (fancy index), so it may be filled in place
        finite = np.isfinite(block)
        missing = ~finite
        if rule in ("mean", "sum"):
            np.copyto(block, 0.0, where=missing)
            total = np.add.reduceat(block, starts, axis=0, dtype=np.float64)
            count = np.add.reduceat(finite, starts, axis=0, dtype=np.int64)
            with np.errstate(invalid="ignore", divide="ignore"):
                result = total / count if rule == "mean" else total
            out[:, cols] = np.where(count > 0, result, np.nan)
        elif rule in ("min", "max"):
            fill = np.inf if rule == "min" else -np.inf
            ufunc = np.minimum if rule == "min" else np.maximum
            np.copyto(block, fill, where=missing)
            extreme = ufunc.reduceat(block, starts, axis=0)
            out[:, cols] = np.where(np.isfinite(extreme), extreme, np.nan)
        else:  # "last" and "first": the latest / earliest finite row of the segment
            index = np.arange(rows, dtype=np.intp)[:, None]
            if rule == "last":
                pick = np.maximum.reduceat(np.where(finite, index, -1), starts, axis=0)
                found = pick >= 0
            else:
                pick = np.minimum.reduceat(np.where(finite, index, rows), starts, axis=0)
                found = pick < rows
            chosen = np.take_along_axis(block, np.where(found, pick, 0), axis=0)
            out[:, cols] = np.where(found, chosen, np.nan)
    return out
