"""The subscribers of the load generator: one raw asyncio protocol per connection.

:class:`WsSubscriber` speaks RFC 6455 (upgrade, opening messages, then every
server message decoded), :class:`PollSubscriber` long-polls over one
keep-alive HTTP/1.1 connection.  Both only move bytes between the transport
and the sans-I/O cores of :mod:`slipstream.app.bench.wire`, and report every tick
they decode to one shared :class:`Tally`, which keeps the figures of the
measurement window: ticks delivered, their delivery latencies (decode time
minus the server's emission time) and the bytes they took on the wire.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from array import array
from typing import cast

from slipstream.app.bench import BenchError, WireError
from slipstream.app.bench.adapter import Subscription, TickStamp, WireAdapter
from slipstream.app.bench.wire import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    HttpResponseReader,
    WsClientReader,
    encode_client_frame,
    get_request,
    handshake_request,
)

__all__ = ["PollSubscriber", "Subscriber", "Tally", "WsSubscriber"]

_MAX_ERRORS_KEPT = 5


class Tally:
    """Figures shared by every subscriber of one generator.

    Ticks numbered in ``[window_lo, window_hi)`` are counted as delivered,
    with their latency (microseconds) and wire bytes; every tick counts
    towards ``ticks_seen`` (the progress figure).
    """

    __slots__ = (
        "bytes_down",
        "bytes_up",
        "closed",
        "delivered",
        "emitted_ns",
        "errors",
        "last_tick",
        "latencies_us",
        "ticks_seen",
        "window_hi",
        "window_lo",
    )

    def __init__(self) -> None:
        self.window_lo = 1 << 62
        self.window_hi = 1 << 62
        self.delivered = 0
        self.bytes_down = 0
        self.bytes_up = 0
        self.ticks_seen = 0
        self.last_tick = -1
        self.closed = 0
        self.latencies_us = array("q")
        self.emitted_ns: dict[int, int] = {}
        self.errors: list[str] = []

    def tick(self, stamp: TickStamp, now_ns: int, bytes_down: int, bytes_up: int) -> None:
        """Record one decoded tick; ``bytes_*`` are its share of the wire traffic."""
        tick, emitted_ns = stamp
        self.ticks_seen += 1
        if tick > self.last_tick:
            self.last_tick = tick
        if self.window_lo <= tick < self.window_hi:
            self.delivered += 1
            self.bytes_down += bytes_down
            self.bytes_up += bytes_up
            self.latencies_us.append((now_ns - emitted_ns) // 1000)
            self.emitted_ns[tick] = emitted_ns

    def error(self, text: str) -> None:
        """Keep the first few error texts (the rest are only counted as closed)."""
        if len(self.errors) < _MAX_ERRORS_KEPT:
            self.errors.append(text)


class Subscriber(asyncio.Protocol):
    """Common lifecycle: ``ready`` resolves once subscribed, ``lost`` once closed."""

    def __init__(self, tally: Tally, adapter: WireAdapter, sub: Subscription) -> None:
        self.tally = tally
        self.adapter = adapter
        self.sub = sub
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.alive = False
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; uvloop's are not asyncio.Transport subclasses.
        self.transport = cast(asyncio.Transport, transport)

    def subscribed(self) -> None:
        """The subscription is in place: the subscriber now counts as connected."""
        if not self.ready.done():
            self.alive = True
            self.ready.set_result(None)

    def fail(self, text: str) -> None:
        """Abort the connection after a protocol error."""
        self.tally.error(text)
        if not self.ready.done():
            self.ready.set_exception(BenchError(text))
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.alive and not self.closing:
            self.tally.closed += 1
            self.tally.error(f"connection lost mid-run: {exc!r}")
        self.alive = False
        if not self.ready.done():
            self.ready.set_exception(BenchError(f"connection lost before subscribing: {exc!r}"))
        if not self.lost.done():
            self.lost.set_result(None)

    def close(self) -> None:
        """Close from the client side (end of the run)."""
        self.closing = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class WsSubscriber(Subscriber):
    """One WebSocket subscriber: upgrade, opening messages, then decode every message."""

    def __init__(
        self, tally: Tally, adapter: WireAdapter, sub: Subscription, host: str, port: int
    ) -> None:
        super().__init__(tally, adapter, sub)
        self._key = base64.b64encode(os.urandom(16)).decode("ascii")
        self._request = handshake_request(
            host, port, adapter.ws_target(sub), self._key, adapter.subprotocols
        )
        self._reader = WsClientReader(self._key, adapter.subprotocols)
        self._decode = adapter.ws_message

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        try:
            opened, messages = self._reader.feed(data)
        except WireError as exc:
            self.fail(str(exc))
            return
        if opened:
            for is_text, payload in self.adapter.ws_opening(self.sub):
                self.send(OP_TEXT if is_text else OP_BINARY, payload)
            self.subscribed()
        for opcode, payload, wire_bytes in messages:
            if opcode in (OP_BINARY, OP_TEXT):
                stamp = self._decode(payload, opcode == OP_TEXT)
                if stamp is not None:
                    self.tally.tick(stamp, time.time_ns(), wire_bytes, 0)
            elif opcode == OP_PING:
                self.send(OP_PONG, payload)
            elif opcode == OP_CLOSE:
                if not self.closing:
                    code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                    self.tally.error(f"server closed the WebSocket with code {code}")
                    self.send(OP_CLOSE, payload[:2])
                assert self.transport is not None
                self.transport.close()

    def send(self, opcode: int, payload: bytes) -> None:
        """Send one masked frame."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_client_frame(opcode, payload, os.urandom(4)))

    def close(self) -> None:
        """Send a normal close frame, then close the transport."""
        if self._reader.subprotocol is not None and not self.closing:
            self.send(OP_CLOSE, (1000).to_bytes(2, "big"))
        super().close()


class PollSubscriber(Subscriber):
    """One long-poll subscriber on one keep-alive connection: poll, decode, poll again."""

    def __init__(
        self, tally: Tally, adapter: WireAdapter, sub: Subscription, host: str, port: int
    ) -> None:
        super().__init__(tally, adapter, sub)
        self._host = host
        self._port = port
        self._reader = HttpResponseReader()
        self._request_bytes = 0
        self._cursor = ""
        self.empty_responses = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._poll("")

    def _poll(self, cursor: str) -> None:
        self._cursor = cursor
        request = get_request(self._host, self._port, self.adapter.poll_target(self.sub, cursor))
        self._request_bytes = len(request)
        assert self.transport is not None
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        try:
            responses = self._reader.feed(data)
        except WireError as exc:
            self.fail(str(exc))
            return
        for response in responses:
            try:
                stamps, cursor = self.adapter.poll_response(
                    response.status, response.body, self._cursor
                )
            except ValueError as exc:
                self.fail(f"long-poll answered HTTP {response.status}: {exc}")
                return
            now_ns = time.time_ns()
            if stamps:
                share_down = response.wire_bytes // len(stamps)
                share_up = self._request_bytes // len(stamps)
                for stamp in stamps:
                    self.tally.tick(stamp, now_ns, share_down, share_up)
            else:
                self.empty_responses += 1
            self.subscribed()
            if not self.closing:
                self._poll(cursor)
