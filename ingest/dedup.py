"""Duplicate detection by (race, car, sequence number), bounded in memory.

Each car's batches are numbered from 0 without gaps.  A :class:`SeenSeqs`
remembers, for one (race, car), the sequence numbers seen and the offset each
was first read at; numbers more than ``horizon`` below the highest seen are
forgotten (a copy arriving that late falls in closed windows and is refused
as ``late`` instead).  Remembering the offset lets a restarted consumer that
re-reads a record tell "the same record again" from "a duplicate of it".
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["SeenSeqs"]


class SeenSeqs:
    """Sequence numbers of one (race, car) seen recently.

    Args:
        horizon: How many sequence numbers below the highest are remembered.
    """

    __slots__ = ("_seen", "horizon", "max_seq")

    def __init__(self, horizon: int = 256) -> None:
        if horizon <= 0:
            raise ValueError("horizon must be positive")
        self.horizon = horizon
        self._seen: dict[int, int] = {}
        self.max_seq = -1

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, seq: int, offset: int) -> bool:
        """Record ``seq`` read at ``offset``; False if it is a duplicate.

        A sequence number seen before at a *different* offset is a duplicate;
        seen at the same offset, it is the same record read again (a replay).
        A number below the horizon counts as new (its samples will be late).
        """
        first = self._seen.get(seq)
        if first is not None:
            return first == offset
        self._seen[seq] = offset
        if seq > self.max_seq:
            self.max_seq = seq
            if len(self._seen) > 2 * self.horizon:
                floor = seq - self.horizon
                self._seen = {s: o for s, o in self._seen.items() if s >= floor}
        return True

    def before(self, offset: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Sequence numbers (and their offsets) first read below ``offset``, sorted by seq."""
        items = sorted((s, o) for s, o in self._seen.items() if o < offset)
        seqs = np.array([s for s, _ in items], dtype=np.int64)
        offsets = np.array([o for _, o in items], dtype=np.int64)
        return seqs, offsets

    @classmethod
    def restore(
        cls, seqs: NDArray[np.int64], offsets: NDArray[np.int64], horizon: int = 256
    ) -> SeenSeqs:
        """Rebuild from :meth:`before`'s arrays."""
        seen = cls(horizon)
        seen._seen = dict(zip(seqs.tolist(), offsets.tolist(), strict=True))
        seen.max_seq = int(seqs.max()) if len(seqs) else -1
        return seen
