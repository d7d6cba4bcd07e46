"""Fans of the three transports over real sockets, each decoding into one normalised stream.

A :class:`Fan` is one fan across connections: its decoder (the fan's state
for deltas) lives on while connections come and go, as a resuming client's
does.  Each transport's fan turns what it receives into the same entries
(tests/broadcast/normalised.py), so a scenario's stream can be compared
across transports.

What ended the session is the fan's :attr:`Fan.outcome` (None while it is
served): ``("closed", code)`` for a WebSocket close, ``("refused", status,
code)`` for an HTTP refusal of the session's own request (a poll, the stream,
its control post; a later success clears it), ``("cut",)`` for an event stream
that ended without its last chunk, ``("ended", code)`` for one that ended
cleanly after a notice or error with that code.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import contextlib
import json
import socket
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlencode

import aiohttp
import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from broadcast.protocol import SUBPROTOCOL, Cursor
from tests.broadcast.normalised import Entry, Normaliser, Outcome, Sub

#: Receive buffer of a fan that is to stall quickly (the kernel doubles it).
SMALL_RCVBUF = 4096
TRANSPORTS = ("ws", "sse", "poll")


class Fan(abc.ABC):
    """One fan of one transport (see module doc); subclasses move the bytes."""

    transport = ""

    def __init__(self, base_url: str, *, small_buffers: bool = False) -> None:
        self.base_url = base_url
        self.small_buffers = small_buffers
        self.norm = Normaliser()
        self.entries: list[Entry] = []
        self.outcome: Outcome | None = None
        self.token: str | None = None
        self.sub = Sub()
        self._changed = asyncio.Condition()

    @property
    def cursor(self) -> Cursor | None:
        """The decoder's cursor: race and last tick applied."""
        return self.norm.decoder.cursor

    def ticks(self) -> list[tuple[str, int]]:
        """(race, tick) of every tick received, in order."""
        return [(e[1], e[2]) for e in self.entries if e[0] == "tick"]

    def has_tick(self, tick: int, race: str | None = None) -> bool:
        return any(t == tick and race in (None, r) for r, t in self.ticks())

    @property
    def ended(self) -> bool:
        """The session is over (a refused bad query or control post is not the end of it)."""
        return self.outcome is not None and self.outcome[:2] != ("refused", 400)

    async def _note(self, entries: Sequence[Entry] = (), outcome: Outcome | None = None) -> None:
        self.entries.extend(entries)
        if outcome is not None:
            self.outcome = outcome
        async with self._changed:
            self._changed.notify_all()

    async def _wait(self, done: Callable[[], bool], timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(done)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    # -- what a scenario does ----------------------------------------------------------

    @abc.abstractmethod
    async def connect(
        self, sub: Sub, cursor: Cursor | None = None, token: str | None = None
    ) -> None:
        """Open a session (the fan's state stays; ``cursor`` resumes); returns once it is
        served (WebSocket: subscribed; SSE: the hello came) or refused."""

    async def until(self, done: Callable[[Fan], bool], timeout_s: float = 10.0) -> None:
        """Receive until ``done(self)`` or the session ended; fails on timeout."""
        await self._wait(lambda: done(self) or self.ended, timeout_s)

    async def until_tick(self, tick: int, race: str | None = None) -> None:
        await self.until(lambda f: f.has_tick(tick, race))
        if not self.has_tick(tick, race):
            raise AssertionError(f"{self.transport}: session ended {self.outcome} before {tick}")

    @abc.abstractmethod
    async def change(self, sub: Sub) -> None:
        """Change the subscription mid-stream; returns once it is in force."""

    @abc.abstractmethod
    async def control(self, op: str) -> None:
        """Send ``keyframe`` or ``unsubscribe``; returns once the node took it."""

    @abc.abstractmethod
    async def send_bad(self, message: str, query: dict[str, str] | None) -> None:
        """Send a control message (long-poll: a query) the node must refuse; returns once
        the node answered."""

    def stall(self) -> None:
        """Stop reading (the socket's buffers fill up)."""
        raise NotImplementedError(f"{self.transport} has no stalled state")

    def resume(self) -> None:
        """Read again."""
        raise NotImplementedError(f"{self.transport} has no stalled state")

    async def settle_outcome(self) -> Outcome | None:
        """The outcome after one more act of the fan on its session (HTTP: a control post)."""
        return self.outcome

    @abc.abstractmethod
    async def disconnect(self) -> None:
        """Leave (the outcome is not changed by leaving)."""


def _small_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)
    sock.setblocking(False)
    return sock


