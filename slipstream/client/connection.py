"""The asyncio client: ``async with Client(url, ...) as c: async for item in c``.

Items are :class:`~broadcast.decoder.FrameItem` (one car at one tick, values
in channel units), :class:`~broadcast.decoder.EventItem`,
:class:`~broadcast.decoder.NoticeItem` and, for connection state,
:class:`~broadcast.decoder.StateItem` (``connected``, ``reconnecting``,
``suspended``).

A refusal (close 4001/4003/4004 at any point, the hello included, or HTTP
401/403 on any transport) ends the retries: the client reports ``suspended``
with the node's reason (:attr:`Client.refusal`) and makes no further attempt
until the app calls :meth:`Client.set_token` (or :meth:`Client.subscribe`);
:meth:`Client.close` ends the iterator.

The client keeps a cursor (race, last tick applied) and resumes from it on
every reconnect, with jittered exponential backoff.  With ``transport="auto"``
it starts on the WebSocket, falls back to HTTP streaming (Server-Sent Events,
``/v1/stream``) when the upgrade is refused (e.g. a proxy strips ``Upgrade``),
to long-polling when the stream is refused too (e.g. a proxy that buffers or
cuts long responses: no ``hello`` within ``open_timeout_s``), and climbs back
to the WebSocket every ``ws_retry_s`` while on a lesser transport.

Example::

    async with Client("http://127.0.0.1:8000", cars=[24, 48], groups=["tyres"]) as client:
        async for item in client:
            if isinstance(item, FrameItem):
                print(item.tick, item.car, item.values["tyre_temp_lf_middle"])
            elif isinstance(item, StateItem):
                print("connection", item.state, "via", item.transport)

Resume later from where it was: ``Client(url, ..., cursor=client.cursor)``.
See docs/protocol.md for the wire protocol.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from broadcast.decoder import Item, NoticeItem, StateItem, StreamDecoder
from broadcast.protocol import SUBPROTOCOL, Cursor, ProtocolError
from broadcast.transports import (
    FATAL_CLOSE_CODES,
    FATAL_STATUSES,
    StreamRefused,
    TryWebSocket,
    UpgradeRefused,
    node_urls,
)
from slipstream.client.http import ClientError, HttpTransports

__all__ = ["Client", "ClientError"]

logger = logging.getLogger(__name__)
TRANSPORTS = ("auto", "ws", "sse", "poll")


def _refusal(exc: ConnectionClosed) -> ClientError | None:
    """The refusal a close stands for (4001/4003/4004), or None when retrying may help."""
    if exc.rcvd is not None and exc.rcvd.code in FATAL_CLOSE_CODES:
        return ClientError(f"closed by the node: {exc.rcvd.code} {exc.rcvd.reason}")
    return None


class Client(HttpTransports):
    """A fan's connection to a broadcast node (see module doc).

    Args:
        url: Node URL (``http://host:port`` or ``ws://host:port/ws``).
        cars: Car numbers, or None for every car.
        groups: Channel group names, or None for every group.
        codec: Codec name, or None for the node's default.
        transport: ``auto``, ``ws``, ``sse`` or ``poll``.
        cursor: Start after this cursor (None: from a keyframe of the latest tick).
        token: Access token, sent as ``Authorization: Bearer``.
        backoff_initial_s: First reconnect delay (before jitter).
        backoff_max_s: Longest reconnect delay.
        suspend_after_s: Reconnecting longer than this reports ``suspended``.
        ws_retry_s: While streaming or long-polling in ``auto`` mode, retry the
            WebSocket this often.
        open_timeout_s: Longest wait for a connection to open (for a stream,
            for its first event: longer means a proxy holds it back).
    """

    def __init__(
        self,
        url: str,
        cars: Sequence[int] | None = None,
        groups: Sequence[str] | None = None,
        codec: str | None = None,
        transport: str = "auto",
        cursor: Cursor | None = None,
        token: str | None = None,
        *,
        backoff_initial_s: float = 0.25,
        backoff_max_s: float = 10.0,
        suspend_after_s: float = 30.0,
        ws_retry_s: float = 30.0,
        open_timeout_s: float = 10.0,
    ) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
        if backoff_initial_s <= 0 or backoff_max_s < backoff_initial_s:
            raise ValueError("need 0 < backoff_initial_s <= backoff_max_s")
        self.base_url, self.ws_url = node_urls(url)
        self.cars = list(cars) if cars is not None else None
        self.groups = list(groups) if groups is not None else None
        self.codec = codec
        self.transport = transport
        self.token = token
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.suspend_after_s = suspend_after_s
        self.ws_retry_s = ws_retry_s
        self.open_timeout_s = open_timeout_s
        self.decoder = StreamDecoder()
        self._start_cursor = cursor
        self._ws: ClientConnection | None = None
        self._mode = transport if transport in ("poll", "sse") else "ws"
        self._stream_id: str | None = None
        self._sse_response: aiohttp.ClientResponse | None = None
        self._poll_keyframe = False
        self._closed = False
        self._acked = asyncio.Event()
        self._wake = asyncio.Event()
        #: The node's reason for refusing (None unless ``suspended`` by a refusal).
        self.refusal: str | None = None

    @property
    def cursor(self) -> Cursor | None:
        """Race and last tick applied (resume point)."""
        return self.decoder.cursor or self._start_cursor

    @property
    def current_transport(self) -> str:
        """``ws``, ``sse`` or ``poll``: what the client uses now."""
        return self._mode

    def __aiter__(self) -> AsyncIterator[Item]:
        return self._run()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def set_token(self, token: str | None) -> None:
        """Use ``token`` from the next connection; a client suspended by a refusal retries."""
        self.token = token
        self._wake.set()

    async def close(self) -> None:
        """Stop, telling the node (a WebSocket close 1000); the iterator ends."""
        self._closed = True
        self._wake.set()
        if self._ws is not None:
            await self._ws.close()
        if self._sse_response is not None:
            self._sse_response.close()

    async def subscribe(
        self,
        cars: Sequence[int] | None = None,
        groups: Sequence[str] | None = None,
        codec: str | None = None,
        *,
        timeout_s: float = 10.0,
    ) -> None:
        """Change the subscription mid-stream, effective from the next tick.

        On the WebSocket this returns once the node acknowledged the change
        (while the iterator is being consumed); on an SSE stream once the
        node answered its ``POST /v1/stream/{id}/subscribe``; on long-poll,
        the next poll carries it.

        Raises:
            TimeoutError: No acknowledgement within ``timeout_s``.
            ClientError: The node refused the subscription (SSE).
        """
        self.cars = list(cars) if cars is not None else None
        self.groups = list(groups) if groups is not None else None
        self.codec = codec or self.codec
        self._wake.set()  # a client suspended by a refusal tries the new subscription
        if self._ws is not None and self._mode == "ws":
            self._acked.clear()
            await self._ws.send(json.dumps(self._subscription(resume=False)))
            async with asyncio.timeout(timeout_s):
                await self._acked.wait()
        elif self._mode == "sse" and self._stream_id is not None:
            try:
                await self._stream_post(
                    self._stream_id, self._subscription(resume=False), timeout_s
                )
            except (OSError, aiohttp.ClientConnectionError):
                # The stream ended, or this node does not hold it (a load balancer sent the
                # POST elsewhere): reconnect; the new stream's query carries the change.
                self._poll_keyframe = True
                if self._sse_response is not None:
                    self._sse_response.close()
        else:
            self._poll_keyframe = True

    def _subscription(self, *, resume: bool) -> dict[str, Any]:
        msg: dict[str, Any] = {"op": "subscribe", "cars": self.cars, "groups": self.groups}
        if self.codec is not None:
            msg["codec"] = self.codec
        cursor = self.cursor
        if resume and cursor is not None:
            msg["cursor"] = {"race": cursor.race, "tick": cursor.tick}
            # Without state for the cursor's race, deltas would not apply.
            msg["keyframe"] = self.decoder.cursor is None or self.decoder.needs_keyframe
        return msg

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def _run(self) -> AsyncIterator[Item]:
        attempt = 0
        failing_since: float | None = None
        loop = asyncio.get_running_loop()
        while not self._closed:
            detail = ""
            try:
                if self._mode == "ws":
                    stream = self._websocket()
                else:
                    stream = self._sse() if self._mode == "sse" else self._poll()
                async for item in stream:
                    if isinstance(item, StateItem) and item.state == "connected":
                        attempt, failing_since = 0, None
                    yield item
                detail = "connection closed"
            except UpgradeRefused as exc:
                if self.transport == "ws":
                    detail = f"WebSocket upgrade refused: {exc}"
                else:
                    logger.info("WebSocket upgrade refused (%s); HTTP streaming", exc)
                    self._mode = "sse"
                    continue
            except StreamRefused as exc:
                if self.transport == "sse":
                    detail = f"HTTP stream refused: {exc}"
                else:
                    logger.info("HTTP stream refused (%s); long-polling", exc)
                    self._mode = "poll"
                    continue
            except TryWebSocket:
                self._mode = "ws"
                continue
            except ClientError as exc:
                if self._closed:
                    return
                # Retrying as is cannot help: wait for a new token (or subscription).
                self.refusal = str(exc)
                logger.warning("the node refused: %s; suspended", exc)
                self._wake.clear()
                yield StateItem("suspended", self._mode, self.refusal, refused=True)
                await self._wake.wait()
                self.refusal = None
                attempt, failing_since = 0, None
                if self.transport == "auto":
                    self._mode = "ws"
                continue
            except (
                OSError,
                ConnectionClosed,
                InvalidHandshake,
                aiohttp.ClientError,
                TimeoutError,
                ProtocolError,
            ) as exc:
                detail = f"{type(exc).__name__}: {exc}"
                if self.transport == "auto" and self._mode in ("sse", "poll"):
                    self._mode = "ws"  # the node may be back, with its WebSocket
            if self._closed:
                return
            attempt += 1
            now = loop.time()
            failing_since = failing_since if failing_since is not None else now
            state = "suspended" if now - failing_since > self.suspend_after_s else "reconnecting"
            yield StateItem(state, self._mode, detail)
            delay = min(self.backoff_max_s, self.backoff_initial_s * 2 ** (attempt - 1))
            # Full jitter: fans dropped together do not come back together.
            await asyncio.sleep(random.uniform(delay / 2, delay))

    def _items(self, data: bytes) -> list[Item]:
        items = self.decoder.feed(data)
        for item in items:
            if isinstance(item, NoticeItem) and item.error:
                raise ClientError(f"{item.code}: {item.message}")
        return items

    async def _websocket(self) -> AsyncIterator[Item]:
        try:
            ws = await connect(
                self.ws_url,
                subprotocols=[Subprotocol(SUBPROTOCOL)],
                compression=None,
                open_timeout=self.open_timeout_s,
                max_size=None,
                additional_headers=self._headers(),
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in FATAL_STATUSES:
                body = (
                    exc.response.body.decode(errors="replace").strip() if exc.response.body else ""
                )
                raise ClientError(
                    f"the node refused the connection: HTTP {status} {body}"
                ) from None
            if status < 500 and status != 429:
                raise UpgradeRefused(f"HTTP {status}") from exc
            raise
        except InvalidHandshake as exc:
            raise UpgradeRefused(str(exc)) from exc
        self._ws = ws
        try:
            # A refusal may come at any point, before the hello included.
            try:
                self.decoder.feed(await ws.recv(decode=False))
                await ws.send(json.dumps(self._subscription(resume=True)))
                yield StateItem("connected", "ws")
                asked = False
                async for data in ws:
                    if isinstance(data, str):
                        continue
                    acks = self.decoder.acks
                    items = self._items(data)
                    if self.decoder.acks != acks:
                        self._acked.set()
                    for item in items:
                        yield item
                    if self.decoder.needs_keyframe and not asked:
                        await ws.send('{"op": "keyframe"}')
                        asked = True
                    elif not self.decoder.needs_keyframe:
                        asked = False
            except ConnectionClosed as exc:
                refusal = _refusal(exc)
                if refusal is not None:
                    raise refusal from None
                raise
            # The iterator ends without an exception on a normal close (1000/1001).
            if ws.close_code in FATAL_CLOSE_CODES:
                raise ClientError(f"closed by the node: {ws.close_code} {ws.close_reason}")
        finally:
            self._ws = None
            await ws.close()
