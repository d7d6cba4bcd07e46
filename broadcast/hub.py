"""The hub: ticks in, fan-out to WebSocket sessions, wake-ups for long-polls.

The hub lives on the event loop but does no waiting of its own: the server
feeds it ticks (:meth:`Hub.publish`), and it writes each subscription's shared
message to every connection in that state with ``websockets``' ``broadcast()``
(no backpressure, so a connection whose unsent bytes pass the limit is
skipped: it is *behind*, gets a ``conflated`` notice and a keyframe when it
catches up, and is closed with 4008 if it stays behind).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Iterable
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection, broadcast

from broadcast.config import BroadcastConfig
from broadcast.fanout import EncodedTick, FanoutStats, SubKey
from broadcast.history import BusHistory, HistoryUnavailable
from broadcast.protocol import CLOSE_TOO_SLOW, PROTOCOL_VERSION, SUBPROTOCOL, encode_message
from broadcast.ring import ReplayRing, notice_message
from broadcast.ticks import TickData
from slipstream.catalogue import CATALOGUE
from slipstream.codecs import CODECS
from slipstream.metrics import Registry

if TYPE_CHECKING:
    from broadcast.session import Session

__all__ = ["Hub"]

logger = logging.getLogger(__name__)


class Hub:
    """State shared by every connection of a node: ring, sessions, metrics."""

    def __init__(self, config: BroadcastConfig, registry: Registry) -> None:
        self.config = config
        self.ring = ReplayRing(config.replay_ticks)
        self.sessions: set[Session] = set()
        self.stats = FanoutStats()
        self.known_cars: frozenset[int] = frozenset()
        self.history: BusHistory | None = None
        self._tick_event = asyncio.Event()
        self.poll_waiting = 0
        self.closing = False
        r = registry
        self.m_subscribers = r.gauge("slipstream_subscribers", "Connected fans by transport")
        self.m_messages = r.counter(
            "slipstream_messages_sent_total", "Messages sent to fans by transport"
        )
        self.m_bytes = r.counter("slipstream_bytes_sent_total", "Bytes sent to fans by transport")
        self.m_ticks = r.counter("slipstream_broadcast_ticks_total", "Ticks emitted by this node")
        self.m_replays = r.counter(
            "slipstream_replays_total", "Resumes served by replaying missed ticks"
        )
        self.m_replayed = r.counter(
            "slipstream_replayed_ticks_total", "Ticks sent again to resuming fans"
        )
        self.m_history = r.counter(
            "slipstream_history_ticks_total", "Ticks re-read from the bus for resumes past the ring"
        )
        self.m_keyframes = r.counter(
            "slipstream_keyframes_forced_total", "Keyframes sent in place of deltas, by reason"
        )
        self.m_slow_drops = r.counter(
            "slipstream_slow_fan_drops_total", "Ticks skipped for fans that fell behind"
        )
        self.m_slow_closes = r.counter(
            "slipstream_slow_fan_disconnects_total", "Fans closed for staying behind"
        )
        self.m_errors = r.counter("slipstream_client_errors_total", "Bad client input, by code")
        self.m_encode = r.counter(
            "slipstream_tick_encode_seconds_total", "Time spent encoding and assembling ticks"
        )
        self.m_fanout = r.counter(
            "slipstream_tick_fanout_seconds_total", "Time spent writing ticks to WebSockets"
        )
        self.m_last_fanout = r.gauge(  # not ..._fanout_seconds: that is the counter's family
            "slipstream_tick_last_fanout_seconds", "Encode and fan-out time of the latest tick"
        )
        self.m_encodes = r.gauge(
            "slipstream_tick_encodes", "Codec encodes of the latest tick (one per codec in use)"
        )
        self.m_subscribers.set_function(lambda: float(len(self.sessions)), transport="ws")
        self.m_subscribers.set_function(lambda: float(self.poll_waiting), transport="poll")

    # -- ticks --------------------------------------------------------------

    def publish(self, ticks: Iterable[TickData], known_cars: frozenset[int]) -> None:
        """Add new ticks to the ring, fan them out and wake long-polls."""
        self.known_cars = known_cars
        published = False
        for data in ticks:
            encoded = EncodedTick(data, self.stats)
            self.ring.append(encoded)
            self.m_ticks.inc()
            self._fan_out(encoded)
            published = True
        if published:
            self._tick_event.set()
            self._tick_event = asyncio.Event()

    def history_reaches(self, race: str, after: int) -> bool:
        """Whether the ticks between ``after`` and the ring may be re-read from the bus."""
        ring = self.ring
        if self.history is None or ring.race != race or not len(ring):
            return False
        first = next(iter(ring)).tick
        return (
            first - 1 > after >= first - 1 - self.config.history_ticks
            and self.history.index.covers(race, after)
        )

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

    def close(self) -> None:
        """The node is stopping: wake every held long-poll."""
        self.closing = True
        self._tick_event.set()

    def hello(self, server_id: str, **extra: Any) -> bytes:
        """The hello message of a new connection or stream (``extra``: transport fields)."""
        latest = self.ring.latest
        cfg = self.config
        return encode_message(
            {
                "t": "hello",
                "v": PROTOCOL_VERSION,
                "protocol": SUBPROTOCOL,
                "server": server_id,
                "race": latest.race if latest else None,
                "tick": latest.tick if latest else None,
                "catalogue": CATALOGUE.hash,
                "heartbeat_s": cfg.ping_interval_s,
                "replay_ticks": cfg.replay_ticks,
                "codecs": list(CODECS),
                "default_codec": cfg.default_codec,
                "max_message_bytes": cfg.max_message_bytes,
                **extra,
            }
        )

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

    def _fan_out(self, tick: EncodedTick) -> None:
        start = time.perf_counter()
        encodes = self.stats.encodes
        limit = self.config.max_send_buffer_bytes
        targets: dict[tuple[SubKey, bool], list[ServerConnection]] = {}
        everyone: list[ServerConnection] = []
        for session in list(self.sessions):
            sub = session.sub
            if sub is None or not session.live:
                continue
            if session.wait_until is not None:
                race, until = session.wait_until
                if race == tick.race and tick.tick <= until:
                    continue
                session.wait_until = None
            conn = session.conn
            transport = conn.transport
            if transport is None or transport.is_closing():
                continue
            if transport.get_write_buffer_size() > limit:
                self._behind(session, tick)
                continue
            if session.behind_from is not None:
                text = (
                    f"you fell behind: ticks {session.behind_from}..{tick.tick - 1} were "
                    "dropped; this tick is a keyframe"
                )
                self._send_one(
                    conn,
                    notice_message(
                        "conflated", text, tick.race, session.behind_from, tick.tick - 1
                    ),
                )
                session.behind_from = None
                session.behind_ticks = 0
                self.m_keyframes.inc(reason="slow")
            # A new race starts from a keyframe (the fan's state is of the old one).
            keyframe = session.needs_keyframe or (
                session.race is not None and session.race != tick.race
            )
            targets.setdefault((sub.key, keyframe), []).append(conn)
            everyone.append(conn)
            session.needs_keyframe = False
            session.race = tick.race
            session.last_tick = tick.tick
        for event in tick.event_messages():
            self._broadcast(everyone, event)
        encode_s = 0.0
        for (key, keyframe), conns in targets.items():
            t0 = time.perf_counter()
            message = tick.message(key, keyframe)
            encode_s += time.perf_counter() - t0
            self._broadcast(conns, message)
        total = time.perf_counter() - start
        self.m_encode.inc(encode_s)
        self.m_fanout.inc(max(0.0, total - encode_s))
        self.m_last_fanout.set(total)
        self.m_encodes.set(float(self.stats.encodes - encodes))

    def _behind(self, session: Session, tick: EncodedTick) -> None:
        self.m_slow_drops.inc()
        if session.behind_from is None:
            session.behind_from = tick.tick
        session.behind_ticks += 1
        session.needs_keyframe = True
        if session.behind_ticks == self.config.slow_fan_ticks:
            self.m_slow_closes.inc()
            logger.info("closing a fan that stayed behind for %d ticks", session.behind_ticks)
            session.close_soon(CLOSE_TOO_SLOW, "too slow: stayed behind the stream")

    def _broadcast(self, conns: list[ServerConnection], message: bytes) -> None:
        if not conns:
            return
        broadcast(conns, message)
        self.sent("ws", len(conns), len(conns) * len(message))

    def _send_one(self, conn: ServerConnection, message: bytes) -> None:
        self._broadcast([conn], message)
