"""The load generator's HTTP streaming (SSE) subscriber: one ``GET /v1/stream`` per fan.

It reads the chunked ``text/event-stream`` response incrementally, base64-
decodes each ``data:`` line and hands the message to the adapter's
``ws_message`` (an SSE event carries exactly the bytes a WebSocket message
would).  Every byte read since the previous tick (chunk framing, ``id:``
lines, heartbeats, events) is charged to the next tick.
"""

from __future__ import annotations

import asyncio
import base64
import time

from slipstream.app.bench.adapter import Subscription, WireAdapter
from slipstream.app.bench.subscribers import Subscriber, Tally
from slipstream.app.bench.wire import get_request

__all__ = ["SseSubscriber"]

_MAX_HEAD_BYTES = 65536
_MAX_PENDING_BYTES = 1 << 24


class SseSubscriber(Subscriber):
    """One SSE subscriber: the stream request, then decode every event as it arrives.

    The adapter must have ``sse_target(sub) -> str`` (path and query of the stream).
    """

    def __init__(
        self, tally: Tally, adapter: WireAdapter, sub: Subscription, host: str, port: int
    ) -> None:
        super().__init__(tally, adapter, sub)
        target = adapter.sse_target(sub)  # type: ignore[attr-defined]
        self._request = get_request(host, port, str(target))
        self._head: bytes | None = b""
        self._raw = bytearray()  # chunked bytes not yet de-chunked
        self._text = bytearray()  # event text not yet split into events
        self._unbilled = 0
        self._decode = adapter.ws_message

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        self._unbilled += len(data)
        if self._head is not None:
            head = self._head + data
            end = head.find(b"\r\n\r\n")
            if end < 0:
                self._head = head
                if len(head) > _MAX_HEAD_BYTES:
                    self.fail("stream response head over 64 KiB")
                return
            status_line, _, headers = head[:end].partition(b"\r\n")
            if b" 200 " not in status_line + b" ":
                self.fail(f"stream answered {status_line.decode(errors='replace')}")
                return
            if b"chunked" not in headers.lower():
                self.fail("stream response is not chunked")
                return
            self._head = None
            data = head[end + 4 :]
            self.subscribed()
        self._raw += data
        if not self._dechunk():
            return
        self._events()
        if len(self._raw) + len(self._text) > _MAX_PENDING_BYTES:
            self.fail("an SSE event over 16 MiB")

    def _dechunk(self) -> bool:
        raw = self._raw
        while (eol := raw.find(b"\r\n")) >= 0:
            try:
                size = int(bytes(raw[:eol]).split(b";")[0], 16)
            except ValueError:
                self.fail("malformed chunk size in the stream")
                return False
            if len(raw) < eol + 4 + size:
                break
            if size == 0:
                self.tally.error("the server ended the stream")
                assert self.transport is not None
                self.transport.close()
                return False
            self._text += raw[eol + 2 : eol + 2 + size]
            del raw[: eol + 4 + size]
        return True

    def _events(self) -> None:
        text = self._text
        while (end := text.find(b"\n\n")) >= 0:
            event = bytes(text[:end])
            del text[: end + 2]
            for line in event.split(b"\n"):
                if not line.startswith(b"data: "):
                    continue
                stamp = self._decode(base64.b64decode(line[6:]), False)
                if stamp is not None:
                    self.tally.tick(stamp, time.time_ns(), self._unbilled, 0)
                    self._unbilled = 0
