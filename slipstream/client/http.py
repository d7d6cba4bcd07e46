"""The HTTP halves of the client's transport ladder: SSE streaming and long-polling.

:class:`HttpTransports` is a base of :class:`~slipstream.client.connection.Client`,
which supplies the state it names; see docs/protocol.md (HTTP streaming,
long-polling) for the wire side.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgpack

from broadcast.decoder import Item, StateItem, StreamDecoder
from broadcast.protocol import BroadcastError, Cursor, ProtocolError
from broadcast.transports import FATAL_CLOSE_CODES, FATAL_STATUSES, StreamRefused, TryWebSocket

__all__ = ["ClientError", "HttpTransports"]


class ClientError(BroadcastError):
    """The node refused the subscription or the token; retrying as is cannot help."""


class HttpTransports:
    """SSE and long-poll transports of a client (the state is the client's)."""

    base_url: str
    cars: list[int] | None
    groups: list[str] | None
    codec: str | None
    transport: str
    open_timeout_s: float
    ws_retry_s: float
    decoder: StreamDecoder
    _closed: bool
    _poll_keyframe: bool
    _stream_id: str | None
    _sse_response: aiohttp.ClientResponse | None

    @property
    def cursor(self) -> Cursor | None:
        """Race and last tick applied (resume point)."""
        raise NotImplementedError

    def _headers(self) -> dict[str, str]:
        raise NotImplementedError

    def _items(self, data: bytes) -> list[Item]:
        raise NotImplementedError

    def _query(self) -> dict[str, str]:
        """Query parameters of a poll or a stream: the subscription and the cursor."""
        params: dict[str, str] = {}
        if self.cars is not None:
            params["cars"] = ",".join(map(str, self.cars))
        if self.groups is not None:
            params["groups"] = ",".join(self.groups)
        if self.codec is not None:
            params["codec"] = self.codec
        cursor = self.cursor
        if cursor is not None:
            params["race"], params["cursor"] = cursor.race, str(cursor.tick)
        fresh = self.decoder.cursor is None and cursor is not None
        if fresh or self.decoder.needs_keyframe or self._poll_keyframe:
            params["keyframe"] = "1"
        self._poll_keyframe = False
        return params

    async def _stream_post(self, stream_id: str, message: dict[str, Any], timeout_s: float) -> None:
        """Send a control message to an SSE stream (``POST /v1/stream/{id}/subscribe``)."""
        url = f"{self.base_url}/v1/stream/{stream_id}/subscribe"
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with (
            aiohttp.ClientSession(headers=self._headers()) as http,
            http.post(url, json=message, timeout=timeout) as resp,
        ):
            if resp.status == 400:
                body = await resp.json(content_type=None)
                raise ClientError(f"{body.get('code')}: {body.get('message')}")
            if resp.status == 404:
                raise aiohttp.ClientConnectionError("the stream has ended")
            resp.raise_for_status()

    async def _sse(self) -> AsyncIterator[Item]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        connected = False
        # A large read buffer: one event (a base64 keyframe) is one line.
        async with aiohttp.ClientSession(headers=self._headers(), read_bufsize=1 << 22) as http:
            try:
                async with asyncio.timeout(self.open_timeout_s):
                    resp = await http.get(
                        f"{self.base_url}/v1/stream",
                        params=self._query(),
                        headers={"Accept": "text/event-stream"},
                        timeout=aiohttp.ClientTimeout(total=None),
                    )
            except (OSError, aiohttp.ClientError, TimeoutError) as exc:
                # No answer (a proxy holding or cutting the stream) is a refusal too.
                raise StreamRefused(f"{type(exc).__name__}: {exc}") from exc
            async with resp:
                if resp.status == 400 or resp.status in FATAL_STATUSES:
                    body = await resp.json(content_type=None)
                    raise ClientError(f"{body.get('code')}: {body.get('message')}")
                if resp.status >= 500 or resp.status == 429:
                    resp.raise_for_status()
                if resp.status != 200 or resp.content_type != "text/event-stream":
                    raise StreamRefused(f"HTTP {resp.status} {resp.content_type}")
                retry_at = started + self.ws_retry_s if self.transport == "auto" else None
                self._sse_response = resp
                try:
                    async for item in self._sse_items(
                        resp, loop.time() + self.open_timeout_s, retry_at
                    ):
                        connected = True
                        yield item
                except (OSError, aiohttp.ClientError) as exc:
                    if not connected:
                        raise StreamRefused(f"{type(exc).__name__}: {exc}") from exc
                    raise
                finally:
                    self._stream_id = None
                    self._sse_response = None

    async def _sse_items(
        self, resp: aiohttp.ClientResponse, hello_deadline: float, retry_at: float | None
    ) -> AsyncIterator[Item]:
        """Items of an open SSE response (see docs/protocol.md, HTTP streaming).

        Raises:
            TryWebSocket: At ``retry_at`` (the stream is resumed on the WebSocket).
        """
        loop = asyncio.get_running_loop()
        data: list[bytes] = []
        asked = False
        idle_s = self.open_timeout_s
        while not self._closed:
            # Before the hello: a proxy holding the stream back; after: a dead peer
            # (the node sends a heartbeat comment every heartbeat_s).
            deadline = hello_deadline if self._stream_id is None else loop.time() + idle_s
            retry = self._stream_id is not None and retry_at is not None and retry_at < deadline
            try:
                async with asyncio.timeout_at(retry_at if retry else deadline):
                    line = await resp.content.readline()
            except TimeoutError:
                if retry:
                    raise TryWebSocket from None
                if self._stream_id is None:
                    raise StreamRefused("no event in time (a proxy buffering it?)") from None
                raise
            if not line:
                if self._stream_id is None:
                    raise StreamRefused("the stream ended before its first event")
                return  # the node or a proxy ended it: reconnect and resume
            line = line.rstrip(b"\r\n")
            if line and not line.startswith(b"data:"):
                continue  # id:, retry: (the cursor is ours) and comments (heartbeats)
            if line:
                data.append(line[5:].lstrip(b" "))
                continue
            if not data:
                continue
            message = base64.b64decode(b"".join(data))
            data.clear()
            if self._stream_id is None:
                self.decoder.feed(message)
                hello = self.decoder.hello or {}
                if not hello.get("stream"):
                    raise ProtocolError("malformed", "the stream's first event is not its hello")
                self._stream_id = str(hello["stream"])
                idle_s = 2 * float(hello.get("heartbeat_s", 20.0)) + self.open_timeout_s
                yield StateItem("connected", "sse")
                continue
            for item in self._items(message):
                yield item
            if self.decoder.closed is not None:
                # The stream's close message: what a WebSocket close frame would say.
                code, reason = self.decoder.closed
                if code in FATAL_CLOSE_CODES:
                    raise ClientError(f"closed by the node: {code} {reason}")
                return  # reconnect and resume
            if self.decoder.needs_keyframe and not asked:
                await self._stream_post(self._stream_id, {"op": "keyframe"}, self.open_timeout_s)
                asked = True
            elif not self.decoder.needs_keyframe:
                asked = False

    async def _poll(self) -> AsyncIterator[Item]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        hold_s = 25.0
        async with aiohttp.ClientSession(headers=self._headers()) as http:
            connected = False
            while not self._closed:
                params = self._query()
                timeout = aiohttp.ClientTimeout(total=hold_s + self.open_timeout_s)
                async with http.get(
                    f"{self.base_url}/v1/poll", params=params, timeout=timeout
                ) as resp:
                    if resp.status == 400 or resp.status in FATAL_STATUSES:
                        body = await resp.json(content_type=None)
                        raise ClientError(f"{body.get('code')}: {body.get('message')}")
                    resp.raise_for_status()
                    payload = msgpack.unpackb(await resp.read(), raw=False)
                if not connected:
                    connected = True
                    yield StateItem("connected", "poll")
                for data in payload["m"]:
                    for item in self._items(data):
                        yield item
                if self.transport == "auto" and loop.time() - started >= self.ws_retry_s:
                    raise TryWebSocket
