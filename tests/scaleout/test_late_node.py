"""A node started mid-race fills its replay ring from Kafka before it accepts fans,
and serves a resume from a cursor older than its own start."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request

import pytest

from slipstream.bus import Bus
from slipstream.records import Frame, car_key, encode_frame
from slipstream.testing import unique_name
from slipstream.testing.broker import TansuBroker
from tests.broadcast.helpers import Feeder, frame_values
from tests.scaleout.helpers import listening, start_node, stop
from tests.support.fans import group_indices
from tests.support.fleet import FanFleet

pytestmark = pytest.mark.kafka

CARS = (3, 5, 11, 12)
#: Ticks of the race on the bus before the node starts (25 minutes of race).
BEFORE = 3000
#: The node's replay ring: smaller than BEFORE, so an old cursor is past the ring.
RING = 120


def healthz(port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
        body: dict[str, object] = json.load(answer)
        return body


async def test_a_node_started_mid_race_serves_a_resume_from_before_its_start(
    kafka_broker: TansuBroker, kafka_bus: Bus
) -> None:
    frames, events = unique_name("late.frames"), unique_name("late.events")
    await kafka_bus.ensure_topic(frames, 4)
    await kafka_bus.ensure_topic(events, 1)
    feeder = Feeder(kafka_bus, "R-late", CARS, frames, events)
    await feeder.start_race()
    # A long race already on the bus (bulk-written): catching up takes the node a while.
    producer = await kafka_bus.producer()
    items = [
        (
            car_key(car),
            encode_frame(Frame("R-late", tick, car, frame_values("R-late", tick, car), 10)),
        )
        for tick in range(BEFORE)
        for car in CARS
    ]
    for i in range(0, len(items), 2000):
        await producer.send_many(frames, items[i : i + 2000])

    node, port = start_node(
        kafka_broker.bootstrap, frames, events, "late", "--replay-ticks", str(RING)
    )
    next_tick = BEFORE

    async def feed() -> None:
        nonlocal next_tick
        while True:
            await feeder.tick(next_tick)
            next_tick += 1
            await asyncio.sleep(0.25)  # the race's pace, not a wait for an event

    feeding = asyncio.create_task(feed())
    cursors = [5, BEFORE - RING - 5, BEFORE - 3, -1]
    fleet = FanFleet(
        [("127.0.0.1", port)], len(cursors), (CARS[0],), group_indices(["timing", "tyres"]),
        record_ticks=True,
    )  # fmt: skip
    fans = fleet.fans
    try:
        await listening(port, node)
        # The first answer of the node already knows the race up to the node's start.
        health = await asyncio.to_thread(healthz, port)
        assert health["race"] == "R-late"
        assert isinstance(health["tick"], int) and health["tick"] >= BEFORE - 1, health

        for fan, cursor in zip(fans, cursors, strict=True):
            fan.cursor = ("R-late", cursor)
        await fleet.connect_all(30)
        await fleet.wait_all(next_tick + 4, 1, 30)
        feeding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeding
        last = next_tick - 1
        await fleet.wait_all(last, 1, 15)
    finally:
        feeding.cancel()
        await fleet.close()
        stop([node])
    for fan, cursor in zip(fans, cursors, strict=True):
        assert fan.errors == [] and fan.notices == [], (cursor, fan.errors, fan.notices)
        assert fan.ticks == list(range(cursor + 1, last + 1)), (cursor, fan.ticks[:5])
        # The first tick after the cursor is the only keyframe when the fan holds no state.
    print(f"node started after tick {BEFORE - 1}; fans resumed from {cursors} through {last}")
