"""Shared helpers of the broadcast tests: synthetic frames and events on a bus."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import numpy as np

from broadcast.config import BroadcastConfig
from broadcast.decoder import FrameItem, Item
from broadcast.server import BroadcastServer
from slipstream.bus import Bus
from slipstream.catalogue import CATALOGUE
from slipstream.client.connection import Client
from slipstream.config import EVENTS_TOPIC, FRAMES_TOPIC
from slipstream.records import TICK_NS, Frame, RaceEvent, car_key, encode_event, encode_frame

CHANNELS = len(CATALOGUE)


def frame_values(race: str, tick: int, car: int) -> np.ndarray:
    """Deterministic quantised values for (race, tick, car): a few channels change per tick."""
    rng = np.random.default_rng([tick, car, len(race)])
    base = np.random.default_rng([car]).integers(0, 1000, CHANNELS).astype(np.int32)
    drift = (rng.random(CHANNELS) < 0.2) * rng.integers(-5, 6, CHANNELS)
    return (base + tick * drift).astype(np.int32)


class Feeder:
    """Writes a synthetic race to the frames and events topics."""

    def __init__(
        self,
        bus: Bus,
        race: str = "R1",
        cars: Sequence[int] = (1, 7, 24, 48),
        frames_topic: str = FRAMES_TOPIC,
        events_topic: str = EVENTS_TOPIC,
    ) -> None:
        self.bus = bus
        self.race = race
        self.cars = list(cars)
        self.frames_topic = frames_topic
        self.events_topic = events_topic
        self._producer: Any = None

    async def producer(self) -> Any:
        if self._producer is None:
            self._producer = await self.bus.producer()
        return self._producer

    async def start_race(self) -> None:
        event = RaceEvent(
            self.race, 0, "race_start", tuple(self.cars),
            {"entries": [{"car": c, "driver": f"Driver {c}"} for c in self.cars]},
        )  # fmt: skip
        await (await self.producer()).send(
            self.events_topic, encode_event(event), key=self.race.encode()
        )

    async def event(self, tick: int, kind: str, cars: Sequence[int] = (), **data: Any) -> None:
        event = RaceEvent(self.race, tick * TICK_NS + 1, kind, tuple(cars), dict(data))
        await (await self.producer()).send(
            self.events_topic, encode_event(event), key=self.race.encode()
        )

    async def tick(self, tick: int, skip: Sequence[int] = ()) -> None:
        producer = await self.producer()
        items = [
            (
                car_key(car),
                encode_frame(Frame(self.race, tick, car, frame_values(self.race, tick, car), 10)),
            )
            for car in self.cars
            if car not in skip
        ]
        await producer.send_many(self.frames_topic, items)


def expected_values(
    race: str, tick: int, car: int, groups: Sequence[str] | None = None
) -> dict[str, float | None]:
    """What a client should decode for (race, tick, car)."""
    q = frame_values(race, tick, car)
    values = CATALOGUE.dequantise(q)
    wanted = {g.name for g in CATALOGUE.resolve_groups(groups)}
    return {c.name: float(values[i]) for i, c in enumerate(CATALOGUE) if c.group in wanted}


async def collect_until(
    stream: AsyncIterator[Item],
    done: Callable[[Item], bool],
    out: list[Item],
    timeout_s: float = 10.0,
) -> list[Item]:
    """Append items from ``stream`` to ``out`` until ``done(item)``; fails on timeout."""
    async with asyncio.timeout(timeout_s):
        async for item in stream:
            out.append(item)
            if done(item):
                return out
    return out


def frames(items: Sequence[Item]) -> list[tuple[str, int, int, dict[str, float | None]]]:
    """The (race, tick, car, values) of the frame items, in order."""
    return [(i.race, i.tick, i.car, i.values) for i in items if isinstance(i, FrameItem)]


@contextlib.asynccontextmanager
async def node(
    bus: Bus, topics: Callable[[str], str] | None = None, partitions: int = 4, **overrides: Any
) -> AsyncIterator[tuple[BroadcastServer, Feeder]]:
    """A started node on port 0 and a feeder for its (fresh, if ``topics``) topics."""
    frames_topic = topics("frames") if topics else FRAMES_TOPIC
    events_topic = topics("events") if topics else EVENTS_TOPIC
    await bus.ensure_topic(frames_topic, partitions)
    await bus.ensure_topic(events_topic, 1)
    overrides.setdefault("tick_wait_s", 0.5)
    config = BroadcastConfig(
        port=0, frames_topic=frames_topic, events_topic=events_topic, **overrides
    )
    feeder = Feeder(bus, frames_topic=frames_topic, events_topic=events_topic)
    async with BroadcastServer(config, bus) as server:
        yield server, feeder


async def wait_for_tick(server: BroadcastServer, tick: int, timeout_s: float = 10.0) -> None:
    """Wait until the node has emitted ``tick``."""
    async with asyncio.timeout(timeout_s):
        while (latest := server.hub.ring.latest) is None or latest.tick < tick:
            await server.hub.wait_tick(timeout_s)


def make_client(url: str, **kwargs: Any) -> Client:
    kwargs.setdefault("backoff_initial_s", 0.02)
    kwargs.setdefault("backoff_max_s", 0.2)
    return Client(url, **kwargs)


class Collector:
    """Consumes a client in a task; tests wait on what has arrived."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.items: list[Item] = []
        self._changed = asyncio.Condition()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            async for item in self.client:
                self.items.append(item)
                async with self._changed:
                    self._changed.notify_all()
        finally:
            async with self._changed:
                self._changed.notify_all()

    async def wait(self, predicate: Callable[[Item], bool], timeout_s: float = 15.0) -> Item:
        """The first item matching ``predicate``, waiting for it to arrive."""
        async with asyncio.timeout(timeout_s), self._changed:
            while True:
                for item in self.items:
                    if predicate(item):
                        return item
                if self.task.done():
                    self.task.result()
                    raise AssertionError("the client stopped before the item came")
                await self._changed.wait()

    async def wait_tick(self, tick: int, car: int | None = None) -> Item:
        """Wait for the frame of ``car`` (any car if None) at ``tick``."""
        return await self.wait(
            lambda i: isinstance(i, FrameItem) and i.tick == tick and (car is None or i.car == car)
        )

    async def close(self) -> None:
        await self.client.close()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task


def oracle(
    race: str,
    ticks: Sequence[int],
    cars: Sequence[int],
    groups: Sequence[str] | None = None,
    skip: dict[int, set[int]] | None = None,
) -> list[tuple[str, int, int, dict[str, float | None]]]:
    """The decoded frames an uninterrupted subscriber sees, in order."""
    return [
        (race, t, c, expected_values(race, t, c, groups))
        for t in ticks
        for c in sorted(cars)
        if c not in (skip or {}).get(t, set())
    ]


def same_frames(got: Sequence[Any], want: Sequence[Any]) -> bool:
    """Frames equal up to float rounding of the decoded values."""
    if [g[:3] for g in got] != [w[:3] for w in want]:
        return False
    return all(
        g[3].keys() == w[3].keys() and all(abs(g[3][k] - w[3][k]) < 1e-9 for k in w[3])
        for g, w in zip(got, want, strict=True)
    )


def ws_fans(server: BroadcastServer) -> list[Any]:
    """The node's WebSocket fans (:class:`broadcast.fan.Fan`)."""
    return [f for f in server.hub.fans if f.transport == "ws"]


def peer_port(fan: Any) -> int | None:
    """The client-side port of a WebSocket fan's connection (None once it is gone)."""
    transport = fan.owner.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    return int(peer[1]) if peer else None
