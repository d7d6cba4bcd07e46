"""The node's live side on the event loop: ticks in, fan-out plans carried out.

The decisions are the pure core's (:class:`~broadcast.fans.Fans` and each
:class:`~broadcast.fan.Fan`); the hub only does what they say: it publishes
ticks and writes each tick's plan (the same bytes to every fan of a group, one
write per fan), carries out per-fan actions through the fan's connection,
re-reads ticks from the bus for resumes past the ring, closes fans whose token
expired, and wakes long-polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Iterable
from typing import Protocol

from broadcast.config import BroadcastConfig
from broadcast.fan import Action, Close, Fan, ReadHistory, Send
from broadcast.fanout import EncodedTick
from broadcast.fans import Fans
from broadcast.history import BusHistory, HistoryUnavailable
from broadcast.metrics import NodeMetrics
from broadcast.ring import ReplayRing, notice_message
from broadcast.ticks import TickData
from slipstream.metrics import Registry

__all__ = ["Connection", "Hub"]

logger = logging.getLogger(__name__)

#: How often token expiry is checked.
EXPIRY_CHECK_S = 1.0


class Connection(Protocol):
    """What a transport adapter does for its fan's actions."""

    def send(self, message: bytes, event_id: str | None) -> None:
        """Write one server message, framed for the transport."""

    def close(self, code: int, reason: str) -> None:
        """Close the session (WebSocket close code and reason)."""


