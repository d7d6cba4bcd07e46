"""Lean WebSocket clients for the write-path benchmark: one process, many sockets.

Each connection does the RFC 6455 client handshake once with a fresh key and
checks the server's accept value, then only counts frames (headers parsed,
payloads skipped; see ``FrameCounter``).  The process tells its parent over a
pipe when every one of its connections has received message ``k``::

    (all open)      -> ("open", count)
    (every socket has k messages) -> ("got", k)
    ("close",)      -> ("stats", {...}) and the process exits
    (any failure)   -> ("error", text)
"""

from __future__ import annotations

import asyncio
import traceback
from multiprocessing.connection import Connection
from typing import Any, cast

import uvloop

from benchmarks.fanout_write_wire import FrameCounter, check_response, client_request, new_key

__all__ = ["run_clients"]

_OPEN_CONCURRENCY = 200
_OPEN_TIMEOUT_S = 120.0


class _Group:
    """This process's connections and the per-message tallies reported to the parent."""

    def __init__(self, count: int, conn: Connection) -> None:
        self.count = count
        self.clients: list[_Client] = []
        self.lost = 0
        self.closing = False
        self._conn = conn
        self._reached: list[int] = [0]  # index k: sockets that have k messages

    def received(self, frames: int, done: int) -> None:
        reached = self._reached
        for k in range(frames - done + 1, frames + 1):
            if k == len(reached):
                reached.append(0)
            reached[k] += 1
            if reached[k] == self.count:
                self._conn.send(("got", k))


class _Client(asyncio.Protocol):
    def __init__(self, group: _Group, host: str, port: int, payload_size: int) -> None:
        self._group = group
        self._request = client_request(host, port, new_key())
        self._key = self._request.split(b"Sec-WebSocket-Key: ")[1].split(b"\r\n")[0]
        self._head = b""
        self.transport: asyncio.Transport | None = None
        self.counter = FrameCounter(payload_size)
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        if self.opened.done():
            done = self.counter.feed(data)
            if done:
                self._group.received(self.counter.frames, done)
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            return
        try:
            check_response(self._head[:end], self._key)
        except ValueError as exc:
            self.opened.set_exception(exc)
            return
        self.opened.set_result(None)
        rest, self._head = self._head[end + 4 :], b""
        if rest:
            self.data_received(rest)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed during the handshake"))
        elif not self._group.closing:
            self._group.lost += 1


async def _run(port: int, count: int, payload_size: int, conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    group = _Group(count, conn)
    gate = asyncio.Semaphore(_OPEN_CONCURRENCY)

    async def open_one() -> None:
        async with gate:
            _transport, client = await loop.create_connection(
                lambda: _Client(group, "127.0.0.1", port, payload_size), "127.0.0.1", port
            )
            group.clients.append(client)
            await client.opened

    await asyncio.wait_for(asyncio.gather(*(open_one() for _ in range(count))), _OPEN_TIMEOUT_S)
    conn.send(("open", len(group.clients)))
    closed = loop.create_future()

    def on_command() -> None:
        conn.recv()  # the only command is ("close",)
        if not closed.done():
            closed.set_result(None)

    loop.add_reader(conn.fileno(), on_command)
    await closed
    loop.remove_reader(conn.fileno())
    group.closing = True
    frames = [client.counter.frames for client in group.clients]
    stats: dict[str, Any] = {
        "connections": len(group.clients),
        "frames_min": min(frames),
        "frames_max": max(frames),
        "frames_total": sum(frames),
        "bytes_total": sum(client.counter.bytes for client in group.clients),
        "bad_frames": sum(client.counter.bad for client in group.clients),
        "lost_connections": group.lost,
    }
    for client in group.clients:
        if client.transport is not None:
            client.transport.close()
    conn.send(("stats", stats))


def run_clients(port: int, count: int, payload_size: int, conn: Connection) -> None:
    """Open ``count`` connections to ``port`` and count messages until told to close."""
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_run(port, count, payload_size, conn))
    except Exception:
        conn.send(("error", traceback.format_exc()))
