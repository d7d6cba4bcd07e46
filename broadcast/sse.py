"""HTTP streaming: ``GET /v1/stream`` as Server-Sent Events, between WebSocket and long-poll.

For fans behind proxies that refuse the WebSocket upgrade but pass a
long-lived HTTP response.  A stream carries exactly the messages a WebSocket
fan would get (the same bytes, base64 in one ``data:`` line per message); a
tick message's event has ``id: RACE:TICK`` so a reconnecting ``EventSource``
resumes with ``Last-Event-ID`` (no gap, no duplicate).  The first event is the
``hello``, with the stream id the fan names in ``POST
/v1/stream/{id}/subscribe`` to change its subscription.  See docs/protocol.md.

A stream first catches up from the cursor with the long-poll machinery (bus
history, then the replay ring), then turns live in the same step as its last
check.  Live ticks are fanned out by one task per node for every stream: the
shared message bytes of each (subscription, keyframe) and their SSE event
text are built once per tick, and each stream gets them queued to its writer.
A stream whose queued plus unsent bytes pass ``max_send_buffer_bytes`` is
behind and treated as a slow WebSocket fan: ticks skipped, a ``conflated``
notice and a keyframe when it has room, cut after ``slow_fan_ticks``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
from typing import Any

import msgpack
from aiohttp import web

from broadcast.fanout import EncodedTick
from broadcast.guard import scope_request
from broadcast.hub import Hub
from broadcast.longpoll import _bad_request, _collect, _from_history, _request_subscription
from broadcast.protocol import (
    SUBPROTOCOL,
    Cursor,
    ProtocolError,
    Subscribe,
    encode_message,
    parse_control,
    parse_cursor,
)
from broadcast.ring import notice_message
from slipstream.catalogue import CATALOGUE
from slipstream.codecs import CODECS

__all__ = ["SSE_CONTENT_TYPE", "SseStreams", "add_sse_routes", "sse_event"]

logger = logging.getLogger(__name__)

SSE_CONTENT_TYPE = "text/event-stream"
#: A comment line: keeps idle proxies and load balancers from closing the stream.
HEARTBEAT = b": heartbeat\n\n"
_TICK_PREFIX = b"\xa1t\xa4tick"  # a tick message's packed {"t": "tick", ...}
_STREAMS_KEY = web.AppKey("sse_streams", object)


def sse_event(message: bytes, event_id: str | None = None) -> bytes:
    """One server message as an SSE event: ``id: RACE:TICK`` (ticks only), ``data: base64``."""
    data = base64.b64encode(message)
    if event_id is None:
        return b"data: " + data + b"\n\n"
    return b"id: " + event_id.encode() + b"\ndata: " + data + b"\n\n"


def _chunk(data: bytes) -> bytes:
    """``data`` framed as one HTTP/1.1 chunk (the response is chunked; the fan-out writes
    framed chunks straight to the transport, as aiohttp's own writes frame them)."""
    return b"%x\r\n" % len(data) + data + b"\r\n"


def _tick_id(message: bytes) -> str | None:
    """``RACE:TICK`` of a tick message (reads the header only), None for other messages."""
    if message[1:8] != _TICK_PREFIX:
        return None
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(message[:512])
    fields: dict[str, Any] = {}
    unpacker.read_map_header()
    for _ in range(3):
        key = unpacker.unpack()
        fields[key] = unpacker.unpack()
    return f"{fields['race']}:{fields['tick']}"


class _Stream:
    """One SSE fan; the fan-out task queues its live messages, its handler writes them."""

    def __init__(self, stream_id: str, sub: Subscribe, transport: asyncio.Transport) -> None:
        self.id = stream_id
        self.sub: Subscribe | None = sub
        self.transport = transport
        self.live = False
        self.ended = False
        self.needs_keyframe = False
        self.race: str | None = None
        self.last_tick = -1
        self.behind_from: int | None = None
        self.behind_ticks = 0
        self.queue: list[bytes] = []
        self.queued = 0
        self.wake = asyncio.Event()
        self.writing = False  # the handler is inside a write of its own
        self.written_at = 0.0  # loop time of the fan-out's last direct write

    def push(self, event: bytes) -> None:
        self.queue.append(event)
        self.queued += len(event)
        self.wake.set()

    def take(self) -> bytes:
        blob = b"".join(self.queue)
        self.queue.clear()
        self.queued = 0
        self.wake.clear()
        return blob


class SseStreams:
    """The SSE streams of a node and their live fan-out (see module doc)."""

    def __init__(self, hub: Hub, server_id: str) -> None:
        self.hub = hub
        self.server_id = server_id
        self.streams: dict[str, _Stream] = {}
        self._task: asyncio.Task[None] | None = None
        hub.m_subscribers.set_function(lambda: float(len(self.streams)), transport="sse")

    async def start(self) -> None:
        """Start the fan-out task."""
        if self._task is None:
            self._task = asyncio.create_task(self._fan_out_loop(), name="broadcast-sse")

    async def stop(self) -> None:
        """Stop the fan-out task and end every stream."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._end_all()

    def _end_all(self) -> None:
        # A stopping node tells every fan (as on the WebSocket) before ending its stream.
        ending = [s for s in self.streams.values() if not s.ended]
        bye = sse_event(self.hub.shutdown_notice())
        for stream in ending:
            stream.push(bye)
            stream.ended = True
        self.hub.sent("sse", len(ending), len(ending) * len(bye))

    # -- HTTP handlers --------------------------------------------------------------

    async def handle_stream(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/stream``: the query of ``/v1/poll``; ``Last-Event-ID`` overrides the cursor."""
        hub = self.hub
        try:
            (sub, cursor), keyframe = _request_subscription(hub, request.query)
            last_id = request.headers.get("Last-Event-ID")
            if last_id:
                cursor = parse_cursor(last_id)
        except ProtocolError as exc:
            hub.m_errors.inc(code=exc.code)
            return _bad_request(exc)
        sub = scope_request(request, sub)  # 403 outside the token's scope
        transport = request.transport
        if transport is None:
            return web.Response(status=503)
        resp = web.StreamResponse(
            headers={
                "Content-Type": SSE_CONTENT_TYPE,
                "Cache-Control": "no-cache, no-store",
                "X-Accel-Buffering": "no",
                "X-Slipstream-Protocol": SUBPROTOCOL,
            }
        )
        await resp.prepare(request)
        stream = _Stream(secrets.token_urlsafe(12), sub, transport)
        self.streams[stream.id] = stream
        try:
            await self._write(resp, b"retry: 1000\n" + sse_event(self._hello(stream.id)))
            if hub.closing:
                await self._write(resp, sse_event(hub.shutdown_notice()))
                return resp
            await self._catch_up(resp, stream, sub, cursor, keyframe)
            await self._pump(resp, stream)
        except (ConnectionError, RuntimeError):
            pass  # the fan went away
        finally:
            stream.live = False
            stream.ended = True
            self.streams.pop(stream.id, None)
        return resp

    async def handle_subscribe(self, request: web.Request) -> web.Response:
        """``POST /v1/stream/{id}/subscribe``: a control message like the WebSocket's."""
        hub = self.hub
        stream = self.streams.get(request.match_info["id"])
        if stream is None or stream.ended or stream.transport.is_closing():
            return web.json_response(
                {"code": "unknown_stream", "message": "no such stream on this node"}, status=404
            )
        body = await request.read()
        if len(body) > hub.config.max_message_bytes:
            return web.json_response(
                {"code": "bad_field", "message": "message too large"}, status=413
            )
        try:
            text = body.decode() if body else "{}"
            obj = json.loads(text)
            if isinstance(obj, dict):
                obj.setdefault("op", "subscribe")
                text = json.dumps(obj)
            op, sub = parse_control(
                text,
                codecs=list(CODECS),
                default_codec=hub.config.default_codec,
                known_cars=hub.known_cars or None,
            )
            if sub is not None and sub.cursor is not None:
                raise ProtocolError(
                    "bad_field", "a stream resumes by reconnecting (Last-Event-ID), not by cursor"
                )
        except (ProtocolError, UnicodeDecodeError, ValueError) as exc:
            if not isinstance(exc, ProtocolError):
                exc = ProtocolError("malformed", "expected a JSON map")
            hub.m_errors.inc(code=exc.code)
            return _bad_request(exc)
        ack: dict[str, Any] = {"t": "unsubscribed"}
        if op == "keyframe":
            stream.needs_keyframe = True
            hub.m_keyframes.inc(reason="requested")
            ack = {"t": "keyframe"}
        elif op == "unsubscribe":
            stream.sub = None
        elif op == "ping":
            ack = {"t": "pong"}
        elif sub is not None:
            stream.sub = sub = scope_request(request, sub)  # 403 outside the token's scope
            stream.needs_keyframe = True  # the next tick is a keyframe of the new subscription
            latest = hub.ring.latest
            ack = {
                "t": "subscribed",
                "cars": list(sub.cars) if sub.cars is not None else None,
                "groups": [CATALOGUE.groups[g].name for g in sub.groups],
                "codec": sub.codec,
                "race": latest.race if latest else None,
                "tick": latest.tick if latest else None,
            }
        if ack["t"] in ("subscribed", "unsubscribed"):
            message = encode_message(ack)
            stream.push(sse_event(message))
            hub.sent("sse", 1, len(message))
        return web.json_response(ack)

    # -- one stream -----------------------------------------------------------------

    def _hello(self, stream_id: str) -> bytes:
        subscribe = f"/v1/stream/{stream_id}/subscribe"
        return self.hub.hello(self.server_id, stream=stream_id, subscribe=subscribe)

    async def _write(self, resp: web.StreamResponse, data: bytes, messages: int = 1) -> None:
        await resp.write(data)
        self.hub.sent("sse", messages, len(data))

    async def _catch_up(
        self,
        resp: web.StreamResponse,
        stream: _Stream,
        sub: Subscribe,
        cursor: Cursor | None,
        keyframe: bool,
    ) -> None:
        """Send what follows the cursor (bus history, ring) until nothing is left, then go live."""
        hub = self.hub
        first = True
        while True:
            sub = stream.sub or sub  # a subscription changed during the catch-up
            history = await _from_history(hub, sub, cursor, keyframe)
            if history is not None:
                messages, cursor = history
            else:
                messages, next_cursor = _collect(hub, sub, cursor, keyframe)
                if not messages:
                    # Nothing new: live from here, in the same step as this check.
                    if cursor is not None:
                        stream.race, stream.last_tick = cursor.race, cursor.tick
                    else:
                        stream.needs_keyframe = True
                    stream.live = True
                    return
                cursor = next_cursor
            if first and cursor is not None and messages:
                hub.m_replays.inc()
            first = False
            keyframe = False
            events = [sse_event(m, _tick_id(m)) for m in messages]
            await self._write(resp, b"".join(events), len(events))

    async def _pump(self, resp: web.StreamResponse, stream: _Stream) -> None:
        """Write what the fan-out queued; a heartbeat comment after a silence."""
        interval = self.hub.config.ping_interval_s
        loop = asyncio.get_running_loop()
        stream.written_at = loop.time()
        while True:
            if not stream.queue:
                if stream.ended:
                    return
                try:
                    async with asyncio.timeout_at(stream.written_at + interval):
                        await stream.wake.wait()
                except TimeoutError:
                    if loop.time() >= stream.written_at + interval:
                        await self._pump_write(resp, stream, HEARTBEAT)
                    continue
            if stream.queue:
                await self._pump_write(resp, stream, stream.take())

    @staticmethod
    async def _pump_write(resp: web.StreamResponse, stream: _Stream, data: bytes) -> None:
        stream.writing = True
        try:
            await resp.write(data)
        finally:
            stream.writing = False
            stream.written_at = asyncio.get_running_loop().time()

    # -- live fan-out -------------------------------------------------------------

    async def _fan_out_loop(self) -> None:
        hub = self.hub
        latest = hub.ring.latest
        last: tuple[str, int] | None = (latest.race, latest.tick) if latest else None
        while not hub.closing:
            await hub.wait_tick(60.0)
            ticks: list[EncodedTick] = list(hub.ring)
            if last is not None:
                ticks = hub.ring.after(*last) or [
                    t for t in ticks if t.race != last[0] or t.tick > last[1]
                ]
            for tick in ticks:
                self._fan_out(tick)
                last = (tick.race, tick.tick)
        self._end_all()

    def _fan_out(self, tick: EncodedTick) -> None:
        hub = self.hub
        limit = hub.config.max_send_buffer_bytes
        tick_id = f"{tick.race}:{tick.tick}"
        events = [sse_event(m) for m in tick.event_messages()]
        head = b"".join(events)
        # Shared message -> the SSE text of the tick's events and it, bare and chunk-framed.
        cache: dict[bytes, tuple[bytes, bytes]] = {}
        count = size = 0
        now = asyncio.get_running_loop().time()
        for stream in list(self.streams.values()):
            sub = stream.sub
            if sub is None or not stream.live or stream.ended:
                continue
            if stream.race == tick.race and tick.tick <= stream.last_tick:
                continue  # caught up past it already, or a cursor ahead of this node
            if stream.transport.is_closing():
                continue
            if stream.transport.get_write_buffer_size() + stream.queued > limit:
                self._behind(stream, tick)
                continue
            if stream.behind_from is not None:
                why = (
                    f"you fell behind: ticks {stream.behind_from}..{tick.tick - 1} were "
                    "dropped; this tick is a keyframe"
                )
                notice = sse_event(
                    notice_message("conflated", why, tick.race, stream.behind_from, tick.tick - 1)
                )
                stream.push(notice)
                count, size = count + 1, size + len(notice)
                stream.behind_from = None
                stream.behind_ticks = 0
                hub.m_keyframes.inc(reason="slow")
            keyframe = stream.needs_keyframe or (
                stream.race is not None and stream.race != tick.race
            )
            message = tick.message(sub.key, keyframe)
            cached = cache.get(message)
            if cached is None:
                text = head + sse_event(message, tick_id)
                cached = cache[message] = (text, _chunk(text))
            text, chunk = cached
            if stream.queue or stream.writing:
                stream.push(text)  # after what is pending, by the handler
            else:
                # The common case, as cheap as a WebSocket fan: one write of shared bytes.
                stream.transport.write(chunk)
                stream.written_at = now
            count += 1 + len(events)
            size += len(chunk)
            stream.needs_keyframe = False
            stream.race, stream.last_tick = tick.race, tick.tick
        if count:
            hub.sent("sse", count, size)

    def _behind(self, stream: _Stream, tick: EncodedTick) -> None:
        hub = self.hub
        hub.m_slow_drops.inc()
        if stream.behind_from is None:
            stream.behind_from = tick.tick
        stream.behind_ticks += 1
        stream.needs_keyframe = True
        if stream.behind_ticks >= hub.config.slow_fan_ticks:
            hub.m_slow_closes.inc()
            logger.info("cutting an SSE fan that stayed behind for %d ticks", stream.behind_ticks)
            stream.live = False
            stream.ended = True
            stream.transport.abort()


def add_sse_routes(app: web.Application, hub: Hub, server_id: str) -> SseStreams:
    """Serve ``GET /v1/stream`` and ``POST /v1/stream/{id}/subscribe`` on ``app``."""
    streams = SseStreams(hub, server_id)
    app[_STREAMS_KEY] = streams
    app.router.add_get("/v1/stream", streams.handle_stream)
    app.router.add_post("/v1/stream/{id}/subscribe", streams.handle_subscribe)

    async def on_startup(app: web.Application) -> None:
        await streams.start()

    async def on_shutdown(app: web.Application) -> None:
        await streams.stop()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    return streams