class Hub:
    """The fans of a node and the I/O their decisions need (see module doc)."""

    def __init__(self, config: BroadcastConfig, registry: Registry) -> None:
        self.config = config
        self.fans = Fans(config, registry)
        self.metrics = NodeMetrics(registry)
        self.history: BusHistory | None = None
        self._tick_event = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._expiry: asyncio.Task[None] | None = None
        self.poll_waiting = 0
        self.closing = False
        fans = self.fans
        self.stats = fans.stats
        self.m_keyframes = fans.m_keyframes
        self.m_replays = fans.m_replays
        self.m_replayed = fans.m_replayed
        self.m_errors = fans.m_errors
        self.m_slow_drops = fans.m_slow_drops
        self.m_slow_closes = fans.m_slow_closes
        r = registry
        self.m_subscribers = r.gauge("slipstream_subscribers", "Connected fans by transport")
        self.m_messages = r.counter(
            "slipstream_messages_sent_total", "Messages sent to fans by transport"
        )
        self.m_bytes = r.counter("slipstream_bytes_sent_total", "Bytes sent to fans by transport")
        self.m_ticks = r.counter("slipstream_broadcast_ticks_total", "Ticks emitted by this node")
        self.m_history = r.counter(
            "slipstream_history_ticks_total", "Ticks re-read from the bus for resumes past the ring"
        )
        self.m_encode = r.counter(
            "slipstream_tick_encode_seconds_total", "Time spent encoding and assembling ticks"
        )
        self.m_fanout = r.counter(
            "slipstream_tick_fanout_seconds_total", "Time spent writing ticks to fans"
        )
        self.m_last_fanout = r.gauge(  # not ..._fanout_seconds: that is the counter's family
            "slipstream_tick_last_fanout_seconds", "Encode and fan-out time of the latest tick"
        )
        self.m_encodes = r.gauge(
            "slipstream_tick_encodes", "Codec encodes of the latest tick (one per codec in use)"
        )
        for transport in ("ws", "sse"):
            self.m_subscribers.set_function(
                lambda t=transport: float(fans.count(t)),  # type: ignore[misc]
                transport=transport,
            )
        self.m_subscribers.set_function(lambda: float(self.poll_waiting), transport="poll")

    @property
    def ring(self) -> ReplayRing:
        """The replay ring."""
        return self.fans.ring

    @property
    def known_cars(self) -> frozenset[int]:
        """Cars of the current race."""
        return self.fans.known_cars

    def start(self) -> None:
        """Start closing fans whose token expires (call on the running loop)."""
        if self._expiry is None:
            self._expiry = asyncio.get_running_loop().create_task(
                self._expire_loop(), name="broadcast-expiry"
            )

    # -- ticks --------------------------------------------------------------

    def publish(self, ticks: Iterable[TickData], known_cars: frozenset[int]) -> None:
        """Add new ticks to the ring, fan them out and wake long-polls."""
        self.fans.known_cars = known_cars
        published = False
        for data in ticks:
            encoded = EncodedTick(data, self.stats)
            self.fans.publish(encoded)
            self.m_ticks.inc()
            self._fan_out(encoded)
            published = True
        if published:
            self._tick_event.set()
            self._tick_event = asyncio.Event()

    def _fan_out(self, tick: EncodedTick) -> None:
        start = time.perf_counter()
        encodes = self.stats.encodes
        plan = self.fans.plan(tick)
        planned = time.perf_counter()
        for fan, action in plan.actions:
            self.perform(fan, (action,))
        for _, data, sinks in plan.writes:
            for sink in sinks:
                try:  # noqa: SIM105 (a context manager per write costs more than the write)
                    sink(data)
                except RuntimeError:
                    pass  # uvloop: the transport closed; its connection_lost removes the fan
        end = time.perf_counter()
        for transport, data, sinks in plan.writes:
            self.sent(transport, len(sinks), len(sinks) * len(data))
        self.m_encode.inc(planned - start)
        self.m_fanout.inc(end - planned)
        self.metrics.encode.observe(planned - start)
        self.metrics.fanout.observe(end - planned)
        self.m_last_fanout.set(end - start)
        self.m_encodes.set(float(self.stats.encodes - encodes))

    def close(self) -> None:
        """The node is stopping: wake every held long-poll, stop the timers."""
        self.closing = True
        self._tick_event.set()
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        for task in list(self._tasks):
            task.cancel()

    def shutdown_notice(self) -> bytes:
        """The ``shutdown`` notice every fan gets when the node stops."""
        latest = self.ring.latest
        return notice_message(
            "shutdown",
            "this node is shutting down; reconnect (to any node) with your cursor",
            latest.race if latest else None,
            None,
            latest.tick if latest else None,
        )

    async def wait_tick(self, timeout_s: float) -> bool:
        """Wait for the next tick; False on timeout."""
        event = self._tick_event
        try:
            async with asyncio.timeout(timeout_s):
                await event.wait()
        except TimeoutError:
            return False
        return True

    def sent(self, transport: str, messages: int, size: int) -> None:
        """Count messages and bytes sent."""
        self.m_messages.inc(float(messages), transport=transport)
        self.m_bytes.inc(float(size), transport=transport)

    # -- actions -------------------------------------------------------------

    def perform(
        self, fan: Fan, actions: Iterable[Action], resume_started: float | None = None
    ) -> None:
        """Carry out a fan's actions through its connection (``fan.owner``).

        Args:
            resume_started: ``perf_counter()`` when the event that made these
                actions came in, if it was a resume: its time is observed once
                the fan is live (after any re-read from the bus).
        """
        conn: Connection = fan.owner
        history = None
        for action in actions:
            if isinstance(action, Send):
                conn.send(action.message, action.event_id)
            elif isinstance(action, Close):
                conn.close(action.code, action.reason)
            elif isinstance(action, ReadHistory):
                history = action
        if history is not None:
            task = asyncio.get_running_loop().create_task(
                self._replay(fan, history, resume_started)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif resume_started is not None:
            self.metrics.resume.observe(time.perf_counter() - resume_started)

    async def _replay(self, fan: Fan, action: ReadHistory, started: float | None) -> None:
        """Re-read ticks from the bus for a resuming fan, chunk by chunk."""
        try:
            async with contextlib.aclosing(
                self.history_chunks(action.race, action.after)
            ) as chunks:
                async for chunk in chunks:
                    self.perform(fan, fan.history_chunk(chunk))
        except HistoryUnavailable as exc:
            # What was sent stands; history_end() notices the gap that is left.
            logger.info("resume from the bus stopped: %s", exc)
        self.perform(fan, fan.history_end(), started)

    def history_reaches(self, race: str, after: int) -> bool:
        """Whether the ticks between ``after`` and the ring may be re-read from the bus."""
        return self.fans.history_reaches(race, after)

    async def history_chunks(
        self, race: str, after: int
    ) -> AsyncGenerator[list[EncodedTick], None]:
        """Ticks after ``after`` up to the ring's first, re-read from the bus, a chunk at a time.

        Raises:
            HistoryUnavailable: The bus no longer has (some of) them.
        """
        if self.history is None or not self.history_reaches(race, after):
            raise HistoryUnavailable(f"ticks after {after} of race {race} are not available")
        first = next(iter(self.ring)).tick
        async with contextlib.aclosing(self.history.chunks(race, after, first - 1)) as chunks:
            async for chunk in chunks:
                self.m_history.inc(float(len(chunk)))
                yield chunk

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(EXPIRY_CHECK_S)
            for fan, action in self.fans.expired(time.time()):
                self.perform(fan, (action,))
