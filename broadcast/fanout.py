"""Encode once, send many: per-tick parts and per-subscription messages (pure core).

An :class:`EncodedTick` wraps one :class:`~broadcast.ticks.TickData`.  The
first subscriber that needs codec ``c`` makes it encode, vectorised over cars,
the keyframe parts of every known car and the delta parts of every car with a
frame at this tick, each packed once as ``[car, group, kind, base, payload]``.
A subscription's message is a small header plus a selection of those packed
parts, assembled once per (cars, groups, codec, keyframe-or-delta) and shared
by every subscriber in that state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from broadcast.protocol import (
    KIND_DELTA,
    KIND_KEYFRAME,
    encode_message,
    pack_part,
    tick_message,
)
from broadcast.ticks import TickData
from slipstream.catalogue import CATALOGUE
from slipstream.codecs import get_codec
from slipstream.records import RaceEvent

__all__ = ["EncodedTick", "FanoutStats", "SubKey", "event_message"]

SubKey = tuple[tuple[int, ...] | None, tuple[int, ...], str]
#: Distinct messages cached per tick; more subscriptions still work, uncached.
MAX_CACHED_MESSAGES = 256


@dataclass(slots=True)
class FanoutStats:
    """Work counters, read by the server's metrics."""

    encodes: int = 0
    assemblies: int = 0


@dataclass(slots=True)
class _Parts:
    keyframe: dict[int, list[bytes]]  # state car -> packed part per group index
    delta: dict[int, list[bytes]]  # car with a frame at this tick -> packed part per group


def event_message(event: RaceEvent, tick: int) -> bytes:
    """The ``event`` message of a race event delivered with ``tick``."""
    return encode_message(
        {
            "t": "event",
            "race": event.race,
            "tick": tick,
            "kind": event.kind,
            "t_ns": event.t_ns,
            "cars": list(event.cars),
            "data": event.data,
        }
    )


@dataclass(slots=True, eq=False)
class EncodedTick:
    """One tick and its lazily encoded parts and messages."""

    data: TickData
    stats: FanoutStats = field(default_factory=FanoutStats)
    #: Wall-clock emission time (ns since the epoch), carried as ``ts`` in tick messages.
    emitted_ns: int = field(default_factory=time.time_ns)
    _parts: dict[str, _Parts] = field(default_factory=dict)
    _messages: dict[tuple[SubKey, bool], bytes] = field(default_factory=dict)
    _events: list[bytes] | None = None

    @property
    def race(self) -> str:
        """Race id."""
        return self.data.race

    @property
    def tick(self) -> int:
        """Tick number."""
        return self.data.tick

    def event_messages(self) -> list[bytes]:
        """The ``event`` messages delivered with this tick (same for everyone)."""
        if self._events is None:
            self._events = [event_message(e, self.tick) for e in self.data.events]
        return self._events

    def _encoded(self, codec_name: str) -> _Parts:
        parts = self._parts.get(codec_name)
        if parts is not None:
            return parts
        codec = get_codec(codec_name)
        groups = CATALOGUE.groups
        d = self.data
        keyframe: dict[int, list[bytes]] = {}
        if len(d.state_cars):
            rows = codec.encode_keyframes(d.state_q, groups)
            for car, base, row in zip(
                d.state_cars.tolist(), d.state_tick.tolist(), rows, strict=True
            ):
                keyframe[car] = [
                    pack_part(car, g, KIND_KEYFRAME, base, payload) for g, payload in enumerate(row)
                ]
        delta: dict[int, list[bytes]] = {}
        has_base = d.base >= 0
        if has_base.any():
            rows = codec.encode_deltas(d.prev_q[has_base], d.q[has_base], groups)
            for car, base, row in zip(
                d.cars[has_base].tolist(), d.base[has_base].tolist(), rows, strict=True
            ):
                delta[car] = [
                    pack_part(car, g, KIND_DELTA, base, payload) for g, payload in enumerate(row)
                ]
        for car in d.cars[~has_base].tolist():
            delta[car] = keyframe[car]  # a car's first frame travels as a keyframe
        self.stats.encodes += 1
        parts = self._parts[codec_name] = _Parts(keyframe, delta)
        return parts

    def message(self, key: SubKey, keyframe: bool) -> bytes:
        """The tick message for a subscription; shared by equal (key, keyframe).

        Args:
            key: ``(cars or None for all, group indices, codec)``.
            keyframe: Full state of every subscribed known car, else the changes.
        """
        cached = self._messages.get((key, keyframe))
        if cached is not None:
            return cached
        cars, groups, codec = key
        parts = self._encoded(codec)
        source = parts.keyframe if keyframe else parts.delta
        d = self.data
        stale = d.stale
        if cars is None:
            selected = sorted(source)
            stale_list = stale.tolist()
        else:
            wanted = set(cars)
            selected = [c for c in sorted(source) if c in wanted]
            stale_list = [c for c in stale.tolist() if c in wanted]
        packed = [source[car][g] for car in selected for g in groups]
        message = tick_message(
            d.race, d.tick, keyframe, codec, stale_list, packed, emitted_ns=self.emitted_ns
        )
        self.stats.assemblies += 1
        if len(self._messages) < MAX_CACHED_MESSAGES:
            self._messages[(key, keyframe)] = message
        return message

    def release(self) -> None:
        """Drop cached parts and messages (they are rebuilt on demand)."""
        self._parts.clear()
        self._messages.clear()
        self._events = None
