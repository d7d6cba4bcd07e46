"""Duplicate and consistency checks by (race, car, sequence number), bounded in memory.

Each car's batches are numbered from 0 without gaps, and batch ``n + 1``
follows batch ``n`` in time.  A :class:`SeenSeqs` remembers, for one
(race, car), each sequence number seen with the offset it was first read at
and the race time of its first and last sample.  It answers:

* is this a *duplicate* (the number was read before at another offset) or a
  *replay* (the same record read again by a restarted consumer)?
* is it *consistent* with its nearest neighbours below and above: same rate,
  and continuing them in time without gap or overlap?  A record whose header
  was damaged into another plausible sequence number, start time or rate is
  caught here (the record format has no checksum).

Numbers more than ``horizon`` below the highest seen are forgotten (a copy
arriving that late falls in closed windows and is refused as ``late``).
"""

from __future__ import annotations

import enum

import numpy as np
from numpy.typing import NDArray

__all__ = ["NEIGHBOURS", "SeenSeqs", "Status"]

#: How far (in sequence numbers) to look for a neighbour to check a batch against.
NEIGHBOURS = 8


class Status(enum.Enum):
    """What a sequence number is, relative to what was seen."""

    NEW = "new"
    REPLAY = "replay"
    DUPLICATE = "duplicate"


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
        # seq -> (offset first read at, first sample ns, last sample ns, rate)
        self._seen: dict[int, tuple[int, int, int, int]] = {}
        self.max_seq = -1

    def __len__(self) -> int:
        return len(self._seen)

    def status(self, seq: int, offset: int) -> Status:
        """Whether ``seq`` read at ``offset`` is new, a replay or a duplicate."""
        entry = self._seen.get(seq)
        if entry is None:
            return Status.NEW
        return Status.REPLAY if entry[0] == offset else Status.DUPLICATE

    def inconsistency(
        self, seq: int, first_ns: int, last_ns: int, rate_hz: int
    ) -> tuple[str, str] | None:
        """Why batch ``seq`` (samples ``first_ns..last_ns`` at ``rate_hz``) cannot be right.

        A car's batches lie on one regular grid: same rate, and batch
        ``seq + k`` starts ``k`` batch lengths after batch ``seq`` (to within
        the nanoseconds that integer rounding of sample times allows).  The
        nearest batch seen within :data:`NEIGHBOURS` below and above is
        checked, or else the car's latest batch.  Sequence numbers more than
        ``horizon`` below the latest cannot be checked and are refused.

        Returns:
            None, or ``(reason, detail)`` with reason ``bad_seq`` or ``bad_timestamp``.
        """
        if self.max_seq >= 0 and seq < self.max_seq - self.horizon:
            return "bad_seq", f"seq {seq} is far below this car's latest seq {self.max_seq}"
        references = [near for step in (-1, 1) if (near := self._nearest(seq, step)) is not None]
        if not references and self.max_seq >= 0:
            references = [self.max_seq]
        for other_seq in references:
            _, other_first, other_last, other_rate = self._seen[other_seq]
            k = seq - other_seq
            batch_ns = other_last - other_first + 1_000_000_000 // other_rate
            expected = other_first + k * batch_ns
            if other_rate != rate_hz or abs(first_ns - expected) > 2 * abs(k) + 2:
                return (
                    "bad_timestamp",
                    f"seq {seq} at {first_ns} ns, {rate_hz} Hz is off the grid of seq "
                    f"{other_seq} at {other_first} ns, {other_rate} Hz",
                )
        return None

    def _nearest(self, seq: int, step: int) -> int | None:
        for k in range(1, NEIGHBOURS + 1):
            if seq + step * k in self._seen:
                return seq + step * k
        return None

    def add(
        self, seq: int, offset: int, first_ns: int = 0, last_ns: int = 0, rate_hz: int = 1
    ) -> bool:
        """Record ``seq`` read at ``offset``; False if it is a duplicate."""
        status = self.status(seq, offset)
        if status is not Status.NEW:
            return status is Status.REPLAY
        self._seen[seq] = (offset, first_ns, last_ns, rate_hz)
        if seq > self.max_seq:
            self.max_seq = seq
            if len(self._seen) > 2 * self.horizon:
                floor = seq - self.horizon
                self._seen = {s: e for s, e in self._seen.items() if s >= floor}
        return True

    def before(self, offset: int) -> NDArray[np.int64]:
        """Entries read below ``offset``: rows (seq, offset, first_ns, last_ns, rate), by seq."""
        rows = sorted((s, *e) for s, e in self._seen.items() if e[0] < offset)
        return np.array(rows, dtype=np.int64).reshape(len(rows), 5)

    @classmethod
    def restore(cls, rows: NDArray[np.int64], horizon: int = 256) -> SeenSeqs:
        """Rebuild from :meth:`before`'s rows."""
        seen = cls(horizon)
        seen._seen = {r[0]: (r[1], r[2], r[3], r[4]) for r in rows.tolist()}
        seen.max_seq = max(seen._seen, default=-1)
        return seen
