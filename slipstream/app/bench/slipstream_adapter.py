"""The broadcast node's protocol (``slipstream.v1``, docs/protocol.md) for the load generator.

WebSocket: open ``/ws`` with subprotocol ``slipstream.v1``, send one JSON
``subscribe``; every binary message is a msgpack map with a type ``t``, and
``tick`` messages carry ``tick`` and ``ts`` (emission time, ns since the epoch).

Long-poll: ``GET /v1/poll?cars=&groups=&codec=[&cursor=RACE:TICK]``; the body
is a msgpack map ``{"v", "race", "cursor", "m": [message, ...]}`` whose
messages are the same bytes as on the WebSocket.

A message counts as decoded once its whole envelope is unpacked (parts and
their codec payloads as bytes); the per-part codec decode is the fan's
business and is the same for both transports.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import msgpack

from slipstream.app.bench.adapter import Subscription, TickStamp

__all__ = ["SlipstreamAdapter", "make_adapter"]

_SUBPROTOCOL = "slipstream.v1"


def _stamp(obj: Any) -> TickStamp | None:
    if isinstance(obj, dict) and obj.get("t") == "tick":
        ts = obj.get("ts")
        if isinstance(ts, int):
            return obj["tick"], ts
    return None


class SlipstreamAdapter:
    """:class:`~slipstream.app.bench.adapter.WireAdapter` of the broadcast node."""

    subprotocols = (_SUBPROTOCOL,)

    def ws_target(self, sub: Subscription) -> str:
        """The WebSocket endpoint (the subscription travels in a message)."""
        return "/ws"

    def ws_opening(self, sub: Subscription) -> list[tuple[bool, bytes]]:
        """One JSON ``subscribe`` message."""
        message: dict[str, Any] = {
            "op": "subscribe",
            "cars": list(sub.cars) or None,
            "groups": list(sub.groups) or None,
        }
        if sub.codec:
            message["codec"] = sub.codec
        return [(True, json.dumps(message).encode())]

    def ws_message(self, payload: bytes, is_text: bool) -> TickStamp | None:
        """The tick of a ``tick`` message (None for hello, acks, events, notices)."""
        return _stamp(msgpack.unpackb(payload, raw=False, strict_map_key=False))

    def sse_target(self, sub: Subscription) -> str:
        """``/v1/stream`` (HTTP streaming) with the subscription of :meth:`poll_target`."""
        return "/v1/stream?" + self.poll_target(sub, "").partition("?")[2]

    def poll_target(self, sub: Subscription, cursor: str) -> str:
        """``/v1/poll`` with the subscription, and the cursor once there is one."""
        query = []
        if sub.cars:
            query.append("cars=" + ",".join(map(str, sub.cars)))
        if sub.groups:
            query.append("groups=" + ",".join(quote(g) for g in sub.groups))
        if sub.codec:
            query.append("codec=" + quote(sub.codec))
        if cursor:
            query.append("cursor=" + quote(cursor))
        return "/v1/poll?" + "&".join(query)

    def poll_response(self, status: int, body: bytes, cursor: str) -> tuple[list[TickStamp], str]:
        """Ticks of every message in the body; the next cursor is ``RACE:TICK``.

        Raises:
            ValueError: Not a 200, or not a poll body.
        """
        if status != 200:
            raise ValueError(body[:200].decode("utf-8", "replace"))
        obj = msgpack.unpackb(body, raw=False, strict_map_key=False)
        if not isinstance(obj, dict) or not isinstance(obj.get("m"), list):
            raise ValueError("long-poll body is not a msgpack map with messages 'm'")
        stamps = []
        for message in obj["m"]:
            stamp = _stamp(msgpack.unpackb(message, raw=False, strict_map_key=False))
            if stamp is not None:
                stamps.append(stamp)
        race, tick = obj.get("race"), obj.get("cursor")
        if isinstance(race, str) and isinstance(tick, int):
            cursor = f"{race}:{tick}"
        return stamps, cursor


def make_adapter() -> SlipstreamAdapter:
    """Factory named in generator specs.

    As ``slipstream.app.bench.slipstream_adapter:make_adapter``.
    """
    return SlipstreamAdapter()
