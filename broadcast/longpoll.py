"""The HTTP side of a node (aiohttp): long-poll, catalogue, health, metrics, pages.

``GET /v1/poll`` is stateless: the request carries the cursor and the
subscription; the response carries every message after the cursor (the same
bytes as on the WebSocket) and the next cursor, or nothing after holding
``poll_hold_s`` when nothing is new.  Body: a msgpack map
``{"v": 1, "race": str|nil, "cursor": int|nil, "m": [bin, ...]}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import msgpack
from aiohttp import web

from broadcast.fan import Fan, ReadHistory, Send
from broadcast.fanout import EncodedTick
from broadcast.guard import scope_request
from broadcast.history import HistoryUnavailable
from broadcast.hub import Hub
from broadcast.protocol import (
    PROTOCOL_VERSION,
    SUBPROTOCOL,
    Cursor,
    ProtocolError,
    Subscribe,
    build_subscribe,
    parse_cursor,
)
from slipstream.catalogue import CATALOGUE
from slipstream.codecs import CODECS
from slipstream.metrics import Registry

__all__ = ["POLL_CONTENT_TYPE", "bad_request", "collect", "make_app", "request_subscription"]

logger = logging.getLogger(__name__)

POLL_CONTENT_TYPE = "application/x-msgpack"
STATIC = Path(__file__).with_name("static")
_PLACEHOLDER = """<!doctype html><html><head><title>Slipstream</title></head><body>
<h1>Slipstream broadcast node</h1><p>The dashboard is not installed; see
<a href="/v1/channels">/v1/channels</a>, <a href="/healthz">/healthz</a>,
<a href="/metrics">/metrics</a>.</p></body></html>
"""


def bad_request(exc: ProtocolError) -> web.Response:
    """A 400 answer naming what was wrong."""
    body = json.dumps({"code": exc.code, "message": exc.message})
    return web.Response(status=400, text=body, content_type="application/json")


def _list(text: str | None) -> list[str] | None:
    if text is None or text == "":
        return None
    return [item.strip() for item in text.split(",") if item.strip()]


def request_subscription(hub: Hub, query: Any) -> tuple[Subscribe, Cursor | None, bool]:
    """The subscription, cursor and keyframe flag of a ``/v1/poll`` or ``/v1/stream`` query.

    Raises:
        ProtocolError: A parameter is wrong.
    """
    cars_text = _list(query.get("cars"))
    cars: list[Any] | None = None
    if cars_text is not None:
        if not all(c.isdigit() for c in cars_text):
            raise ProtocolError("bad_field", "cars must be comma-separated car numbers")
        cars = [int(c) for c in cars_text]
    cursor: Cursor | None = None
    race, tick = query.get("race"), query.get("cursor")
    if tick is not None and ":" in tick:
        cursor = parse_cursor(tick)
    elif tick is not None or race is not None:
        if not race or tick is None or not tick.lstrip("-").isdigit() or int(tick) < -1:
            raise ProtocolError("bad_cursor", "give race=RACE and cursor=TICK (>= -1) together")
        cursor = Cursor(race, int(tick))
    sub = build_subscribe(
        cars,
        _list(query.get("groups")),
        query.get("codec"),
        None,
        codecs=list(CODECS),
        default_codec=hub.config.default_codec,
        known_cars=hub.known_cars or None,
    )
    keyframe = query.get("keyframe", "0") not in ("0", "", "false")
    return sub, cursor, keyframe


async def collect(
    hub: Hub, sub: Subscribe, cursor: Cursor | None, keyframe: bool
) -> tuple[list[bytes], Cursor | None]:
    """Messages after ``cursor`` now (empty when nothing is new yet), and the next cursor.

    A long-poll is a fan that lives for one request: it resumes from the cursor
    like any fan (:meth:`Fan.resume`), re-reading at most one chunk of ticks
    from the bus per response (the poller comes back for more).
    """
    fan = Fan(hub.fans, "poll", None)
    actions = fan.resume(dataclasses.replace(sub, cursor=cursor, keyframe=keyframe))
    messages: list[bytes] = []
    for action in actions:
        if isinstance(action, Send):
            messages.append(action.message)
        elif isinstance(action, ReadHistory):
            started = time.perf_counter()  # a poll's resumes worth timing: from the bus
            first: list[EncodedTick] = []
            with contextlib.suppress(HistoryUnavailable):
                async with contextlib.aclosing(
                    hub.history_chunks(action.race, action.after)
                ) as chunks:
                    async for chunk in chunks:
                        first = chunk
                        break
            more = fan.history_chunk(first) + fan.history_end(more=True)
            messages += [a.message for a in more if isinstance(a, Send)]
            hub.metrics.resume.observe(time.perf_counter() - started)
    race, tick = fan.cursor
    if not messages:
        return [], cursor
    return messages, Cursor(race, tick) if race is not None else cursor


def make_app(hub: Hub, registry: Registry, server_id: str) -> web.Application:
    """The aiohttp application of a node."""

    async def poll(request: web.Request) -> web.Response:
        try:
            sub, cursor, keyframe = request_subscription(hub, request.query)
        except ProtocolError as exc:
            hub.m_errors.inc(code=exc.code)
            return bad_request(exc)
        sub = scope_request(request, sub)  # 403 outside the token's scope
        loop = asyncio.get_running_loop()
        loop_deadline = loop.time() + hub.config.poll_hold_s
        hub.poll_waiting += 1
        try:
            while True:
                messages, next_cursor = await collect(hub, sub, cursor, keyframe)
                remaining = loop_deadline - loop.time()
                if messages or remaining <= 0 or hub.closing:
                    break
                await hub.wait_tick(remaining)
        finally:
            hub.poll_waiting -= 1
        if hub.closing:
            messages.append(hub.shutdown_notice())
        body = msgpack.packb(
            {
                "v": PROTOCOL_VERSION,
                "race": next_cursor.race if next_cursor else None,
                "cursor": next_cursor.tick if next_cursor else None,
                "m": messages,
            },
            use_bin_type=True,
        )
        # Headers are roughly 150 bytes; count them so poll and ws compare fairly.
        hub.sent("poll", max(1, len(messages)), len(body) + 150)
        return web.Response(
            body=body,
            content_type=POLL_CONTENT_TYPE,
            headers={"Cache-Control": "no-store", "X-Slipstream-Protocol": SUBPROTOCOL},
        )

    async def channels(request: web.Request) -> web.Response:
        return web.json_response(CATALOGUE.to_json())

    async def healthz(request: web.Request) -> web.Response:
        latest = hub.ring.latest
        return web.json_response(
            {
                "status": "ok",
                "server": server_id,
                "race": latest.race if latest else None,
                "tick": latest.tick if latest else None,
                "subscribers": {
                    "ws": hub.fans.count("ws"),
                    "sse": hub.fans.count("sse"),
                    "poll": hub.poll_waiting,
                },
            }
        )

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(
            text=registry.render(), content_type="text/plain", charset="utf-8",
            headers={"X-Content-Type-Version": "0.0.4"},
        )  # fmt: skip

    async def ws_refused(request: web.Request) -> web.Response:
        # Reached only when the request lost its Upgrade header on the way.
        return web.Response(
            status=426,
            text="WebSocket upgrade required (was the Upgrade header stripped by a proxy?); "
            "long-poll at /v1/poll instead\n",
            headers={"Upgrade": "websocket", "Connection": "Upgrade"},
        )

    async def index(request: web.Request) -> web.StreamResponse:
        page = STATIC / "index.html"
        if not page.exists():
            return web.Response(text=_PLACEHOLDER, content_type="text/html")
        return web.FileResponse(page)

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/v1/poll", poll)
    app.router.add_get("/v1/channels", channels)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/ws", ws_refused)
    if STATIC.is_dir():
        app.router.add_static("/static/", STATIC)
    return app
