"""The write paths under test: one server process each, driven over a pipe.

Every variant accepts ``fans`` loopback WebSocket connections, then on each
``("tick",)`` command writes one binary message to all of them in one
synchronous loop and replies with that loop's duration.  The pipe protocol
(tuples; the server's replies on the right)::

    (start)         -> ("ready", port, rss_bytes)
    (all connected) -> ("fans", count, rss_bytes)
    ("mark",)       -> ("marked",)            CPU is counted from here
    ("tick",)       -> ("wrote", seconds)     the write loop alone
    ("report",)     -> ("report", user_s, sys_s, rss_bytes)   since the mark
    ("stop",)       -> the process exits
    (any failure)   -> ("error", text)
"""

from __future__ import annotations

import asyncio
import resource
import socket
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, cast

import uvloop

from benchmarks.fanout_write_wire import HandshakeError, binary_frame, server_response

__all__ = ["VARIANTS", "serve"]

#: Variant name -> what it measures (for --help and the report).
VARIANTS: dict[str, str] = {
    "floor": "pre-framed bytes, socket.send per connection, no event loop",
    "asyncio-shared": "asyncio, one pre-framed bytes object, transport.write per connection",
    "uvloop-shared": "uvloop, one pre-framed bytes object, transport.write per connection",
    "websockets-broadcast": "websockets server on uvloop, websockets.broadcast(connections, msg)",
    "picows": "picows server on uvloop, WSTransport.send(BINARY, msg) per connection",
    "picows-reuse": "picows on uvloop, send_reuse_external_bytearray per connection (no copy)",
}

_BACKLOG = 4096
_HANDSHAKE_LIMIT = 8192  # bytes; a longer request is not one of our clients
_ACCEPT_TIMEOUT_S = 120.0


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


class _Cpu:
    """Server CPU (user, system) since the last ``mark``, in seconds."""

    def __init__(self) -> None:
        self._user = self._sys = 0.0

    def mark(self) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self._user, self._sys = usage.ru_utime, usage.ru_stime

    def since(self) -> tuple[float, float]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime - self._user, usage.ru_stime - self._sys


def _serve_floor(fans: int, payload: bytes, conn: Connection) -> None:
    frame = binary_frame(payload)
    size = len(frame)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(_BACKLOG)
    listener.settimeout(_ACCEPT_TIMEOUT_S)
    conn.send(("ready", listener.getsockname()[1], _rss_bytes()))
    socks: list[socket.socket] = []
    for _ in range(fans):
        sock, _address = listener.accept()
        sock.settimeout(_ACCEPT_TIMEOUT_S)
        request = b""
        while not request.endswith(b"\r\n\r\n"):
            data = sock.recv(_HANDSHAKE_LIMIT)
            if not data or len(request) > _HANDSHAKE_LIMIT:
                raise HandshakeError("a client closed or sent too much before its handshake")
            request += data
        sock.sendall(server_response(request))
        sock.setblocking(False)
        socks.append(sock)
    listener.close()
    conn.send(("fans", len(socks), _rss_bytes()))
    sends: list[Callable[[bytes], int]] = [sock.send for sock in socks]
    cpu = _Cpu()
    while True:
        command = conn.recv()
        if command[0] == "tick":
            short = 0
            start = time.perf_counter()
            for send in sends:
                if send(frame) != size:
                    short += 1
            elapsed = time.perf_counter() - start
            if short:
                # No buffering here by design: a short write is a lost message.
                conn.send(("error", f"{short} short writes: socket buffers full"))
                return
            conn.send(("wrote", elapsed))
        elif command[0] == "mark":
            cpu.mark()
            conn.send(("marked",))
        elif command[0] == "report":
            conn.send(("report", *cpu.since(), _rss_bytes()))
        else:
            for sock in socks:
                sock.close()
            return


class _Fans:
    """The connections a loop-based variant holds, and who to tell when all are in."""

    def __init__(self, fans: int, conn: Connection) -> None:
        self.expected = fans
        self.items: list[Any] = []
        self._conn = conn

    def add(self, item: Any) -> None:
        self.items.append(item)
        if len(self.items) == self.expected:
            self._conn.send(("fans", len(self.items), _rss_bytes()))

    def remove(self, item: Any) -> None:
        if item in self.items:
            self.items.remove(item)


