"""The load generator against the real broadcast node, over both transports."""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import AsyncIterator

import pytest

from broadcast.config import BroadcastConfig
from broadcast.server import BroadcastServer
from slipstream.app.bench.adapter import Subscription, TickStamp
from slipstream.app.bench.loadgen import LoadGenerator
from slipstream.app.bench.race import RaceFrames, simulate_race
from slipstream.app.bench.slipstream_adapter import SlipstreamAdapter
from slipstream.bus import Producer
from slipstream.bus.memory import MemoryBus
from slipstream.config import EVENTS_TOPIC, FRAMES_TOPIC
from slipstream.records import car_key, encode_event, encode_frame


class _CountingAdapter(SlipstreamAdapter):
    """Counts decoded ticks per tick number; an event fires when a tick reached everyone."""

    def __init__(self, subscribers: int) -> None:
        self.subscribers = subscribers
        self.seen: dict[int, int] = {}
        self.complete: dict[int, asyncio.Event] = {}

    def _count(self, stamp: TickStamp | None) -> None:
        if stamp is not None:
            tick = stamp[0]
            self.seen[tick] = self.seen.get(tick, 0) + 1
            if self.seen[tick] >= self.subscribers:
                self.event(tick).set()

    def event(self, tick: int) -> asyncio.Event:
        return self.complete.setdefault(tick, asyncio.Event())

    def ws_message(self, payload: bytes, is_text: bool) -> TickStamp | None:
        stamp = super().ws_message(payload, is_text)
        self._count(stamp)
        return stamp

    def poll_response(self, status: int, body: bytes, cursor: str) -> tuple[list[TickStamp], str]:
        stamps, next_cursor = super().poll_response(status, body, cursor)
        for stamp in stamps:
            self._count(stamp)
        return stamps, next_cursor


@pytest.fixture(scope="module")
def race() -> RaceFrames:
    return simulate_race(cars=6, seconds=5, seed=2)


@pytest.fixture
async def node(race: RaceFrames) -> AsyncIterator[tuple[BroadcastServer, Producer]]:
    bus = MemoryBus()
    await bus.start()
    server = BroadcastServer(BroadcastConfig(port=0, poll_hold_s=5.0), bus)
    await server.start()
    producer = await bus.producer()
    await producer.send(EVENTS_TOPIC, encode_event(race.start), key=race.race.encode())
    try:
        yield server, producer
    finally:
        await server.stop()
        await bus.stop()


async def _publish(producer: Producer, race: RaceFrames, tick: int) -> None:
    await producer.send_many(
        FRAMES_TOPIC, [(car_key(f.car), encode_frame(f)) for f in race.frames(tick)]
    )


@pytest.mark.parametrize(("transport", "codec"), [("ws", "sparse"), ("poll", "full")])
async def test_every_subscriber_gets_every_window_tick(
    node: tuple[BroadcastServer, Producer], race: RaceFrames, transport: str, codec: str
) -> None:
    server, producer = node
    subscribers = 25
    adapter = _CountingAdapter(subscribers)
    sub = Subscription(race.race, tuple(int(c) for c in race.cars[:2]), (), codec)
    gen = LoadGenerator(transport, "127.0.0.1", server.port, adapter, sub)
    await _publish(producer, race, 0)
    started = time.time_ns()
    await gen.open(subscribers)
    assert gen.connected == subscribers, gen.result().errors
    gen.set_window(2, 6)
    async with asyncio.timeout(20):
        for tick in range(1, 7):
            await _publish(producer, race, tick)
            await adapter.event(tick).wait()
    result = gen.result()
    assert result.delivered == subscribers * 4, result.errors
    assert result.closed == 0 and result.failed == 0
    latencies = array("q", result.latencies_us)
    assert len(latencies) == subscribers * 4
    assert all(0 <= lat < (time.time_ns() - started) // 1000 for lat in latencies)
    per_update = (result.bytes_down + result.bytes_up) / result.delivered
    if transport == "ws":
        assert result.bytes_up == 0
        assert 50 < per_update < 2000
    else:
        assert result.bytes_up > 0
        assert per_update > 2 * 6 * 4  # at least a full codec's body of two cars' values
    await gen.close()


async def test_subscribe_keyframe_and_live_ticks_count_once(
    node: tuple[BroadcastServer, Producer], race: RaceFrames
) -> None:
    server, producer = node
    adapter = _CountingAdapter(3)
    gen = LoadGenerator("ws", "127.0.0.1", server.port, adapter, Subscription(race.race))
    await _publish(producer, race, 0)
    # The window first: the keyframe may come in the same read as the subscription's ack.
    gen.set_window(0, 3)
    await gen.open(3)
    async with asyncio.timeout(20):
        for tick in range(1, 4):
            await _publish(producer, race, tick)
            await adapter.event(tick).wait()
    # Tick 0 arrives as the subscription's keyframe, ticks 1 and 2 live; tick 3 is
    # outside the window.
    result = gen.result()
    assert result.delivered == 3 * 3
    assert adapter.seen == {0: 3, 1: 3, 2: 3, 3: 3}
    await gen.close()
