"""One fan's session, for every transport (pure core: no I/O, no clock, no event loop).

A :class:`Fan` is fed events and answers with actions, in the manner of
``websockets``' protocol objects and ``h11``'s connection:

=====================================  ===========================================
event in                               actions out
=====================================  ===========================================
:meth:`Fan.open` (connected)           ``Send(hello)``
:meth:`Fan.receive` (a client message) acks, errors, replays, ``Close``
:meth:`Fan.control` (a parsed op)      the same, for transports that parse elsewhere
:meth:`Fan.resume` (subscribe + cursor) notices, replayed ticks, ``ReadHistory``
:meth:`Fan.history_chunk` (ticks read)  the replayed ticks
:meth:`Fan.history_end`                 the ring's ticks after them, then live
=====================================  ===========================================

Time comes in as arguments (``now``: the loop's monotonic seconds, for rate
limits; ``wall``: seconds since the epoch, for token expiry).

A fan that has caught up is *live*: from then on the node's :class:`~broadcast.fans.Fans`
registry writes it each tick's shared bytes (one write per fan per tick), and
decides what happens to it when it falls behind, stays behind, or its token
expires.  The adapters (``broadcast/ws.py``, ``broadcast/sse.py``,
``broadcast/longpoll.py``) only move bytes and carry out the actions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from broadcast.config import BroadcastConfig
from broadcast.fanout import EncodedTick
from broadcast.protocol import (
    CLOSE_BAD_INPUT,
    ProtocolError,
    Subscribe,
    encode_message,
    parse_control,
)
from broadcast.ring import ReplayRing, ResumePlan, notice_message, plan_resume
from slipstream.catalogue import CATALOGUE
from slipstream.codecs import CODECS
from slipstream.gate import SessionGate, close_reason
from slipstream.limits import Breach

if TYPE_CHECKING:
    from slipstream.metrics import Counter

__all__ = [
    "CLOSED",
    "HISTORY",
    "IDLE",
    "LIVE",
    "Action",
    "Close",
    "Fan",
    "FanNode",
    "ReadHistory",
    "Send",
    "Sink",
]

#: Writes framed bytes to the fan's connection (the adapter's, opaque to the core).
Sink = Callable[[bytes], Any]

IDLE = "idle"  # connected, no subscription
HISTORY = "history"  # waiting for ticks re-read from the bus
LIVE = "live"  # caught up: the registry writes it each tick
CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Send:
    """Send one server message (``event_id``: ``RACE:TICK`` of a tick message)."""

    message: bytes
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class Close:
    """Close the session with a WebSocket close code and a reason."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class ReadHistory:
    """Re-read the ticks of ``race`` after ``after`` from the bus, then call
    :meth:`Fan.history_chunk` per chunk and :meth:`Fan.history_end`."""

    race: str
    after: int


Action = Send | Close | ReadHistory


class FanNode(Protocol):
    """What a fan needs of its node (implemented by :class:`~broadcast.fans.Fans`)."""

    ring: ReplayRing
    config: BroadcastConfig
    known_cars: frozenset[int]
    m_keyframes: Counter
    m_replays: Counter
    m_replayed: Counter
    m_errors: Counter
    m_refused: Counter

    def hello(self, **extra: Any) -> bytes: ...
    def history_reaches(self, race: str, after: int) -> bool: ...
    def go_live(self, fan: Fan) -> None: ...
    def go_idle(self, fan: Fan) -> None: ...


def tick_id(tick: EncodedTick) -> str:
    """The SSE event id (and cursor text) of a tick."""
    return f"{tick.race}:{tick.tick}"


