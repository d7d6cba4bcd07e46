"""The one fan fleet of the tests: lean resuming fans, raw asyncio WebSocket, cursor, reconnect.

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
import bisect
import functools
import json
import os
import random
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

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


class Fan:
    """One logical fan (see module doc); its connections come and go."""

    def __init__(self, fleet: FanFleet, index: int) -> None:
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


class FanFleet:
    """``count`` fans subscribed to ``cars`` x ``groups`` on the first reachable address.

    Args:
        addresses: ``(host, port)`` of nodes; fan ``i`` starts on ``i % len``
            and moves to the next when a connection attempt fails.
        first_delay_s: A lost fan waits uniformly up to this before reconnecting.
        spread: Start fans round-robin on the addresses (else all on the first).
        decode: Decode the subscribed parts and compare values (else count
            fresh car-frames only: a load generator's cost).
        record_ticks: Keep every tick number each fan receives (:attr:`Fan.ticks`).
    """

    def __init__(
        self,
        addresses: list[tuple[str, int]],
        count: int,
        cars: tuple[int, ...] | None,
        groups: tuple[int, ...] | None,
        *,
        first_delay_s: float = 0.5,
        backoff_max_s: float = 1.0,
        max_attempts: int = 200,
        spread: bool = True,
        decode: bool = True,
        record_ticks: bool = False,
    ) -> None:
        self.addresses = addresses
        self.spread = spread
        self.decode = decode
        self.record_ticks = record_ticks
        self.cars = cars
        self.groups = groups
        self.first_delay_s = first_delay_s
        self.backoff_max_s = backoff_max_s
        self.max_attempts = max_attempts
        self.observations = Observations()
        #: Set by :meth:`missing`: car-frames of the truth a tick listed as stale.
        self.stale_reported = 0
        self.fans = [Fan(self, i) for i in range(count)]
        self.connect_failures = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._target: Callable[[Fan], bool] | None = None
        self._reached: set[int] = set()
        self._event = asyncio.Event()

    def backoff_s(self, attempt: int) -> float:
        return random.uniform(0.5, 1.0) * min(self.backoff_max_s, 0.05 * 2**attempt)

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def open(self, timeout_s: float, concurrency: int = 200) -> None:
        """Connect every fan and wait for each one's first tick."""
        await self.connect_all(timeout_s, concurrency)
        await self.wait_all(0, 1, timeout_s)

    def progress(self, fan: Fan) -> None:
        if self._target is None or fan.index in self._reached or not self._target(fan):
            return
        self._reached.add(fan.index)
        if len(self._reached) == len(self.fans):
            self._event.set()

    async def wait_all(self, tick: int, connects: int, timeout_s: float) -> None:
        """Wait until every fan has applied ``tick`` after at least ``connects`` connections.

        Raises:
            TimeoutError: With how many fans got there.
        """

        def there(fan: Fan) -> bool:
            return fan.cursor is not None and fan.cursor[1] >= tick and fan.connects >= connects

        await self.wait_until(there, f"reach tick {tick} after {connects} connection(s)", timeout_s)

    async def wait_race_end(self, timeout_s: float) -> None:
        """Wait until every fan has received the ``race_end`` event."""
        await self.wait_until(lambda fan: fan.race_ended, "see race_end", timeout_s)

    async def wait_until(self, done: Callable[[Fan], bool], what: str, timeout_s: float) -> None:
        """Wait until ``done(fan)`` holds for every fan (checked as ticks arrive)."""
        self._target = done
        self._reached.clear()
        self._event.clear()
        for fan in self.fans:
            self.progress(fan)
        try:
            async with asyncio.timeout(timeout_s):
                await self._event.wait()
        except TimeoutError:
            behind = [f for f in self.fans if f.index not in self._reached]
            sample = [(f.index, f.cursor, f.connects, f.errors[-1:]) for f in behind[:5]]
            raise TimeoutError(
                f"{len(behind)} of {len(self.fans)} fans did not {what} in {timeout_s:g} s; "
                f"e.g. {sample}; {self.describe()}"
            ) from None
        finally:
            self._target = None

    async def connect_all(self, timeout_s: float, concurrency: int = 200) -> None:
        """Connect every fan and wait until each one is subscribed."""
        limit = asyncio.Semaphore(concurrency)

        async def one(fan: Fan) -> None:
            async with limit:
                await fan.connect()

        async with asyncio.timeout(timeout_s):
            await asyncio.gather(*(one(f) for f in self.fans))
        await self.wait_until(lambda fan: fan.connects >= 1, "subscribe", timeout_s)

    def describe(self) -> str:
        """A summary of the fans' states, for failure messages."""
        fans = self.fans
        last = Counter(f.cursor[1] if f.cursor else None for f in fans).most_common(6)
        connects = Counter(f.connects for f in fans).most_common(4)
        servers = Counter(tuple(f.servers[-2:]) for f in fans).most_common(4)
        notices = Counter(str(n.get("code")) for f in fans for n in f.notices).most_common(4)
        errors = Counter(e for f in fans for e in f.errors).most_common(4)
        return (
            f"last ticks {last}; connects {connects}; servers {servers}; "
            f"notices {notices}; errors {errors}"
        )

    def latest_tick(self) -> int:
        return max((f.cursor[1] for f in self.fans if f.cursor is not None), default=-1)

    def drop_all(self) -> int:
        """Abort every fan's connection (each reconnects by itself); returns how many."""
        dropped = 0
        for fan in self.fans:
            if fan.connection is not None:
                fan.connection.abort()
                dropped += 1
        return dropped

    async def close(self) -> None:
        for fan in self.fans:
            fan.closed = True
            if fan.connection is not None:
                fan.connection.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> FanFleet:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def summary(self) -> dict[str, Any]:
        """Fleet-wide figures: duplicates, gaps (reported or not), errors, resume times."""
        resume = sorted(s for f in self.fans for s in f.resume_s)
        return {
            "fans": len(self.fans),
            "duplicates": sum(f.duplicates for f in self.fans),
            "unreported_gaps": sum(1 for f in self.fans for g in f.gaps if not g.reported),
            "reported_gaps": sum(1 for f in self.fans for g in f.gaps if g.reason == "resume_gap"),
            # a fan too slow to read (the load generator, not the node) is conflated
            "conflated_gaps": sum(1 for f in self.fans for g in f.gaps if g.reason == "conflated"),
            "bad_bases": sum(f.bad_bases for f in self.fans),
            "mismatches": self.observations.mismatches,
            "errors": sum(len(f.errors) for f in self.fans),
            "car_frames": sum(f.frames for f in self.fans),
            "reconnects": sum(max(0, f.connects - 1) for f in self.fans),
            "resume_p50_s": resume[len(resume) // 2] if resume else None,
            "resume_max_s": resume[-1] if resume else None,
        }

    def missing(self, truth: dict[tuple[str, int, int], int]) -> list[str]:
        """Problems of each fan against ``truth`` ((race, car, tick) -> digest) over its span.

        A fan must hold exactly the truth's car-frames of its cars between its
        first and last tick, except inside gaps a notice reported and for cars
        a tick listed stale (the node emitted the tick without a late frame and
        said so; counted in :attr:`stale_reported`); every value the fleet saw
        must equal the truth's.
        """
        problems: list[str] = []
        self.stale_reported = 0
        for key, value in self.observations.values.items():
            if truth.get(key) != value:
                problems.append(f"{key}: fans saw {value}, truth {truth.get(key)}")
                if len(problems) > 10:
                    return problems
        ticks: dict[str, list[int]] = {}  # per race, the tick of every truth car-frame
        for r, car, tick in truth:
            if not self.cars or car in self.cars:
                ticks.setdefault(r, []).append(tick)
        for sorted_ticks in ticks.values():
            sorted_ticks.sort()

        def count(race: str, first: int, last: int) -> int:
            if first > last:
                return 0
            got = ticks.get(race, [])
            return bisect.bisect_right(got, last) - bisect.bisect_left(got, first)

        for fan in self.fans:
            if fan.cursor is None or fan.first_tick is None:
                problems.append(f"fan {fan.index} got no tick")
                continue
            race, last = fan.cursor
            in_gaps = [g for g in fan.gaps if g.reported and g.race == race]
            stale = {
                key
                for key in fan.stale
                if key in truth
                and key[0] == race
                and fan.first_tick <= key[2] <= last
                and not any(g.first <= key[2] <= g.last for g in in_gaps)
            }
            self.stale_reported += len(stale)
            excused = sum(
                count(g.race, max(g.first, fan.first_tick), min(g.last, last)) for g in in_gaps
            )
            want = count(race, fan.first_tick, last) - excused - len(stale)
            if fan.frames != want:
                problems.append(
                    f"fan {fan.index}: {fan.frames} car-frames in ticks {fan.first_tick}..{last}, "
                    f"truth has {want}"
                )
            if len(problems) > 10:
                break
        return problems
