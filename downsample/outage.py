"""Which raw partitions are quiet, through broker outages (pure core, no I/O).

The downsampler flushes a race's open windows only when its partition has
been drained (the broker's end offset reached) for ``idle_s``.  A broker that
does not answer is an outage, not the end of a race: the producers still hold
the race's next samples and send them once they have reconnected, which may
be well after the broker is back.  So after an outage nothing is quiet until
the producers are seen back (the broker's end offsets grew since it returned)
or ``grace_factor`` x ``idle_s`` has passed, and silence is measured again
from then.

:class:`QuietTracker` is fed the broker's answers (or the lack of one) by the
service, which does the asking (:mod:`downsample.service`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

__all__ = ["OUTAGE_GRACE_FACTOR", "QuietTracker"]

logger = logging.getLogger(__name__)

#: After a broker outage, races stay open until the producers are seen back, or
#: for this many times ``idle_s`` (a producer that died meanwhile).
OUTAGE_GRACE_FACTOR = 10


class QuietTracker:
    """The partitions drained for ``idle_s`` (see module doc).

    Args:
        idle_s: Silence after which a drained partition is quiet, in seconds.
        grace_factor: After an outage, the longest wait for the producers, in
            multiples of ``idle_s``.
    """

    def __init__(self, idle_s: float, grace_factor: float = OUTAGE_GRACE_FACTOR) -> None:
        if idle_s <= 0:
            raise ValueError(f"idle_s must be positive, got {idle_s}")
        self.idle_s = idle_s
        self.grace_factor = grace_factor
        #: The quiet partitions as of the last answer.
        self.quiet: set[int] = set()
        self._asked_at = -math.inf
        self._drained_since: dict[int, float] = {}
        self._outage = False
        # After an outage: when the broker answered again, and its end offsets then.
        self._back: tuple[float, Mapping[int, int]] | None = None

    @property
    def in_outage(self) -> bool:
        """Whether the broker failed to answer and the producers are not yet seen back."""
        return self._outage

    def due(self, now: float) -> bool:
        """Whether to ask the broker again at ``now`` (s): every ``idle_s / 4``."""
        return now - self._asked_at >= self.idle_s / 4

    def no_answer(self, now: float) -> set[int]:
        """The broker did not answer at ``now``: an outage; returns the quiet set (empty)."""
        self._asked_at = now
        self._drained_since.clear()
        self._outage, self._back = True, None
        self.quiet = set()
        return self.quiet

    def answer(self, now: float, ends: Mapping[int, int], positions: Mapping[int, int]) -> set[int]:
        """The broker's end offsets at ``now``; returns the quiet partitions.

        Args:
            now: Monotonic time, in seconds.
            ends: End offset per assigned partition, as the broker says.
            positions: Next offset to read per assigned partition.
        """
        self._asked_at = now
        self.quiet = set()
        if self._outage:
            if self._back is None:
                self._back = (now, dict(ends))
                return self.quiet
            back_at, ends_then = self._back
            grown = any(end > ends_then.get(p, end) for p, end in ends.items())
            if not grown and now - back_at < self.grace_factor * self.idle_s:
                return self.quiet
            logger.info("broker back and %s", "producers too" if grown else "no producer seen")
            self._outage, self._back = False, None
            self._drained_since.clear()
        for partition, end in ends.items():
            if end <= positions.get(partition, 0):
                self._drained_since.setdefault(partition, now)
            else:
                self._drained_since.pop(partition, None)
        for partition in set(self._drained_since) - set(positions):
            del self._drained_since[partition]
        self.quiet = {p for p, since in self._drained_since.items() if now - since >= self.idle_s}
        return self.quiet
