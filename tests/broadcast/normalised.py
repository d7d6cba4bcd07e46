"""One normalised stream for the three transports: what a fan received, transport aside.

Whatever the transport, a fan's server messages become :data:`Entry` tuples:

* ``("tick", race, tick, keyframe, stale, values)`` with ``values`` the
  decoded cars, ``((car, quantised values of the subscribed groups), ...)``
  (decoded by the client's :class:`~broadcast.decoder.StreamDecoder`, so a
  delta on a wrong base loses its car);
* ``("event", race, tick, kind)``;
* ``("notice", code, race, from, to)``;
* ``("error", code)``: an ``error`` message (WebSocket) or a ``400`` with that
  code (a refused control post or poll).

``hello``, ``subscribed`` and ``pong`` are the transports' own business and
leave no entry.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any

from broadcast.decoder import FrameItem, StreamDecoder
from broadcast.protocol import decode_message
from slipstream.catalogue import CATALOGUE, MISSING

__all__ = ["Entry", "Normaliser", "Outcome", "Sub", "missing_as_none", "quantised"]

Entry = tuple[Any, ...]
#: How a session ended (tests/broadcast/fans.py); None while it is served.
Outcome = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Sub:
    """A subscription: cars (None: all), group names (None: all), codec."""

    cars: tuple[int, ...] | None = None
    groups: tuple[str, ...] | None = None
    codec: str = "sparse"

    def control(self) -> dict[str, Any]:
        """The WebSocket / control-post message."""
        cars = list(self.cars) if self.cars is not None else None
        groups = list(self.groups) if self.groups is not None else None
        return {"op": "subscribe", "cars": cars, "groups": groups, "codec": self.codec}

    def query(self) -> dict[str, str]:
        """The query of a poll or a stream."""
        query = {"codec": self.codec}
        if self.cars is not None:
            query["cars"] = ",".join(map(str, self.cars))
        if self.groups is not None:
            query["groups"] = ",".join(self.groups)
        return query


def quantised(values: dict[str, float | None]) -> tuple[int | None, ...]:
    """Decoded values (units) back to the catalogue's integers, in channel order."""
    resolution = CATALOGUE.resolution
    out: list[int | None] = []
    for i, channel in enumerate(CATALOGUE):
        if channel.name in values:
            value = values[channel.name]
            out.append(None if value is None else round(value / float(resolution[i])))
    return tuple(out)


def missing_as_none(q: Any) -> tuple[int | None, ...]:
    """Quantised integers with the catalogue's MISSING marker as None."""
    return tuple(None if int(v) == MISSING else int(v) for v in q)


class Normaliser:
    """Server messages to :data:`Entry` tuples, through the client's decoder."""

    def __init__(self) -> None:
        self.decoder = StreamDecoder()
        self.hello: dict[str, Any] | None = None
        self.close_code: int | None = None
        self.replies: collections.Counter[str] = collections.Counter()

    def feed(self, data: bytes) -> list[Entry]:
        msg = decode_message(data)
        items = self.decoder.feed(data)
        kind = msg["t"]
        if kind == "tick":
            cars = tuple(
                sorted((i.car, quantised(i.values)) for i in items if isinstance(i, FrameItem))
            )
            stale = tuple(msg["stale"])
            return [("tick", msg["race"], msg["tick"], bool(msg["kf"]), stale, cars)]
        if kind == "event":
            return [("event", msg["race"], msg["tick"], msg["kind"])]
        if kind == "notice":
            return [("notice", msg["code"], msg.get("race"), msg.get("from"), msg.get("to"))]
        if kind == "error":
            return [("error", msg["code"])]
        if kind == "hello":
            self.hello = msg
        if kind == "close":  # an event stream's last message: what a close frame says
            self.close_code = msg["code"]
        self.replies[kind] += 1  # subscribed, unsubscribed, pong
        return []
