"""What the load generator needs to know about a server's protocol.

The lean clients in :mod:`slipstream.app.bench.loadgen` speak raw WebSocket and
HTTP; a :class:`WireAdapter` tells them which URL to open, what to send after
the upgrade, and how to find a tick (its number and its emission time at the
server) in what comes back.  :mod:`slipstream.app.bench.slipstream_adapter` is
the adapter of the broadcast node; tests bring their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["Subscription", "TickStamp", "WireAdapter"]

#: ``(tick, emitted_ns)``: a tick's number and its emission time at the server
#: (nanoseconds since the epoch, ``time.time_ns()`` clock).
TickStamp = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Subscription:
    """What every subscriber of a run asks for.

    Attributes:
        race: Race id ("" for whatever race the server is serving).
        cars: Car numbers (empty for all cars).
        groups: Channel group names (empty for all groups).
        codec: Codec name ("" for the server's default).
    """

    race: str = ""
    cars: tuple[int, ...] = ()
    groups: tuple[str, ...] = ()
    codec: str = ""


class WireAdapter(Protocol):
    """A server protocol, as seen by a load-generator client.

    Methods are called on hot paths: keep them cheap and never raise for a
    message that is simply not a tick (return None or an empty list).
    """

    #: WebSocket subprotocols to offer, in preference order.
    subprotocols: tuple[str, ...]

    def ws_target(self, sub: Subscription) -> str:
        """Path and query of the WebSocket upgrade request."""
        ...

    def ws_opening(self, sub: Subscription) -> list[tuple[bool, bytes]]:
        """Messages to send once the socket is open, as ``(is_text, payload)``."""
        ...

    def ws_message(self, payload: bytes, is_text: bool) -> TickStamp | None:
        """The tick a server message carries, or None for any other message."""
        ...

    def poll_target(self, sub: Subscription, cursor: str) -> str:
        """Path and query of a long-poll request after ``cursor`` ("" for the first)."""
        ...

    def poll_response(self, status: int, body: bytes, cursor: str) -> tuple[list[TickStamp], str]:
        """The ticks in a long-poll response to a poll after ``cursor``, and the next cursor.

        Raises:
            ValueError: The response cannot be followed by another poll.
        """
        ...
