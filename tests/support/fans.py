"""The fans of the tests' one fan fleet: lean resuming fans, raw asyncio WebSocket, cursor.

The fleet that opens, drives and watches them is :mod:`tests.support.fleet`.

A :class:`Fan` is one logical fan that survives its connections: it keeps its
cursor and the values it holds per (car, group), reconnects on its own with
jittered backoff (rotating through the fleet's node addresses, like a load
balancer would) and resumes from its cursor.  On the data it checks, as ticks
arrive:

* a tick at or before its cursor is a **duplicate** (counted, not applied);
* a tick past ``cursor + 1`` is a **gap** (kept as a range, with whether a
  ``resume_gap`` notice reported it just before);
* a delta on a wrong base is counted (it would show wrong values);
* every fresh car-frame's values (the subscribed groups' quantised values) are
  compared with the first value any fan of the fleet saw for that
  ``(race, car, tick)`` (:class:`Observations`), which the tests compare with
  the frames topic or with an uninterrupted fan.

Thousands of these fit in one process (no ``websockets`` client, one msgpack
unpack per message, codec decode only of the subscribed parts; with
``decode=False`` not even that, for load measurements).  A fan also keeps the
server of each hello, and with ``record_ticks=True`` every tick number it
received (the scale-out tests check them for holes and repeats).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import os
import random
import time
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgpack
import numpy as np
from numpy.typing import NDArray

from slipstream.app.bench import WireError
from slipstream.app.bench.wire import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    WsClientReader,
    encode_client_frame,
    handshake_request,
)
from slipstream.catalogue import CATALOGUE
from slipstream.codecs import get_codec

KIND_KEYFRAME = 0


def group_indices(names: Iterable[str]) -> tuple[int, ...]:
    """Catalogue indices of the channel groups ``names``."""
    index = {g.name: i for i, g in enumerate(CATALOGUE.groups)}
    return tuple(index[name] for name in names)


def digest(arrays: list[NDArray[np.int32]]) -> int:
    """CRC-32 of the concatenated quantised values (group order)."""
    crc = 0
    for a in arrays:
        crc = zlib.crc32(np.ascontiguousarray(a, dtype=np.int32).tobytes(), crc)
    return crc


@dataclass
class Observations:
    """Values seen by any fan of a fleet: ``(race, car, tick) -> digest``; mismatches counted."""

    values: dict[tuple[str, int, int], int] = field(default_factory=dict)
    mismatches: int = 0

    def see(self, key: tuple[str, int, int], value: int) -> None:
        old = self.values.setdefault(key, value)
        if old != value:
            self.mismatches += 1


@dataclass
class Gap:
    race: str
    first: int
    last: int
    reported: bool
    #: code of the notice that reported it (``resume_gap``, ``conflated``), or ""
    reason: str = ""


class Fleet(Protocol):
    """What a :class:`Fan` needs of its fleet (:class:`tests.support.fleet.FanFleet`)."""

    addresses: list[tuple[str, int]]
    spread: bool
    cars: tuple[int, ...] | None
    groups: tuple[int, ...] | None
    decode: bool
    record_ticks: bool
    first_delay_s: float
    max_attempts: int
    observations: Observations
    connect_failures: int

    def backoff_s(self, attempt: int) -> float: ...
    def spawn(self, coro: Any) -> None: ...
    def progress(self, fan: Fan) -> None: ...


class Fan:
    """One logical fan (see module doc); its connections come and go."""

    def __init__(self, fleet: Fleet, index: int) -> None:
        self.fleet = fleet
        self.index = index
        self.address = index % len(fleet.addresses) if fleet.spread else 0
        #: Cars subscribed to (the fleet's unless set before the fan connects).
        self.cars = fleet.cars
        #: Set before the fan connects to resume from a cursor.
        self.cursor: tuple[str, int] | None = None
        self.first_tick: int | None = None
        self.held: dict[tuple[int, int], tuple[int, NDArray[np.int32]]] = {}
        self.frames = 0
        self.duplicates = 0
        self.bad_bases = 0
        self.gaps: list[Gap] = []
        self.stale: list[tuple[str, int, int]] = []  # (race, car, tick) listed stale
        self.notices: list[dict[str, Any]] = []
        self.connects = 0
        self.connection: FanConnection | None = None
        self.lost_at: float | None = None
        self.resume_s: list[float] = []
        self.subscribed_at: list[float] = []
        self.errors: list[str] = []
        self.closed = False
        self.race_ended = False
        #: The ``server`` of every hello (one per connection).
        self.servers: list[str] = []
        #: Every tick number received, duplicates included (``record_ticks`` only).
        self.ticks: list[int] = []
        self._pending_notice: dict[str, Any] | None = None

    def subscribe_message(self) -> bytes:
        message: dict[str, Any] = {
            "op": "subscribe",
            "cars": list(self.cars) if self.cars else None,
            # None: the node's default (every group the fan may see).
            "groups": (
                None
                if self.fleet.groups is None
                else [CATALOGUE.groups[g].name for g in self.fleet.groups]
            ),
        }
        if self.cursor is not None:
            message["cursor"] = {"race": self.cursor[0], "tick": self.cursor[1]}
        return json.dumps(message).encode()

    async def connect(self) -> None:
        """Connect (retrying with backoff, rotating addresses) until connected or closed."""
        attempt = 0
        loop = asyncio.get_running_loop()
        while not self.closed:
            host, port = self.fleet.addresses[self.address]
            try:
                await loop.create_connection(
                    functools.partial(FanConnection, self, host, port), host, port
                )
                return
            except OSError as exc:
                attempt += 1
                self.fleet.connect_failures += 1
                if attempt == 1 or attempt % 5 == 0:
                    self.address = (self.address + 1) % len(self.fleet.addresses)
                if attempt > self.fleet.max_attempts:
                    self.errors.append(f"gave up after {attempt} attempts: {exc}")
                    return
                await asyncio.sleep(self.fleet.backoff_s(attempt))  # reconnect backoff

    def tick_problems(self, first: int, last: int) -> list[str]:
        """What is wrong with the ticks received from ``first`` to ``last``: holes or repeats.

        Needs the fleet's ``record_ticks``.
        """
        seen = [t for t in self.ticks if first <= t <= last]
        if seen == list(range(first, last + 1)):
            return []
        counts = Counter(seen)
        missing = sorted(set(range(first, last + 1)) - set(counts))
        repeated = sorted(t for t, n in counts.items() if n > 1)
        return [f"missing {missing[:10]} repeated {repeated[:10]}"]

    def lost(self) -> None:
        self.connection = None
        if self.closed:
            return
        if self.lost_at is None:  # resume time counts from the first loss
            self.lost_at = time.monotonic()
        self.fleet.spawn(self._reconnect())

    async def _reconnect(self) -> None:
        await asyncio.sleep(random.uniform(0.0, self.fleet.first_delay_s))  # spread the storm
        await self.connect()

    def message(self, data: bytes) -> None:
        msg = msgpack.unpackb(data, raw=False, strict_map_key=False)
        kind = msg.get("t")
        if kind == "tick":
            self._tick(msg)
        elif kind == "hello":
            self.servers.append(str(msg.get("server")))
        elif kind == "notice":
            self.notices.append(msg)
            if msg.get("code") in ("resume_gap", "race_changed", "conflated"):
                self._pending_notice = msg
        elif kind == "subscribed":
            self.connects += 1
            self.subscribed_at.append(time.monotonic())
            self.fleet.progress(self)
        elif kind == "event" and msg.get("kind") == "race_end":
            self.race_ended = True
            self.fleet.progress(self)
        elif kind == "error":
            self.errors.append(f"error {msg.get('code')}: {msg.get('message')}")

    def _tick(self, msg: dict[str, Any]) -> None:
        race, tick = msg["race"], msg["tick"]
        if self.fleet.record_ticks:
            self.ticks.append(tick)
        if self.lost_at is not None:
            self.resume_s.append(time.monotonic() - self.lost_at)
            self.lost_at = None
        if self.cursor is not None and self.cursor[0] == race:
            if tick <= self.cursor[1]:
                self.duplicates += 1
                return
            if tick > self.cursor[1] + 1:
                notice = self._pending_notice
                reported = (
                    notice is not None
                    and notice.get("code") in ("resume_gap", "conflated")
                    and (notice.get("from") or 0) <= self.cursor[1] + 1
                    and (notice.get("to") or 0) >= tick - 1
                )
                reason = str(notice.get("code")) if reported and notice else ""
                self.gaps.append(Gap(race, self.cursor[1] + 1, tick - 1, reported, reason))
        elif self.cursor is not None:
            self.held.clear()
            self.first_tick = None
        self._pending_notice = None
        self.stale.extend((race, car, tick) for car in msg.get("stale") or ())
        if not self.fleet.decode:
            parts = msg["p"]
            fresh_cars = {c for c, _, k, base, _ in parts if k != KIND_KEYFRAME or base == tick}
            self.frames += len(fresh_cars)
            self._applied(race, tick)
            return
        codec = get_codec(msg["codec"])
        fresh: dict[int, list[NDArray[np.int32]]] = {}
        for car, g, kind, base, payload in msg["p"]:
            size = CATALOGUE.groups[g].size
            if kind == KIND_KEYFRAME:
                values = codec.decode_keyframe(payload, size)
                self.held[(car, g)] = (base, values)
                if base == tick:
                    fresh.setdefault(car, []).append(values)
                continue
            held = self.held.get((car, g))
            if held is None or held[0] != base:
                self.bad_bases += 1
                self.held.pop((car, g), None)
                continue
            values = codec.decode_delta(held[1], payload)
            self.held[(car, g)] = (tick, values)
            fresh.setdefault(car, []).append(values)
        for car, arrays in fresh.items():
            self.frames += 1
            self.fleet.observations.see((race, car, tick), digest(arrays))
        self._applied(race, tick)

    def _applied(self, race: str, tick: int) -> None:
        if self.first_tick is None:
            self.first_tick = tick
        self.cursor = (race, tick)
        self.fleet.progress(self)


class FanConnection(asyncio.Protocol):
    """One WebSocket connection of a :class:`Fan`."""

    def __init__(self, fan: Fan, host: str, port: int) -> None:
        self.fan = fan
        self.key = base64.b64encode(os.urandom(16)).decode("ascii")
        self.request = handshake_request(host, port, "/ws", self.key, ("slipstream.v1",))
        self.transport: asyncio.Transport | None = None
        self.reader = WsClientReader(self.key, ("slipstream.v1",))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.fan.connection = self
        transport.write(self.request)

    def send(self, opcode: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_client_frame(opcode, payload, os.urandom(4)))

    def data_received(self, data: bytes) -> None:
        try:
            opened, messages = self.reader.feed(data)
        except WireError as exc:
            refused = self.reader.subprotocol is None
            self.fan.errors.append(f"{'upgrade refused' if refused else 'bad stream'}: {exc}")
            self.abort()
            return
        if opened:
            self.send(OP_TEXT, self.fan.subscribe_message())
        try:
            for opcode, payload, _ in messages:
                if opcode == OP_BINARY:
                    self.fan.message(payload)
                elif opcode == OP_PING:
                    self.send(OP_PONG, payload)
                elif opcode == OP_CLOSE:
                    self.send(OP_CLOSE, payload[:2])
                    self.abort()
                    return
        except Exception as exc:
            self.fan.errors.append(f"bad message: {exc!r}")
            self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.fan.connection is self or self.fan.connection is None:
            self.fan.lost()
