"""A lean reconnecting WebSocket fan, for hundreds of fans in one test process.

Built on the benchmark's sans-I/O WebSocket pieces (:mod:`slipstream.bench.wire`):
no per-message codec decode, only the msgpack envelope, so 500 fans cost
little CPU.  On a lost connection a fan reconnects (to the same address:
behind nginx that is any node) and subscribes again with its cursor
``(race, last tick)``, as docs/protocol.md asks of every client.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgpack

from slipstream.bench import WireError
from slipstream.bench.wire import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    WsClientReader,
    encode_client_frame,
    handshake_request,
)

SUBPROTOCOL = "slipstream.v1"


class _Connection(asyncio.Protocol):
    def __init__(self, fan: Fan, host: str, port: int) -> None:
        self.fan = fan
        self.key = base64.b64encode(os.urandom(16)).decode("ascii")
        self.request = handshake_request(host, port, "/ws", self.key, (SUBPROTOCOL,))
        self.reader = WsClientReader(self.key, (SUBPROTOCOL,))
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def send(self, opcode: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_client_frame(opcode, payload, os.urandom(4)))

    def data_received(self, data: bytes) -> None:
        try:
            opened, messages = self.reader.feed(data)
        except WireError as exc:
            refused = self.reader.subprotocol is None
            self.fan.errors.append(f"upgrade refused: {exc}" if refused else str(exc))
            assert self.transport is not None
            self.transport.abort()
            return
        if opened:
            self.send(OP_TEXT, json.dumps(self.fan.subscribe_message()).encode())
        for opcode, payload, _ in messages:
            if opcode == OP_BINARY:
                self.fan.on_message(msgpack.unpackb(payload, raw=False, strict_map_key=False))
            elif opcode == OP_PING:
                self.send(OP_PONG, payload)
            elif opcode == OP_CLOSE:
                self.send(OP_CLOSE, payload[:2])
                assert self.transport is not None
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


class Fan:
    """One fan: subscribes, keeps its cursor, reconnects with it when the connection drops.

    Attributes:
        ticks: Every tick number received, in order of arrival.
        servers: The ``server`` of every hello (one per connection).
        notices: Codes of every notice received.
        connections: Connections made so far.
    """

    def __init__(
        self,
        host: str,
        port: int,
        cars: list[int] | None,
        groups: list[str],
        on_tick: Callable[[Fan], None] | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.cars, self.groups = cars, groups
        self.race: str | None = None
        self.last_tick = -1
        self.ticks: list[int] = []
        self.keyframes: list[int] = []
        self.servers: list[str] = []
        self.notices: list[str] = []
        self.errors: list[str] = []
        self.connections = 0
        self.on_tick = on_tick
        self._conn: _Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.subscribed = asyncio.Event()
        self._jitter = random.Random(id(self))

    def subscribe_message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"op": "subscribe", "cars": self.cars, "groups": self.groups}
        if self.race is not None:
            message["cursor"] = {"race": self.race, "tick": self.last_tick}
        return message

    def on_message(self, obj: Any) -> None:
        kind = obj.get("t") if isinstance(obj, dict) else None
        if kind == "hello":
            self.servers.append(str(obj.get("server")))
        elif kind == "subscribed":
            self.subscribed.set()
        elif kind == "tick":
            self.race = obj["race"]
            self.last_tick = obj["tick"]
            self.ticks.append(obj["tick"])
            if obj.get("kf"):
                self.keyframes.append(obj["tick"])
            if self.on_tick is not None:
                self.on_tick(self)
        elif kind == "notice":
            self.notices.append(str(obj.get("code")))
        elif kind == "error":
            self.errors.append(f"{obj.get('code')}: {obj.get('message')}")

    def start(self) -> None:
        """Connect (and keep reconnecting) in the background."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        delay_s = 0.05
        while not self._closing:
            try:
                _, conn = await loop.create_connection(
                    lambda: _Connection(self, self.host, self.port), self.host, self.port
                )
            except OSError:
                await asyncio.sleep(delay_s * self._jitter.uniform(0.5, 1.5))  # back off
                delay_s = min(1.0, delay_s * 2)
                continue
            self._conn = conn
            self.connections += 1
            await conn.lost
            self._conn = None
            if not self._closing:
                # Back off before reconnecting: at once-ish after a working
                # connection, longer after each failed upgrade.
                # Jittered, like slipstream.client.Client: no synchronised reconnect storms.
                await asyncio.sleep(delay_s * self._jitter.uniform(0.5, 1.5))
                delay_s = 0.05 if conn.reader is not None else min(1.0, delay_s * 2)

    async def close(self) -> None:
        """Stop reconnecting and close the connection."""
        self._closing = True
        conn = self._conn
        if conn is not None and conn.transport is not None:
            conn.send(OP_CLOSE, (1000).to_bytes(2, "big"))
            conn.transport.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def gaps(self, first: int, last: int) -> list[str]:
        """What is wrong with the ticks from ``first`` to ``last``: missing or repeated."""
        seen = [t for t in self.ticks if first <= t <= last]
        problems = []
        if seen != list(range(first, last + 1)):
            counts = Counter(seen)
            missing = sorted(set(range(first, last + 1)) - set(counts))
            repeated = sorted(t for t, n in counts.items() if n > 1)
            problems.append(f"missing {missing[:10]} repeated {repeated[:10]}")
        return problems


def describe(fans: list[Fan]) -> str:
    """A summary of many fans' states, for failure messages."""
    last = Counter(f.last_tick for f in fans).most_common(6)
    connections = Counter(f.connections for f in fans).most_common(4)
    servers = Counter(tuple(f.servers[-2:]) for f in fans).most_common(4)
    notices = Counter(n for f in fans for n in f.notices).most_common(4)
    errors = Counter(e for f in fans for e in f.errors).most_common(4)
    return (
        f"last ticks {last}; connections {connections}; servers {servers}; "
        f"notices {notices}; errors {errors}"
    )
