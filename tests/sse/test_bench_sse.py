"""The fan-out benchmark's SSE subscribers against the real broadcast node."""

from __future__ import annotations

import asyncio
from typing import cast

from broadcast.config import BroadcastConfig
from broadcast.server import BroadcastServer
from slipstream.app.bench.adapter import Subscription, WireAdapter
from slipstream.app.bench.loadgen import LoadGenerator
from slipstream.app.bench.race import simulate_race
from slipstream.bus.memory import MemoryBus
from slipstream.config import EVENTS_TOPIC
from slipstream.records import encode_event
from tests.bench.test_bench_node import _CountingAdapter, _publish


async def test_every_sse_subscriber_gets_every_window_tick_once() -> None:
    race = simulate_race(cars=6, seconds=5, seed=2)
    bus = MemoryBus()
    await bus.start()
    server = BroadcastServer(BroadcastConfig(port=0), bus)
    await server.start()
    try:
        producer = await bus.producer()
        await producer.send(EVENTS_TOPIC, encode_event(race.start), key=race.race.encode())
        subscribers = 20
        adapter = _CountingAdapter(subscribers)
        sub = Subscription(race.race, tuple(int(c) for c in race.cars[:2]), (), "sparse")
        wire = cast(WireAdapter, adapter)  # a SlipstreamAdapter, as the benchmark runs it
        gen = LoadGenerator("sse", "127.0.0.1", server.port, wire, sub)
        await _publish(producer, race, 0)
        await gen.open(subscribers)
        assert gen.connected == subscribers, gen.result().errors
        gen.set_window(2, 6)
        async with asyncio.timeout(20):
            for tick in range(1, 7):
                await _publish(producer, race, tick)
                await adapter.event(tick).wait()
        result = gen.result()
        assert result.delivered == subscribers * 4, result.errors
        assert result.closed == 0 and result.failed == 0 and result.bytes_up == 0
        assert all(adapter.seen[t] == subscribers for t in range(1, 7))
        assert 50 < result.bytes_down / result.delivered < 4000
        assert (
            f'slipstream_subscribers{{transport="sse"}} {subscribers}' in server.registry.render()
        )
        await gen.close()
    finally:
        await server.stop()
        await bus.stop()
