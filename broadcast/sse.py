"""HTTP streaming: ``GET /v1/stream`` as Server-Sent Events, between WebSocket and long-poll.

For fans behind proxies that refuse the WebSocket upgrade but pass a
long-lived HTTP response.  A stream carries exactly the messages a WebSocket
fan would get (the same bytes, base64 in one ``data:`` line per message); a
tick message's event has ``id: RACE:TICK`` so a reconnecting ``EventSource``
resumes with ``Last-Event-ID`` (no gap, no duplicate).  The first event is the
``hello``, with the stream id the fan names in ``POST
/v1/stream/{id}/subscribe`` to change its subscription.  See docs/protocol.md.

A stream is a :class:`~broadcast.fan.Fan` like any other; this adapter only
writes its bytes.  After the response head, every write goes straight to the
transport as one HTTP chunk (the live ticks as the hub's shared chunks).  A
stream whose unsent bytes pass ``max_send_buffer_bytes`` drops the tick and is
behind, as a WebSocket fan is; a ``close`` decided by the core ends the stream
with a ``close`` message carrying the WebSocket close code (a fan too slow to
read it is cut).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import secrets
import time
from typing import Any

from aiohttp import web

from broadcast.fan import Fan
from broadcast.framing import SSE_HEARTBEAT, chunk, sse_event
from broadcast.guard import client_address, request_grant, scope_request
from broadcast.hub import Hub
from broadcast.longpoll import bad_request, request_subscription
from broadcast.protocol import (
    CLOSE_TOO_SLOW,
    SUBPROTOCOL,
    ProtocolError,
    decode_message,
    encode_message,
    parse_control,
    parse_cursor,
)
from slipstream.codecs import CODECS

__all__ = ["SSE_CONTENT_TYPE", "SseStreams", "add_sse_routes"]

logger = logging.getLogger(__name__)

SSE_CONTENT_TYPE = "text/event-stream"
_STREAMS_KEY = web.AppKey("sse_streams", object)


class SseStream:
    """The connection of one event-stream fan (``hub.Connection``)."""

    __slots__ = ("done", "fan", "hub", "limit", "transport")

    def __init__(self, hub: Hub, transport: asyncio.Transport) -> None:
        self.hub = hub
        self.transport = transport
        self.limit = hub.config.max_send_buffer_bytes
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.fan: Fan | None = None

    def sink(self, data: bytes) -> None:
        """The live write of a tick's shared chunk (drops it when the fan is behind)."""
        transport = self.transport
        if transport.is_closing():
            self.end()
        elif transport.get_write_buffer_size() > self.limit:
            if self.fan is not None:
                self.hub.fans.pause(self.fan, dropped=True)
        else:
            transport.write(data)

    def room(self) -> bool:
        """Whether a stream that fell behind can take writes again."""
        return self.transport.get_write_buffer_size() <= self.limit

    def send(self, message: bytes, event_id: str | None) -> None:
        """Write one server message as one SSE event."""
        if self.done.done() or self.transport.is_closing():
            return
        data = chunk(sse_event(message, event_id))
        self.transport.write(data)
        self.hub.sent("sse", 1, len(data))

    def close(self, code: int, reason: str) -> None:
        """End the stream: a ``close`` message with the code, or a cut for a slow fan."""
        if code == CLOSE_TOO_SLOW:
            logger.info("cutting an event stream that stayed behind")
            self.transport.abort()
        else:
            self.send(encode_message({"t": "close", "code": code, "reason": reason}), None)
        self.end()

    def end(self) -> None:
        """The stream is over (the handler finishes the response)."""
        if self.fan is not None:
            self.fan.closed()
        if not self.done.done():
            self.done.set_result(None)


class SseStreams:
    """The event-stream routes of a node (see module doc)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.streams: dict[str, SseStream] = {}

    async def stop(self) -> None:
        """Tell every stream the node is stopping and end it."""
        bye = self.hub.shutdown_notice()
        for stream in list(self.streams.values()):
            stream.send(bye, None)
            stream.end()

    async def handle_stream(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/stream``: the query of ``/v1/poll``; ``Last-Event-ID`` overrides the cursor."""
        hub = self.hub
        try:
            sub, cursor, keyframe = request_subscription(hub, request.query)
            last_id = request.headers.get("Last-Event-ID")
            if last_id:
                cursor = parse_cursor(last_id)
        except ProtocolError as exc:
            hub.m_errors.inc(code=exc.code)
            return bad_request(exc)
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
        await resp.write(b"retry: 1000\n")  # also sends the head: later writes go around aiohttp
        stream = SseStream(hub, transport)
        stream_id = secrets.token_urlsafe(12)
        fan = Fan(
            hub.fans, "sse", stream.sink, fan_id=stream_id, remote=client_address(request),
            room=stream.room,
        )  # fmt: skip
        fan.owner = stream
        stream.fan = fan
        grant = request_grant(request)
        hub.fans.add(fan, None if grant is None else grant.expires_at)
        self.streams[stream_id] = stream
        try:
            hub.perform(
                fan, fan.open(stream=stream_id, subscribe=f"/v1/stream/{stream_id}/subscribe")
            )
            if hub.closing:
                stream.send(hub.shutdown_notice(), None)
                return resp
            started = time.perf_counter()
            actions = fan.resume(dataclasses.replace(sub, cursor=cursor, keyframe=keyframe))
            hub.perform(fan, actions, started if cursor is not None else None)
            await self._heartbeat(stream)
        finally:
            self.streams.pop(stream_id, None)
            hub.fans.remove(fan)
        return resp

    async def _heartbeat(self, stream: SseStream) -> None:
        """Wait for the stream's end; a heartbeat comment every ``ping_interval_s``."""
        interval = self.hub.config.ping_interval_s
        beat = chunk(SSE_HEARTBEAT)
        while not stream.done.done():
            try:
                await asyncio.wait_for(asyncio.shield(stream.done), interval)
            except TimeoutError:
                if stream.transport.is_closing():
                    stream.end()
                else:
                    stream.transport.write(beat)

    async def handle_subscribe(self, request: web.Request) -> web.Response:
        """``POST /v1/stream/{id}/subscribe``: a control message like the WebSocket's."""
        hub = self.hub
        stream = self.streams.get(request.match_info["id"])
        if stream is None or stream.fan is None or stream.done.done():
            return web.json_response(
                {"code": "unknown_stream", "message": "no such stream on this node"}, status=404
            )
        fan = stream.fan
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
            return bad_request(exc)
        if op == "ping":
            return web.json_response({"t": "pong"})
        if sub is not None:
            sub = scope_request(request, sub)  # 403 outside the token's scope
        actions = fan.control(op, sub, asyncio.get_running_loop().time(), time.time())
        hub.perform(fan, actions)
        ack: dict[str, Any] = {"t": "keyframe"}
        for action in actions:
            message = getattr(action, "message", None)
            if message is not None:
                ack = decode_message(message)
                break
        return web.json_response(ack)


def add_sse_routes(app: web.Application, hub: Hub) -> SseStreams:
    """Serve ``GET /v1/stream`` and ``POST /v1/stream/{id}/subscribe`` on ``app``."""
    streams = SseStreams(hub)
    app[_STREAMS_KEY] = streams
    app.router.add_get("/v1/stream", streams.handle_stream)
    app.router.add_post("/v1/stream/{id}/subscribe", streams.handle_subscribe)

    async def on_shutdown(app: web.Application) -> None:
        await streams.stop()

    app.on_shutdown.append(on_shutdown)
    return streams
