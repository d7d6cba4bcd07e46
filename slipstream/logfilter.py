"""Quieting a library that repeats itself: one line per kind of message per window.

While a Kafka broker is unreachable, aiokafka logs the same few errors at every
retry (tens of lines a second per process: ``Unable connect to node ...``,
``Unable to update metadata ...``).  :class:`RepeatFilter`, on the CLI's log
handler, lets the first record of each kind through and drops its repeats for
``window_s``; the next one let through says how many were dropped.  A kind is
the logger, the level and the message template (before its arguments), so
``Unable connect to node with id 1`` and ``... id 2`` are one kind.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["RepeatFilter"]

#: Kinds remembered at most; the oldest is forgotten beyond.
MAX_KINDS = 1000


class RepeatFilter(logging.Filter):
    """Drops repeats of a kind of record within ``window_s`` (see module doc).

    Args:
        prefix: Only records of loggers named ``prefix`` or below it are filtered.
        window_s: Time after a record is let through during which its kind is dropped.
        clock: Monotonic clock, in seconds.
    """

    def __init__(
        self, prefix: str, window_s: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self.prefix = prefix
        self.window_s = window_s
        self._clock = clock
        self._kinds: dict[tuple[str, int, str], tuple[float, int]] = {}
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        """True to let ``record`` through (annotated with the repeats dropped before it)."""
        name = record.name
        if name != self.prefix and not name.startswith(self.prefix + "."):
            return True
        key = (name, record.levelno, str(record.msg))
        now = self._clock()
        seen = self._kinds.get(key)
        if seen is not None and now - seen[0] < self.window_s:
            self._kinds[key] = (seen[0], seen[1] + 1)
            self.dropped += 1
            return False
        self._kinds.pop(key, None)
        self._kinds[key] = (now, 0)
        if len(self._kinds) > MAX_KINDS:
            del self._kinds[next(iter(self._kinds))]
        if seen is not None and seen[1]:
            record.msg = (
                f"{record.getMessage()} ({seen[1]} more like this in the last "
                f"{now - seen[0]:.0f} s not shown)"
            )
            record.args = None
        return True
