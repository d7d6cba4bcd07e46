"""The fans of a node, of every transport, and each tick's fan-out plan (pure core).

:class:`Fans` is what every :class:`~broadcast.fan.Fan` calls its node: it holds
the replay ring, the node's settings and counters, and one registry of fans.
Live fans sit in **groups** keyed by (transport, subscription): a tick is
encoded once per group and framed once per group (:mod:`broadcast.framing`),
and the same ``bytes`` object is written to every member; the tick's events
travel in the same write.  Per tick, nothing is built per fan.

:meth:`Fans.plan` turns a published tick into a :class:`TickPlan`: first the
per-fan actions (a ``conflated`` notice for a fan that has room again, a close
for one that stayed behind), then the shared writes.  The adapter carries it
out at once, in that order.

Falling behind: when a connection's unsent bytes pass the limit, its adapter
calls :meth:`Fans.pause` (WebSocket: the transport's ``pause_writing``; a
stream: its sink finds the buffer full and drops the tick).  The fan leaves its
group; ticks go by without it; when it has room again (:meth:`Fans.resume`, or
its ``room()`` says so at a tick) it gets a ``conflated`` notice and the next
tick as a keyframe; after ``slow_fan_ticks`` ticks behind it is closed (4008).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from broadcast.config import BroadcastConfig
from broadcast.fan import CLOSED, LIVE, Action, Fan, Send, Sink, tick_id
from broadcast.fanout import EncodedTick, FanoutStats, SubKey
from broadcast.framing import FRAMERS, Framer
from broadcast.protocol import CLOSE_TOO_SLOW, PROTOCOL_VERSION, SUBPROTOCOL, encode_message
from broadcast.ring import ReplayRing, notice_message
from slipstream.auth import CLOSE_TOKEN_EXPIRED
from slipstream.catalogue import CATALOGUE
from slipstream.codecs import CODECS
from slipstream.metrics import Registry

__all__ = ["Fans", "TickPlan"]

GroupKey = tuple[str, SubKey]


@dataclass(slots=True, eq=False)
class _Group:
    """Live fans of one transport and subscription."""

    transport: str
    key: SubKey
    framer: Framer
    members: dict[Fan, Sink] = field(default_factory=dict)  # get this tick as a delta
    keyframe: dict[Fan, Sink] = field(default_factory=dict)  # get this tick as a keyframe
    race: str | None = None  # the tick the members are at
    tick: int = -1


@dataclass(slots=True)
class TickPlan:
    """One tick's fan-out: per-fan actions first, then shared writes.

    Attributes:
        actions: ``(fan, action)`` for the few fans whose state changed.
        writes: ``(transport, bytes, sinks)``: write the bytes to every sink.
        recipients: Fans written this tick.
        messages: Server messages those writes carry, counted per fan.
        size: Bytes those writes carry, counted per fan.
    """

    actions: list[tuple[Fan, Action]] = field(default_factory=list)
    writes: list[tuple[str, bytes, list[Sink]]] = field(default_factory=list)
    recipients: int = 0
    messages: int = 0
    size: int = 0


class Fans:
    """Ring, settings, counters and live fans of one node (see module doc)."""

    def __init__(self, config: BroadcastConfig, registry: Registry) -> None:
        self.config = config
        self.ring = ReplayRing(config.replay_ticks)
        self.stats = FanoutStats()
        self.known_cars: frozenset[int] = frozenset()
        #: Whether resumes past the ring may re-read the bus (set by the node).
        self.history_index: Any = None
        self.fans: dict[str, Fan] = {}  # every connected fan by id, any transport
        self._counts: dict[str, int] = {}
        self._groups: dict[GroupKey, _Group] = {}
        self._group_of: dict[Fan, _Group] = {}
        self._waiting: dict[Fan, tuple[str, int]] = {}
        self._behind: dict[Fan, bool] = {}  # fan -> has room again
        self._expiry: list[tuple[float, int, Fan]] = []
        self._order = itertools.count()
        self._publishing: EncodedTick | None = None  # the tick whose plan is being written
        r = registry
        self.m_keyframes = r.counter(
            "slipstream_keyframes_forced_total", "Keyframes sent in place of deltas, by reason"
        )
        self.m_replays = r.counter(
            "slipstream_replays_total", "Resumes served by replaying missed ticks"
        )
        self.m_replayed = r.counter(
            "slipstream_replayed_ticks_total", "Ticks sent again to resuming fans"
        )
        self.m_errors = r.counter("slipstream_client_errors_total", "Bad client input, by code")
        self.m_refused = r.counter(
            "slipstream_refused_total",
            "Connections, polls and sessions refused or closed by auth and limits, by code",
        )
        self.m_slow_drops = r.counter(
            "slipstream_slow_fan_drops_total", "Ticks skipped for fans that fell behind"
        )
        self.m_slow_closes = r.counter(
            "slipstream_slow_fan_disconnects_total", "Fans closed for staying behind"
        )

    def clear(self) -> None:
        """Forget every tick and fan (the node stopped; frees the ring's memory)."""
        self.ring = ReplayRing(self.config.replay_ticks)
        self.fans.clear()
        self._counts.clear()
        self._groups.clear()
        self._group_of.clear()
        self._waiting.clear()
        self._behind.clear()
        self._expiry.clear()

    # -- what a fan asks of its node -------------------------------------------------

    def hello(self, **extra: Any) -> bytes:
        """The hello message of a new connection or stream (``extra``: transport fields)."""
        latest = self.ring.latest
        cfg = self.config
        return encode_message(
            {
                "t": "hello",
                "v": PROTOCOL_VERSION,
                "protocol": SUBPROTOCOL,
                "server": cfg.server_id,
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

    def history_reaches(self, race: str, after: int) -> bool:
        """Whether the ticks between ``after`` and the ring may be re-read from the bus."""
        ring = self.ring
        index = self.history_index
        if index is None or ring.race != race or not len(ring):
            return False
        first = next(iter(ring)).tick
        return bool(
            first - 1 > after >= first - 1 - self.config.history_ticks and index.covers(race, after)
        )

    def go_live(self, fan: Fan) -> None:
        """Put a caught-up fan (back) into its group; a needed keyframe goes first."""
        self._leave_group(fan)
        sub, sink = fan.sub, fan.sink
        if sub is None or sink is None or fan.state != LIVE:
            return
        if fan.paused:
            self._behind.setdefault(fan, False)
            return
        if fan.wait_until is not None:
            self._waiting[fan] = fan.wait_until
            return
        self._join(fan, sub.key, sink)

    def go_idle(self, fan: Fan) -> None:
        """Take a fan out of the live stream (unsubscribed, resubscribing, closing)."""
        self._leave_group(fan)
        self._waiting.pop(fan, None)
        self._behind.pop(fan, None)

    # -- registry ------------------------------------------------------------------

    def add(self, fan: Fan, expires_at: float | None = None) -> None:
        """Register a connected fan (``expires_at``: its token's expiry, epoch seconds)."""
        self.fans[fan.id] = fan
        self._counts[fan.transport] = self._counts.get(fan.transport, 0) + 1
        if expires_at is not None:
            heapq.heappush(self._expiry, (expires_at, next(self._order), fan))

    def remove(self, fan: Fan) -> None:
        """The fan's connection is gone."""
        fan.closed()
        if self.fans.pop(fan.id, None) is not None:
            self._counts[fan.transport] -= 1
        heap = self._expiry
        if len(heap) > 64 and len(heap) > 2 * len(self.fans):
            # Gone fans' expiry entries: drop them in one pass now and then, not one by one.
            self._expiry = [entry for entry in heap if entry[2].state != CLOSED]
            heapq.heapify(self._expiry)

    def count(self, transport: str) -> int:
        """Connected fans of a transport."""
        return self._counts.get(transport, 0)

    def __iter__(self) -> Iterator[Fan]:
        return iter(list(self.fans.values()))

    def position(self, fan: Fan) -> tuple[str | None, int]:
        """(race, tick) a fan has been sent up to."""
        group = self._group_of.get(fan)
        if group is not None and group.race is not None and fan in group.members:
            return group.race, group.tick
        return fan.race, fan.last_tick

    def expired(self, wall: float) -> list[tuple[Fan, Action]]:
        """Close the fans whose token expired by ``wall`` (epoch seconds)."""
        out: list[tuple[Fan, Action]] = []
        heap = self._expiry
        while heap and heap[0][0] <= wall:
            _, _, fan = heapq.heappop(heap)
            for action in fan.close(
                CLOSE_TOKEN_EXPIRED, "token expired; reconnect with a fresh token and your cursor"
            ):
                out.append((fan, action))
        return out

    # -- flow control ---------------------------------------------------------------

    def pause(self, fan: Fan, dropped: bool = False) -> None:
        """The fan's connection is full (``dropped``: the tick being written was dropped)."""
        fan.paused = True
        if fan.state != LIVE:
            return
        self._leave_group(fan)
        self._waiting.pop(fan, None)
        self._behind[fan] = False
        tick = self._publishing
        if dropped and tick is not None and fan.behind_from is None:
            fan.behind_from = tick.tick
            fan.behind_ticks = 1
            self.m_slow_drops.inc()

    def resume(self, fan: Fan) -> None:
        """The fan's connection has room again: conflated notice and keyframe at the next tick."""
        fan.paused = False
        if fan in self._behind:
            self._behind[fan] = True

    # -- a tick ----------------------------------------------------------------------

    def publish(self, tick: EncodedTick) -> None:
        """Add a new tick to the ring (call :meth:`plan` for its fan-out)."""
        self.ring.append(tick)

    def plan(self, tick: EncodedTick) -> TickPlan:
        """The fan-out of ``tick`` (see :class:`TickPlan`); carry it out at once."""
        self._publishing = tick
        plan = TickPlan()
        if self._waiting:
            self._release_waiting(tick)
        if self._behind:
            self._plan_behind(tick, plan)
        events = tick.event_messages()
        recipients = size = 0
        for group in list(self._groups.values()):
            if group.race is not None and group.race != tick.race:
                # A new race starts from a keyframe (the fans' state is of the old one).
                group.keyframe.update(group.members)
                group.members.clear()
            for keyframe, fans in ((False, group.members), (True, group.keyframe)):
                if not fans:
                    continue
                message = tick.message(group.key, keyframe)
                data = group.framer([*events, message], tick_id(tick))
                plan.writes.append((group.transport, data, list(fans.values())))
                recipients += len(fans)
                size += len(fans) * len(data)
            if group.keyframe:
                group.members.update(group.keyframe)
                for fan in group.keyframe:
                    fan.needs_keyframe = False
                group.keyframe.clear()
            if not group.members:
                del self._groups[(group.transport, group.key)]
                continue
            group.race, group.tick = tick.race, tick.tick
        plan.recipients = recipients
        plan.messages = recipients * (1 + len(events))
        plan.size = size
        return plan

    # -- internals -------------------------------------------------------------------

    def _join(self, fan: Fan, key: SubKey, sink: Sink) -> None:
        gkey = (fan.transport, key)
        group = self._groups.get(gkey)
        if group is None:
            group = self._groups[gkey] = _Group(fan.transport, key, FRAMERS[fan.transport])
            group.race, group.tick = fan.race, fan.last_tick
        latest = self.ring.latest
        stale = latest is not None and fan.race != latest.race
        if fan.needs_keyframe or stale or (group.race, group.tick) != (fan.race, fan.last_tick):
            group.keyframe[fan] = sink
        else:
            group.members[fan] = sink
        self._group_of[fan] = group

    def _leave_group(self, fan: Fan) -> None:
        group = self._group_of.pop(fan, None)
        if group is None:
            return
        if fan in group.members:
            del group.members[fan]
            fan.race, fan.last_tick = group.race, group.tick
        group.keyframe.pop(fan, None)

    def _release_waiting(self, tick: EncodedTick) -> None:
        for fan, (race, until) in list(self._waiting.items()):
            if race == tick.race and tick.tick <= until:
                continue
            del self._waiting[fan]
            fan.wait_until = None
            sub, sink = fan.sub, fan.sink
            if sub is not None and sink is not None:
                if fan.race != tick.race:
                    fan.needs_keyframe = True
                self._join_at(fan, sub.key, sink, tick)

    def _join_at(self, fan: Fan, key: SubKey, sink: Sink, tick: EncodedTick) -> None:
        """Join so that ``tick`` is the fan's next (as a delta when it follows on)."""
        group = self._groups.get((fan.transport, key))
        follows = fan.race == tick.race and not fan.needs_keyframe
        if group is not None and follows and group.race is not None:
            fan.race, fan.last_tick = group.race, group.tick  # the group's next is this tick
        elif group is None and follows:
            fan.race, fan.last_tick = tick.race, tick.tick - 1
        else:
            fan.needs_keyframe = True
        self._join(fan, key, sink)

    def _plan_behind(self, tick: EncodedTick, plan: TickPlan) -> None:
        limit = self.config.slow_fan_ticks
        for fan, room in list(self._behind.items()):
            if not room and fan.room is not None and fan.room():
                room = True
                fan.paused = False
            if not room:
                if fan.behind_from is None:
                    fan.behind_from = tick.tick
                fan.behind_ticks += 1
                self.m_slow_drops.inc()
                if fan.behind_ticks >= limit:
                    self.m_slow_closes.inc()
                    for action in fan.close(CLOSE_TOO_SLOW, "too slow: stayed behind the stream"):
                        plan.actions.append((fan, action))
                continue
            del self._behind[fan]
            if fan.behind_from is not None:
                text = (
                    f"you fell behind: ticks {fan.behind_from}..{tick.tick - 1} were "
                    "dropped; this tick is a keyframe"
                )
                notice = notice_message(
                    "conflated", text, tick.race, fan.behind_from, tick.tick - 1
                )
                plan.actions.append((fan, Send(notice)))
                self.m_keyframes.inc(reason="slow")
            fan.behind_from, fan.behind_ticks = None, 0
            fan.needs_keyframe = True
            sub, sink = fan.sub, fan.sink
            if sub is not None and sink is not None and fan.state == LIVE:
                self._join(fan, sub.key, sink)