class Fan:
    """One fan of any transport (see module doc).

    Args:
        node: The node's registry.
        transport: ``ws``, ``sse`` or ``poll``.
        sink: Writes framed bytes to the fan (None for long-poll, which is never live).
        gate: The session's token and limits (None: an open node).
        fan_id: Id shown to operators (and an event stream's id).
        remote: The fan's address, for operators.
        room: Whether the connection has room again after falling behind (None:
            the adapter says so itself, with :meth:`~broadcast.fans.Fans.resume`).
    """

    __slots__ = (
        "behind_from",
        "behind_ticks",
        "errors",
        "gate",
        "history_from",
        "id",
        "last_tick",
        "needs_keyframe",
        "node",
        "owner",
        "paused",
        "race",
        "remote",
        "resumes",
        "room",
        "sink",
        "state",
        "sub",
        "transport",
        "wait_until",
    )

    def __init__(
        self,
        node: FanNode,
        transport: str,
        sink: Sink | None,
        gate: SessionGate | None = None,
        fan_id: str = "",
        remote: str = "",
        room: Callable[[], bool] | None = None,
    ) -> None:
        self.node = node
        self.transport = transport
        self.sink = sink
        self.gate = gate
        self.id = fan_id
        self.remote = remote
        self.room = room
        self.state = IDLE
        self.sub: Subscribe | None = None
        self.race: str | None = None
        self.last_tick = -1
        self.needs_keyframe = True
        self.wait_until: tuple[str, int] | None = None
        self.behind_from: int | None = None
        self.behind_ticks = 0
        self.paused = False
        self.errors = 0
        self.history_from = -1
        #: Resumes from a cursor so far (adapters time them: see ``Hub.perform``).
        self.resumes = 0
        #: The adapter's object for this fan (its connection); never used by the core.
        self.owner: Any = None

    def __repr__(self) -> str:
        return f"<Fan {self.transport} {self.id} {self.state} {self.race}:{self.last_tick}>"

    # -- events ----------------------------------------------------------------

    def open(self, **extra: Any) -> list[Action]:
        """The connection is open: the hello (``extra``: transport fields)."""
        return [Send(self.node.hello(**extra))]

    def receive(self, data: str | bytes, now: float, wall: float) -> list[Action]:
        """A client control message (JSON text or msgpack)."""
        if self.state == CLOSED:
            return []
        if self.gate is not None:
            breach = self.gate.on_message(len(data), now)
            if breach is not None:
                return self._breach(breach)
        node = self.node
        try:
            op, sub = parse_control(
                data,
                codecs=list(CODECS),
                default_codec=node.config.default_codec,
                known_cars=node.known_cars or None,
            )
        except ProtocolError as exc:
            return self.error(exc)
        return self.control(op, sub, now, wall)

    def control(self, op: str, sub: Subscribe | None, now: float, wall: float) -> list[Action]:
        """A parsed control operation (``sub`` for ``subscribe``)."""
        if self.state == CLOSED:
            return []
        if op == "ping":
            return [Send(encode_message({"t": "pong"}))]
        if op == "unsubscribe":
            self.node.go_idle(self)
            self.state, self.sub = IDLE, None
            return [Send(encode_message({"t": "unsubscribed"}))]
        if op == "keyframe":
            self.node.m_keyframes.inc(reason="requested")
            self.needs_keyframe = True
            if self.state == LIVE:
                self.node.go_live(self)  # moves it to its group's keyframe list
            return []
        if sub is None:
            return []
        if self.gate is not None:
            scoped = self.gate.on_subscribe(sub.cars, sub.groups, now, wall)
            if isinstance(scoped, Breach):
                return self._breach(scoped)
            sub = dataclasses.replace(sub, cars=scoped[0], groups=scoped[1])
        return self.resume(sub, ack=True)

    def error(self, exc: ProtocolError) -> list[Action]:
        """A bad client message: an ``error`` message, and a close after too many."""
        self.errors += 1
        self.node.m_errors.inc(code=exc.code)
        out: list[Action] = [
            Send(encode_message({"t": "error", "code": exc.code, "message": exc.message}))
        ]
        if self.errors >= self.node.config.max_errors:
            out += self.close(CLOSE_BAD_INPUT, "too many bad messages")
        return out

    def resume(self, sub: Subscribe, ack: bool = False) -> list[Action]:
        """Subscribe (``ack``: answer ``subscribed``) and resume from ``sub.cursor``."""
        node = self.node
        ring = node.ring
        latest = ring.latest
        out: list[Action] = []
        if ack:
            out.append(Send(_ack(sub, latest)))
        if sub.cursor is None and (
            self.state == LIVE or (self.state == IDLE and self.race is not None)
        ):
            # A change mid-stream (or a subscribe after an unsubscribe on the same
            # connection): the next tick is a keyframe of the new subscription.
            self.state, self.sub = LIVE, sub
            self.needs_keyframe = True
            node.go_live(self)
            return out
        node.go_idle(self)
        self.state, self.sub = IDLE, sub
        if sub.cursor is not None:
            self.resumes += 1
        plan = plan_resume(ring, sub.cursor, sub.keyframe)
        history = False
        if plan.jump and sub.cursor is not None and latest is not None:
            history = node.history_reaches(sub.cursor.race, sub.cursor.tick)
            if history:  # past the ring, but the bus still has it
                plan = ResumePlan([], None, False, sub.keyframe)
        if plan.notice is not None:
            out.append(Send(plan.notice))
            node.m_keyframes.inc(reason="resume_gap")
        self.wait_until = None
        self.needs_keyframe = plan.keyframe_first
        self.race, self.last_tick = None, -1
        if plan.jump and latest is not None:
            self.needs_keyframe = True
            self._send_tick(latest, out, replayed=False)  # with its events, as live
        elif sub.cursor is not None:
            self.race, self.last_tick = sub.cursor.race, sub.cursor.tick
            if plan.wait_until >= 0:
                self.wait_until = (sub.cursor.race, plan.wait_until)
            if (plan.replay or history) and self.transport != "poll":
                node.m_replays.inc()
            if history:
                out.append(self._read_history())
                return out
        self._catch_up(out, history_tried=False)
        return out

    def history_chunk(self, ticks: list[EncodedTick]) -> list[Action]:
        """Ticks re-read from the bus, in order (after a :class:`ReadHistory`)."""
        out: list[Action] = []
        if self.state != HISTORY or self.sub is None:
            return out
        for tick in ticks:
            if tick.race == self.race and tick.tick > self.last_tick:
                self._send_tick(tick, out)
        return out

    def history_end(self, more: bool = False) -> list[Action]:
        """The re-read ended: what the ring holds after it, then live.

        Args:
            more: The reader stopped before the ring on purpose (long-poll reads
                one chunk per response): don't report a gap, just stop here.
        """
        out: list[Action] = []
        if self.state != HISTORY:
            return out
        self.state = IDLE
        if self.race is None:
            return out
        if more and self.node.ring.after(self.race, self.last_tick) is None:
            return out
        # Only a re-read that got somewhere is worth another try.
        self._catch_up(out, history_tried=self.last_tick <= self.history_from)
        return out

    def close(self, code: int, reason: str) -> list[Action]:
        """Close the session (no more writes from the registry)."""
        if self.state == CLOSED:
            return []
        self.node.go_idle(self)
        self.state = CLOSED
        return [Close(code, close_reason(reason))]

    def closed(self) -> None:
        """The connection is gone."""
        if self.state != CLOSED:
            self.node.go_idle(self)
            self.state = CLOSED

    @property
    def cursor(self) -> tuple[str | None, int]:
        """(race, last tick sent) as far as this object knows (live fans: see the registry)."""
        return self.race, self.last_tick

    # -- internals ---------------------------------------------------------------

    def _breach(self, breach: Breach) -> list[Action]:
        self.node.m_refused.inc(code=str(breach.close_code))
        return self.close(breach.close_code, breach.reason)

    def _read_history(self) -> ReadHistory:
        assert self.race is not None
        self.state = HISTORY
        self.history_from = self.last_tick
        return ReadHistory(self.race, self.last_tick)

    def _send_tick(self, tick: EncodedTick, out: list[Action], replayed: bool = True) -> None:
        assert self.sub is not None
        for event in tick.event_messages():
            out.append(Send(event))
        out.append(Send(tick.message(self.sub.key, self.needs_keyframe), tick_id(tick)))
        self.needs_keyframe = False
        if replayed and self.transport != "poll":
            self.node.m_replayed.inc()
        self.race, self.last_tick = tick.race, tick.tick

    def _catch_up(self, out: list[Action], history_tried: bool) -> None:
        """Send what the ring holds after (race, last_tick), then go live.

        No tick slips between the two: this runs in one synchronous step, and
        the registry writes live ticks only from the next published tick on.
        """
        node = self.node
        latest = node.ring.latest
        if self.race is not None and latest is not None and latest.race == self.race:
            pending = node.ring.after(self.race, self.last_tick)
            if (
                pending is None
                and not history_tried
                and node.history_reaches(self.race, self.last_tick)
            ):
                # Live ticks pushed the ring past us during a replay from the bus:
                # the bus still has the ticks in between, so re-read those too.
                out.append(self._read_history())
                return
            if pending is None:
                self.needs_keyframe = True
                text = f"ticks after {self.last_tick} are past what this node can replay"
                out.append(
                    Send(notice_message("resume_gap", text, self.race, self.last_tick + 1, None))
                )
                node.m_keyframes.inc(reason="resume_gap")
            else:
                for tick in pending:
                    self._send_tick(tick, out)
        self.state = LIVE
        node.go_live(self)


def _ack(sub: Subscribe, latest: EncodedTick | None) -> bytes:
    return encode_message(
        {
            "t": "subscribed",
            "cars": list(sub.cars) if sub.cars is not None else None,
            "groups": [CATALOGUE.groups[g].name for g in sub.groups],
            "codec": sub.codec,
            "race": latest.race if latest else None,
            "tick": latest.tick if latest else None,
        }
    )
