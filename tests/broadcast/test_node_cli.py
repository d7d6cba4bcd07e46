"""`slipstream broadcast` as a standalone process on the Kafka broker."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import Callable

import pytest

from broadcast.protocol import Cursor
from slipstream.bus import Bus
from slipstream.testing.broker import TansuBroker
from tests.broadcast.helpers import Collector, Feeder, frames, make_client, oracle, same_frames

pytestmark = pytest.mark.kafka
LISTENING = re.compile(r"listening on (http://[\d.]+:\d+)")


async def test_a_standalone_node_serves_the_bus_and_stops_on_sigterm(
    kafka_broker: TansuBroker, kafka_bus: Bus, unique_topic: Callable[[str], str]
) -> None:
    frames_topic, events_topic = unique_topic("frames"), unique_topic("events")
    await kafka_bus.ensure_topic(frames_topic, 4)
    await kafka_bus.ensure_topic(events_topic, 1)
    env = {k: v for k, v in os.environ.items() if k != "SLIPSTREAM_SECRET"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "slipstream", "broadcast", "--kafka", kafka_broker.bootstrap,
        "--port", "0", "--frames-topic", frames_topic, "--events-topic", events_topic,
        "--tick-wait", "0.5", *(["--no-auth"] if "--no-auth" in await _help() else []),
        stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL, env=env,
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        async with asyncio.timeout(30):
            while not (match := LISTENING.search((await proc.stderr.readline()).decode())):
                assert proc.returncode is None, "the node did not start"
        url = match.group(1)
        feeder = Feeder(kafka_bus, frames_topic=frames_topic, events_topic=events_topic)
        await feeder.start_race()
        for tick in range(6):
            await feeder.tick(tick)
        fan = Collector(make_client(url, cars=[7, 24], groups=["fuel"], cursor=Cursor("R1", -1)))
        try:
            await fan.wait_tick(5, 24)
        finally:
            await fan.close()
        assert same_frames(frames(fan.items), oracle("R1", range(6), [7, 24], ["fuel"]))
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _help() -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "slipstream", "broadcast", "--help",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return out.decode()
