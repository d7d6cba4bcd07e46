"""Transport framing of server messages, built once and written to many fans (pure).

A tick is written to a fan in **one write**: its race events and the tick
message, framed for the fan's transport.  The framed bytes of a
(subscription, keyframe) are built once per tick and the same ``bytes`` object
is written to every fan that shares them.

* WebSocket (RFC 6455 §5.2): a server frame is unmasked, so it does not depend
  on the connection: FIN + binary opcode, the payload length, the payload.
* Server-Sent Events in an HTTP/1.1 chunked response: ``id: RACE:TICK`` (tick
  messages only), ``data: <base64>``, a blank line; the whole write is one chunk.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence

__all__ = [
    "FRAMERS",
    "SSE_HEARTBEAT",
    "Framer",
    "chunk",
    "sse_event",
    "sse_frames",
    "ws_frame",
    "ws_frames",
    "ws_ping",
]

#: ``framer(messages, event_id_of_last)`` -> the bytes of one write.
Framer = Callable[[Sequence[bytes], "str | None"], bytes]

_OP_BINARY = 0x82  # FIN + binary
_OP_PING = 0x89  # FIN + ping
#: A comment line: keeps idle proxies and load balancers from closing a stream.
SSE_HEARTBEAT = b": heartbeat\n\n"


def _ws_header(first: int, size: int) -> bytes:
    if size < 126:
        return bytes((first, size))
    if size < 1 << 16:
        return bytes((first, 126)) + size.to_bytes(2, "big")
    return bytes((first, 127)) + size.to_bytes(8, "big")


def ws_frame(payload: bytes) -> bytes:
    """One unmasked binary WebSocket frame carrying ``payload``."""
    return _ws_header(_OP_BINARY, len(payload)) + payload


def ws_ping(payload: bytes) -> bytes:
    """One unmasked ping frame (``payload`` at most 125 bytes)."""
    if len(payload) > 125:
        raise ValueError("a ping carries at most 125 bytes")
    return _ws_header(_OP_PING, len(payload)) + payload


def ws_frames(messages: Sequence[bytes], event_id: str | None = None) -> bytes:
    """Messages as consecutive binary frames (``event_id`` is SSE's; unused here)."""
    if len(messages) == 1:
        return ws_frame(messages[0])
    return b"".join([ws_frame(m) for m in messages])


def sse_event(message: bytes, event_id: str | None = None) -> bytes:
    """One server message as an SSE event: ``id: RACE:TICK`` (ticks only), ``data: base64``."""
    data = base64.b64encode(message)
    if event_id is None:
        return b"data: " + data + b"\n\n"
    return b"id: " + event_id.encode() + b"\ndata: " + data + b"\n\n"


def chunk(data: bytes) -> bytes:
    """``data`` as one HTTP/1.1 chunk of a chunked response."""
    return b"%x\r\n" % len(data) + data + b"\r\n"


def sse_frames(messages: Sequence[bytes], event_id: str | None = None) -> bytes:
    """Messages as SSE events in one chunk; ``event_id`` goes on the last (the tick)."""
    last = len(messages) - 1
    text = b"".join([sse_event(m, event_id if i == last else None) for i, m in enumerate(messages)])
    return chunk(text)


#: Framing by transport name.
FRAMERS: dict[str, Framer] = {"ws": ws_frames, "sse": sse_frames}