class _RawProtocol(asyncio.Protocol):
    """Answers the opening handshake, then only ever writes; reads are ignored."""

    def __init__(self, fans: _Fans) -> None:
        self._fans = fans
        self._transport: asyncio.Transport | None = None
        self._request = b""
        self._open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        if self._open or self._transport is None:
            return  # handshake done: whatever else comes in is ignored
        self._request += data
        if not self._request.endswith(b"\r\n\r\n"):
            if len(self._request) > _HANDSHAKE_LIMIT:
                self._transport.close()
            return
        self._transport.write(server_response(self._request))
        self._open = True
        self._fans.add(self._transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._open:
            self._fans.remove(self._transport)


async def _start_raw(fans: _Fans) -> tuple[asyncio.Server, Callable[[bytes], None]]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _RawProtocol(fans), "127.0.0.1", 0, backlog=_BACKLOG)

    def write(payload: bytes) -> None:
        frame = binary_frame(payload)  # once per tick, shared by every connection
        for transport in fans.items:
            transport.write(frame)

    return server, write


async def _start_websockets(fans: _Fans) -> tuple[Any, Callable[[bytes], None]]:
    import websockets
    from websockets.asyncio.server import ServerConnection, serve

    async def handler(connection: ServerConnection) -> None:
        fans.add(connection)
        try:
            await connection.wait_closed()
        finally:
            fans.remove(connection)

    server = await serve(
        handler,
        "127.0.0.1",
        0,
        compression=None,
        ping_interval=None,  # no keepalive traffic inside the measurement
        open_timeout=_ACCEPT_TIMEOUT_S,
        backlog=_BACKLOG,
    )

    def write(payload: bytes) -> None:
        websockets.broadcast(fans.items, payload)

    return server, write


async def _start_picows(fans: _Fans, reuse: bool) -> tuple[asyncio.Server, Callable[[bytes], None]]:
    from picows import (
        WSFrame,
        WSListener,
        WSMsgType,
        WSTransport,
        WSUpgradeRequest,
        ws_create_server,
    )

    class Listener(WSListener):
        def on_ws_connected(self, transport: WSTransport) -> None:
            self.transport = transport
            fans.add(transport)

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            fans.remove(transport)

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()

    def factory(request: WSUpgradeRequest) -> Listener:
        return Listener()

    server = await ws_create_server(factory, "127.0.0.1", 0, backlog=_BACKLOG)
    binary = WSMsgType.BINARY

    def write(payload: bytes) -> None:
        for transport in fans.items:
            transport.send(binary, payload)

    def write_reuse(payload: bytes) -> None:
        # picows writes the frame header into the 14 bytes in front of the
        # payload; a server frame is unmasked, so every call writes the same
        # header and the buffer stays valid for the next connection.
        buffer = bytearray(14) + payload
        for transport in fans.items:
            transport.send_reuse_external_bytearray(binary, buffer, 14)

    return server, write_reuse if reuse else write


async def _serve_loop(variant: str, fans: int, payload: bytes, conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    holder = _Fans(fans, conn)
    server: Any
    if variant in ("asyncio-shared", "uvloop-shared"):
        server, write = await _start_raw(holder)
    elif variant == "websockets-broadcast":
        server, write = await _start_websockets(holder)
    else:
        server, write = await _start_picows(holder, reuse=variant == "picows-reuse")
    port = next(iter(server.sockets)).getsockname()[1]
    conn.send(("ready", port, _rss_bytes()))
    stopped = loop.create_future()
    cpu = _Cpu()

    def on_command() -> None:
        command = conn.recv()
        if command[0] == "tick":
            start = time.perf_counter()
            write(payload)
            conn.send(("wrote", time.perf_counter() - start))
        elif command[0] == "mark":
            cpu.mark()
            conn.send(("marked",))
        elif command[0] == "report":
            conn.send(("report", *cpu.since(), _rss_bytes()))
        elif not stopped.done():
            stopped.set_result(None)

    loop.add_reader(conn.fileno(), on_command)
    try:
        await stopped
    finally:
        loop.remove_reader(conn.fileno())
        server.close()


def serve(variant: str, fans: int, payload: bytes, conn: Connection) -> None:
    """Run ``variant``'s server for ``fans`` connections until told to stop (process entry)."""
    try:
        if variant == "floor":
            _serve_floor(fans, payload, conn)
            return
        factory: Callable[[], asyncio.AbstractEventLoop] = (
            asyncio.new_event_loop if variant == "asyncio-shared" else uvloop.new_event_loop
        )
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(_serve_loop(variant, fans, payload, conn))
    except Exception:
        conn.send(("error", traceback.format_exc()))
