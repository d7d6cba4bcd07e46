"""Client-side decoding of the ``slipstream.v1`` stream (pure core).

A :class:`StreamDecoder` holds, per (car, group), the values a fan has and
the tick they belong to; it turns server messages into items and keeps the
cursor.  A delta whose base tick is not the one held is refused (the fan asks
for a keyframe instead of showing wrong values).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
from numpy.typing import NDArray

from broadcast.protocol import KIND_KEYFRAME, Cursor, ProtocolError, decode_message
from slipstream.catalogue import CATALOGUE, MISSING
from slipstream.codecs import CodecError, get_codec

__all__ = ["EventItem", "FrameItem", "Item", "NoticeItem", "StateItem", "StreamDecoder"]


@dataclass(frozen=True, slots=True)
class FrameItem:
    """One car's values at one tick, in channel units (None: no value)."""

    race: str
    tick: int
    car: int
    values: dict[str, float | None]

    def to_json(self) -> dict[str, Any]:
        """The ``slipstream subscribe --json`` line."""
        return {"race": self.race, "tick": self.tick, "car": self.car, "values": self.values}


@dataclass(frozen=True, slots=True)
class EventItem:
    """A race-control event."""

    race: str
    tick: int
    kind: str
    t_ns: int
    cars: tuple[int, ...]
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The ``{"event": ...}`` line."""
        return {
            "event": self.kind,
            "race": self.race,
            "tick": self.tick,
            "t_ns": self.t_ns,
            "cars": list(self.cars),
            "data": self.data,
        }


@dataclass(frozen=True, slots=True)
class NoticeItem:
    """Something the fan should know: a gap, a race change, a shutdown."""

    code: str
    message: str
    race: str | None = None
    from_tick: int | None = None
    to_tick: int | None = None
    error: bool = False


@dataclass(frozen=True, slots=True)
class StateItem:
    """Connection state: ``connected``, ``reconnecting`` or ``suspended``.

    ``refused`` is true when the node refused (a bad, missing or expired token, a
    subscription out of scope): the client makes no further attempt on its own.
    """

    state: str
    transport: str
    detail: str = ""
    refused: bool = False


Item = FrameItem | EventItem | NoticeItem | StateItem


def _digits(resolution: float) -> int:
    """Decimal places that show a value at ``resolution`` exactly."""
    exponent = Decimal(repr(float(resolution))).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


class StreamDecoder:
    """Applies server messages to the fan's state.

    Attributes:
        cursor: Race and last tick fully applied (None before the first tick).
        needs_keyframe: A delta did not match the state; ask for a keyframe.
        hello: The last hello received.
        closed: (code, reason) of an event stream's last message, ``close``
            (where a WebSocket would have had a close frame); None before it.
        errors: Server ``error`` messages received (code, message).
        last_subscribed: The last ``subscribed`` acknowledgement.
        acks: ``subscribed`` acknowledgements received.
    """

    def __init__(self) -> None:
        self.cursor: Cursor | None = None
        self.needs_keyframe = False
        self.hello: dict[str, Any] | None = None
        self.closed: tuple[int, str] | None = None
        self.errors: list[tuple[str, str]] = []
        self.last_subscribed: dict[str, Any] | None = None
        self.acks = 0
        self._held: dict[tuple[int, int], tuple[int, NDArray[np.int32]]] = {}
        self._race: str | None = None
        self._resolution = CATALOGUE.resolution
        self._names = [c.name for c in CATALOGUE]
        self._digits = [_digits(c.resolution) for c in CATALOGUE]

    def feed(self, data: bytes) -> list[Item]:
        """Items of one server message.

        Raises:
            ProtocolError: The message is malformed.
        """
        msg = decode_message(data)
        kind = msg["t"]
        if kind == "tick":
            return list(self._tick(msg))
        if kind == "event":
            return [
                EventItem(
                    msg["race"],
                    msg["tick"],
                    msg["kind"],
                    msg["t_ns"],
                    tuple(msg["cars"]),
                    msg["data"],
                )
            ]
        if kind == "notice":
            return [
                NoticeItem(
                    msg["code"], msg["message"], msg.get("race"), msg.get("from"), msg.get("to")
                )
            ]
        if kind == "hello":
            self.hello = msg
            self.closed = None
        elif kind == "close":
            self.closed = (int(msg.get("code", 0)), str(msg.get("reason", "")))
        elif kind == "subscribed":
            self.last_subscribed = msg
            self.acks += 1
        elif kind == "error":
            code, text = str(msg.get("code")), str(msg.get("message"))
            self.errors.append((code, text))
            return [NoticeItem(code, text, error=True)]
        return []

    def _values(self, car: int, groups: list[int]) -> dict[str, float | None]:
        values: dict[str, float | None] = {}
        for g in groups:
            group = CATALOGUE.groups[g]
            _, q = self._held[(car, g)]
            for i, count in enumerate(q.tolist()):
                ch = group.start + i
                values[self._names[ch]] = (
                    None
                    if count == MISSING
                    else round(count * float(self._resolution[ch]), self._digits[ch])
                )
        return values

    def _tick(self, msg: dict[str, Any]) -> list[FrameItem]:
        race, tick = msg["race"], msg["tick"]
        if race != self._race:
            self._held.clear()
            self._race = race
        codec = get_codec(msg["codec"])
        if msg["kf"]:
            self.needs_keyframe = False
        fresh: dict[int, list[int]] = {}
        for car, g, kind, base, payload in msg["p"]:
            size = CATALOGUE.groups[g].size
            try:
                if kind == KIND_KEYFRAME:
                    self._held[(car, g)] = (base, codec.decode_keyframe(payload, size))
                    if base == tick:
                        fresh.setdefault(car, []).append(g)
                    continue
                held = self._held.get((car, g))
                if held is None or held[0] != base:
                    self.needs_keyframe = True
                    self._held.pop((car, g), None)
                    continue
                self._held[(car, g)] = (tick, codec.decode_delta(held[1], payload))
                fresh.setdefault(car, []).append(g)
            except CodecError as exc:
                raise ProtocolError("malformed", f"bad part for car {car}: {exc}") from exc
        self.cursor = Cursor(race, tick)
        return [
            FrameItem(race, tick, car, self._values(car, groups)) for car, groups in fresh.items()
        ]
