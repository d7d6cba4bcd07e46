"""The broadcast node's metric schema and latency histograms.

:class:`NodeMetrics` declares, on a node's registry, the histograms an
operator's dashboard and alert rules read (deploy/, docs/dashboard.md) and
the label names of the node's counters, so every series those rules name
exists (at 0) on a node that has not yet seen the event:

======================================  ==============================================
``slipstream_broadcast_tick_lag_seconds``   bus -> emitted: from the Kafka timestamp of
                                            a tick's newest frame to the moment the node
                                            handed the tick to its fans
``slipstream_broadcast_fanout_seconds``     writing one tick to the fans (encode aside)
``slipstream_broadcast_encode_seconds``     encoding one tick's messages
``slipstream_broadcast_resume_seconds``     serving one resume (replay or history)
======================================  ==============================================

:class:`TickLag` is the pure core of the first: fed each frame's bus
timestamp and each emitted tick, it gives the lags to observe.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from broadcast.ticks import TickData
from slipstream.metrics import Registry

__all__ = [
    "ENCODE_BUCKETS_S",
    "FANOUT_BUCKETS_S",
    "RESUME_BUCKETS_S",
    "TICK_LAG_BUCKETS_S",
    "NodeMetrics",
    "TickLag",
]

#: Tick lag spans the tick wait (1 s by default, up to 10 s while frames come late).
TICK_LAG_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
#: Per-tick work: tens of microseconds for a few fans, tens of ms for tens of thousands.
FANOUT_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
ENCODE_BUCKETS_S = FANOUT_BUCKETS_S
#: A resume from the ring is a few ms; one from the bus (history) may take seconds.
RESUME_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Ticks whose frames are remembered while they wait to be emitted.
MAX_PENDING_TICKS = 4096

# Label names of the node's counters and gauges that rules and dashboards name.
_LABELLED = {
    "slipstream_bytes_sent_total": ("transport",),
    "slipstream_messages_sent_total": ("transport",),
    "slipstream_refused_total": ("code",),
    "slipstream_keyframes_forced_total": ("reason",),
    "slipstream_client_errors_total": ("code",),
    "slipstream_broadcast_bad_records_total": ("reason",),
}
_UNLABELLED = (
    "slipstream_broadcast_frames_total",
    "slipstream_broadcast_ticks_total",
    "slipstream_slow_fan_drops_total",
    "slipstream_slow_fan_disconnects_total",
    "slipstream_replays_total",
)
_TRANSPORTS = ("ws", "sse", "poll")


class TickLag:
    """Bus-to-emitted lag of ticks (pure: times are arguments).

    Call :meth:`frame` for each frame read and :meth:`emitted` with the ticks
    handed to the fans; ticks never emitted are forgotten beyond
    ``MAX_PENDING_TICKS``.
    """

    def __init__(self, max_pending: int = MAX_PENDING_TICKS) -> None:
        self._newest_ms: dict[tuple[str, int], int] = {}
        self._max_pending = max_pending

    def frame(self, race: str, tick: int, timestamp_ms: int) -> None:
        """A frame of ``(race, tick)`` stored on the bus at ``timestamp_ms`` (epoch ms)."""
        key = (race, tick)
        newest = self._newest_ms.get(key)
        if newest is None:
            if len(self._newest_ms) >= self._max_pending:
                del self._newest_ms[next(iter(self._newest_ms))]  # oldest first
            self._newest_ms[key] = timestamp_ms
        elif timestamp_ms > newest:
            self._newest_ms[key] = timestamp_ms

    def emitted(self, ticks: Iterable[TickData], now_s: float) -> list[float]:
        """Lags in s of ``ticks`` emitted at ``now_s`` (epoch s); ticks with no frame give none."""
        lags = []
        for data in ticks:
            newest = self._newest_ms.pop((data.race, data.tick), None)
            if newest is not None:
                lags.append(max(0.0, now_s - newest / 1000))
        return lags


class NodeMetrics:
    """A node's histograms, and the label names of its other metrics, on ``registry``."""

    def __init__(self, registry: Registry) -> None:
        r = registry
        self.tick_lag = r.histogram(
            "slipstream_broadcast_tick_lag_seconds",
            "From the bus timestamp of a tick's newest frame to the tick going out to fans",
            TICK_LAG_BUCKETS_S,
            labels=(),
        )
        self.fanout = r.histogram(
            "slipstream_broadcast_fanout_seconds",
            "Time to write one tick to the fans, encoding aside",
            FANOUT_BUCKETS_S,
            labels=(),
        )
        self.encode = r.histogram(
            "slipstream_broadcast_encode_seconds",
            "Time to encode one tick's messages",
            ENCODE_BUCKETS_S,
            labels=(),
        )
        self.resume = r.histogram(
            "slipstream_broadcast_resume_seconds",
            "Time to serve one resume (replayed ticks or history from the bus)",
            RESUME_BUCKETS_S,
            labels=(),
        )
        for name, labels in _LABELLED.items():
            r.counter(name, "", labels=labels)
        for name in _UNLABELLED:
            r.counter(name, "", labels=())
        for transport in _TRANSPORTS:
            r.counter("slipstream_bytes_sent_total", "").init(transport=transport)
            r.counter("slipstream_messages_sent_total", "").init(transport=transport)
        r.counter("slipstream_refused_total", "").init(code="too_many_requests")
        self._tick_lag = TickLag()

    def frame_read(self, race: str, tick: int, timestamp_ms: int) -> None:
        """Note a frame's bus timestamp (for the tick lag)."""
        self._tick_lag.frame(race, tick, timestamp_ms)

    def ticks_emitted(self, ticks: Iterable[TickData], now_s: float | None = None) -> None:
        """Observe the tick lag of ``ticks`` just handed to the fans."""
        for lag in self._tick_lag.emitted(ticks, time.time() if now_s is None else now_s):
            self.tick_lag.observe(lag)