class WsFan(Fan):
    """A fan on ``/ws`` (the ``websockets`` client)."""

    transport = "ws"

    def __init__(self, base_url: str, *, small_buffers: bool = False) -> None:
        super().__init__(base_url, small_buffers=small_buffers)
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._reading = asyncio.Event()
        self._reading.set()
        self._leaving = False

    async def connect(
        self, sub: Sub, cursor: Cursor | None = None, token: str | None = None
    ) -> None:
        self.sub, self.token, self.outcome, self._leaving = sub, token, None, False
        self.norm.hello = None
        url = "ws" + self.base_url[4:] + "/ws"
        if token:
            url += "?" + urlencode({"token": token})
        kwargs: dict[str, Any] = {}
        if self.small_buffers:
            sock = _small_socket()
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", _port(url)))
            # max_queue: the client stops reading the socket after 2 unread messages.
            kwargs = {"sock": sock, "max_queue": 2}
        self._ws = await connect(
            url, subprotocols=[Subprotocol(SUBPROTOCOL)], compression=None, proxy=None,
            ping_interval=None, **kwargs,
        )  # fmt: skip
        self._task = asyncio.create_task(self._read(self._ws))
        await self._wait(lambda: self.norm.hello is not None or self.outcome is not None, 10)
        if self.outcome is not None:
            return  # refused after the handshake (a token)
        message = sub.control()
        if cursor is not None:
            message["cursor"] = str(cursor)
        await self._ask(json.dumps(message), "subscribed")

    async def _read(self, ws: ClientConnection) -> None:
        try:
            while True:
                await self._reading.wait()
                data = await ws.recv(decode=False)
                await self._note(self.norm.feed(data))
        except ConnectionClosed:
            if not self._leaving:
                await self._note(outcome=("closed", ws.close_code))

    async def change(self, sub: Sub) -> None:
        assert self._ws is not None
        self.sub = sub
        await self._ask(json.dumps(sub.control()), "subscribed")

    async def control(self, op: str) -> None:
        if op == "keyframe":  # no reply of its own: a ping behind it says it was read
            await self._ask(json.dumps({"op": op}))
            op = "ping"
        await self._ask(json.dumps({"op": op}), {"ping": "pong"}.get(op, op + "d"))

    async def _ask(self, message: str, reply: str | None = None) -> None:
        """Send; with ``reply``, wait for the node's reply of that type."""
        assert self._ws is not None
        replies = self.norm.replies[reply] if reply else 0
        await self._ws.send(message)
        if reply is not None:
            await self._wait(
                lambda: self.norm.replies[reply] > replies or self.outcome is not None, 10
            )

    async def send_bad(self, message: str, query: dict[str, str] | None) -> None:
        assert self._ws is not None
        errors = len([e for e in self.entries if e[0] == "error"])
        await self._ws.send(message)
        await self._wait(
            lambda: (
                len([e for e in self.entries if e[0] == "error"]) > errors
                or self.outcome is not None
            ),
            10,
        )

    def stall(self) -> None:
        self._reading.clear()

    def resume(self) -> None:
        self._reading.set()

    async def disconnect(self) -> None:
        self._leaving = True
        self._reading.set()
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _port(url: str) -> int:
    return int(url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


class SseFan(Fan):
    """A fan on ``GET /v1/stream`` (a raw HTTP/1.1 reader, so it can stop reading).

    Control posts (``POST /v1/stream/{id}/subscribe``) go through aiohttp.
    """

    transport = "sse"

    def __init__(self, base_url: str, *, small_buffers: bool = False) -> None:
        super().__init__(base_url, small_buffers=small_buffers)
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._reading = asyncio.Event()
        self._reading.set()
        self._leaving = False
        self._last_code: str | None = None

    async def connect(
        self, sub: Sub, cursor: Cursor | None = None, token: str | None = None
    ) -> None:
        self.sub, self.token, self.outcome, self._leaving = sub, token, None, False
        self.norm.hello = None
        query = sub.query()
        if cursor is not None:
            query["cursor"] = str(cursor)
        if token:
            query["token"] = token
        port = _port(self.base_url)
        if self.small_buffers:
            sock = _small_socket()
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            # limit: the reader pauses the socket past 2 x limit unread bytes.
            reader, writer = await asyncio.open_connection(sock=sock, limit=SMALL_RCVBUF)
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        self._writer = writer
        writer.write(
            f"GET /v1/stream?{urlencode(query)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status != 200:
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = json.loads(await reader.readexactly(length)) if length else {}
            writer.close()
            await self._note(outcome=("refused", status, body.get("code")))
            return
        self._task = asyncio.create_task(self._read(reader))
        await self._wait(lambda: self.norm.hello is not None or self.outcome is not None, 10)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        pending = b""
        try:
            while True:
                await self._reading.wait()
                size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                if size == 0:
                    code = self.norm.close_code
                    await self._note(outcome=("ended", code if code else self._last_code))
                    return
                pending += (await reader.readexactly(size + 2))[:-2]
                *blocks, pending = pending.split(b"\n\n")
                entries: list[Entry] = []
                for block in blocks:
                    data = [line[6:] for line in block.split(b"\n") if line.startswith(b"data: ")]
                    if data:
                        new = self.norm.feed(base64.b64decode(b"".join(data)))
                        for entry in new:
                            if entry[0] in ("notice", "error"):
                                self._last_code = entry[1]
                        entries += new
                await self._note(entries)
        except (asyncio.IncompleteReadError, ConnectionError):
            if not self._leaving:
                await self._note(outcome=("cut",))

    async def _post(self, body: bytes) -> tuple[int, dict[str, Any]]:
        assert self.norm.hello is not None
        url = self.base_url + self.norm.hello["subscribe"]
        async with (
            aiohttp.ClientSession(headers=self._headers()) as http,
            http.post(url, data=body) as r,
        ):
            answer = await r.json(content_type=None)
            return r.status, answer if isinstance(answer, dict) else {}

    async def _control(self, body: bytes) -> None:
        status, answer = await self._post(body)
        if status == 200:
            # Served again: a refusal of an earlier post no longer says how the session ends.
            if self.outcome is not None and self.outcome[0] == "refused":
                self.outcome = None
            return
        entries = [("error", answer.get("code"))] if status == 400 else []
        await self._note(entries, ("refused", status, answer.get("code")))

    async def change(self, sub: Sub) -> None:
        self.sub = sub
        await self._control(json.dumps(sub.control()).encode())

    async def control(self, op: str) -> None:
        await self._control(json.dumps({"op": op}).encode())

    async def send_bad(self, message: str, query: dict[str, str] | None) -> None:
        await self._control(message.encode())

    async def settle_outcome(self) -> Outcome | None:
        if self.outcome is None:
            await self._control(b'{"op": "ping"}')
        return self.outcome

    def stall(self) -> None:
        self._reading.clear()

    def resume(self) -> None:
        self._reading.set()

    async def disconnect(self) -> None:
        self._leaving = True
        if self._writer is not None:
            self._writer.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class PollFan(Fan):
    """A fan on ``GET /v1/poll``: one request at a time, only while it waits for something."""

    transport = "poll"

    def __init__(self, base_url: str, *, small_buffers: bool = False) -> None:
        super().__init__(base_url, small_buffers=small_buffers)
        self._at: Cursor | None = None
        self._keyframe = False
        self._http: aiohttp.ClientSession | None = None

    async def connect(
        self, sub: Sub, cursor: Cursor | None = None, token: str | None = None
    ) -> None:
        # Stateless: the session is the next request's query.
        self.sub, self.token, self.outcome, self._at = sub, token, None, cursor
        if self._http is None:
            self._http = aiohttp.ClientSession()

    async def _poll(self, query: dict[str, str]) -> None:
        assert self._http is not None
        if self.token:
            query["token"] = self.token
        async with self._http.get(f"{self.base_url}/v1/poll", params=query) as resp:
            body = await resp.read()
            if resp.status != 200:
                code = json.loads(body).get("code") if body else None
                errors = [("error", code)] if resp.status == 400 else []
                await self._note(errors, ("refused", resp.status, code))
                return
        answer = msgpack.unpackb(body, raw=False)
        entries: list[Entry] = []
        for message in answer["m"]:
            entries += self.norm.feed(message)
        if answer["race"] is not None:
            self._at = Cursor(answer["race"], answer["cursor"])
        self._keyframe = False
        self.outcome = None
        await self._note(entries)

    def _query(self) -> dict[str, str]:
        query = self.sub.query()
        if self._at is not None:
            query["cursor"] = str(self._at)
        if self._keyframe:
            query["keyframe"] = "1"
        return query

    async def until(self, done: Callable[[Fan], bool], timeout_s: float = 10.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not done(self) and not self.ended:
                await self._poll(self._query())

    async def change(self, sub: Sub) -> None:
        # The next poll carries it; keyframe=1, as the fan's state is of the old subscription.
        self.sub = sub
        self._keyframe = True

    async def control(self, op: str) -> None:
        if op != "keyframe":
            raise ValueError(f"a poller has no {op}: it stops polling")
        self._keyframe = True  # the next poll carries keyframe=1

    async def send_bad(self, message: str, query: dict[str, str] | None) -> None:
        # A poll has no control message: the bad input is a query field.
        if query is None:
            raise ValueError("a poll's bad input is a query")
        await self._poll(self._query() | query)

    async def hold(self) -> None:
        """Poll from the current cursor once (held by the node while nothing is new)."""
        await self._poll(self._query())

    async def disconnect(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None


FANS: dict[str, type[Fan]] = {"ws": WsFan, "sse": SseFan, "poll": PollFan}
