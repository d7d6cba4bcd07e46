"""A tiny tick server for testing the load generator without the broadcast node.

WebSocket (``websockets``' own server, subprotocol ``test.v1``): after the
client's text message ``sub``, the server sends every tick published with
:meth:`TickServer.publish` as a binary msgpack ``[tick, emitted_ns]``.

Long-poll (aiohttp): ``GET /poll?cursor=N`` holds until a tick above N exists,
then answers msgpack ``{"ticks": [[tick, ns], ...], "cursor": "M"}``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgpack
from aiohttp import web
from websockets.asyncio.server import Server, ServerConnection, broadcast, serve

from slipstream.app.bench.adapter import Subscription, TickStamp


class FakeAdapter:
    """The :class:`~slipstream.app.bench.adapter.WireAdapter` of the fake server."""

    subprotocols = ("test.v1",)

    def __init__(self, on_tick: Callable[[int], None] | None = None) -> None:
        self.on_tick = on_tick

    def ws_target(self, sub: Subscription) -> str:
        return "/ws"

    def ws_opening(self, sub: Subscription) -> list[tuple[bool, bytes]]:
        return [(True, b"sub")]

    def ws_message(self, payload: bytes, is_text: bool) -> TickStamp | None:
        tick, emitted_ns = msgpack.unpackb(payload)
        if self.on_tick is not None:
            self.on_tick(tick)
        return tick, emitted_ns

    def poll_target(self, sub: Subscription, cursor: str) -> str:
        return f"/poll?cursor={cursor or -1}"

    def poll_response(self, status: int, body: bytes, cursor: str) -> tuple[list[TickStamp], str]:
        if status != 200:
            raise ValueError(body.decode(errors="replace"))
        obj: dict[str, Any] = msgpack.unpackb(body)
        stamps = [(t, ns) for t, ns in obj["ticks"]]
        if self.on_tick is not None:
            for t, _ in stamps:
                self.on_tick(t)
        return stamps, obj["cursor"]


def make_adapter() -> FakeAdapter:
    """Factory named in generator specs (``tests.bench.fakeserver:make_adapter``)."""
    return FakeAdapter()


class TickServer:
    """Both transports on two ports; ``publish()`` emits the next tick."""

    def __init__(self) -> None:
        self.ticks: list[tuple[int, int]] = []
        self.subscribed: set[ServerConnection] = set()
        self.connections: list[ServerConnection] = []
        self.new_tick = asyncio.Condition()
        self.subscribed_count = asyncio.Condition()
        self._ws: Server | None = None
        self._runner: web.AppRunner | None = None
        self.ws_port = 0
        self.poll_port = 0

    async def _handler(self, ws: ServerConnection) -> None:
        self.connections.append(ws)
        if await ws.recv() != "sub":
            await ws.close(1008, "expected sub")
            return
        async with self.subscribed_count:
            self.subscribed.add(ws)
            self.subscribed_count.notify_all()
        await ws.wait_closed()
        self.subscribed.discard(ws)

    async def _poll(self, request: web.Request) -> web.Response:
        query = parse_qs(urlsplit(str(request.rel_url)).query)
        cursor = int(query["cursor"][0])
        async with self.new_tick:
            await self.new_tick.wait_for(lambda: bool(self.ticks) and self.ticks[-1][0] > cursor)
        ticks = [t for t in self.ticks if t[0] > cursor]
        body = msgpack.packb({"ticks": ticks, "cursor": str(ticks[-1][0])})
        return web.Response(body=body, content_type="application/msgpack")

    async def start(self) -> None:
        self._ws = await serve(self._handler, "127.0.0.1", 0, subprotocols=["test.v1"])  # type: ignore[list-item]
        self.ws_port = self._ws.sockets[0].getsockname()[1]
        app = web.Application()
        app.router.add_get("/poll", self._poll)
        # Held polls of clients that went away are cancelled, not waited for at cleanup.
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None
        self.poll_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def wait_subscribed(self, count: int, timeout_s: float = 10.0) -> None:
        async with asyncio.timeout(timeout_s), self.subscribed_count:
            await self.subscribed_count.wait_for(lambda: len(self.subscribed) >= count)

    async def publish(self) -> int:
        """Emit the next tick to every subscriber; returns its number."""
        tick = len(self.ticks)
        stamp = (tick, time.time_ns())
        async with self.new_tick:
            self.ticks.append(stamp)
            self.new_tick.notify_all()
        broadcast(self.subscribed, msgpack.packb(list(stamp)))
        return tick

    async def stop(self) -> None:
        if self._ws is not None:
            self._ws.close()
            await self._ws.wait_closed()
        if self._runner is not None:
            await self._runner.cleanup()
