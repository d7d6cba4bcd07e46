"""The baseline broadcaster's bytes, the loop choice and the side-by-side arithmetic."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import msgpack
import pytest
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from broadcast.config import BroadcastConfig
from broadcast.protocol import SUBPROTOCOL
from broadcast.server import BroadcastServer
from slipstream.app.bench.adapter import Subscription
from slipstream.app.bench.baseline import TickMessages
from slipstream.app.bench.compare import compared_rows, ratios
from slipstream.app.bench.loops import default_loop, loop_version, run_on, validate_loop
from slipstream.app.bench.race import RaceFrames, simulate_race
from slipstream.app.bench.slipstream_adapter import SlipstreamAdapter
from slipstream.bus import Producer
from slipstream.bus.memory import MemoryBus
from slipstream.config import EVENTS_TOPIC, FRAMES_TOPIC
from slipstream.errors import ConfigError
from slipstream.records import car_key, encode_event, encode_frame


@pytest.fixture(scope="module")
def race() -> RaceFrames:
    return simulate_race(cars=6, seconds=5, seed=3)


@pytest.fixture
async def node(race: RaceFrames) -> AsyncIterator[tuple[BroadcastServer, Producer]]:
    bus = MemoryBus()
    await bus.start()
    server = BroadcastServer(BroadcastConfig(port=0, default_codec="sparse"), bus)
    await server.start()
    producer = await bus.producer()
    await producer.send(EVENTS_TOPIC, encode_event(race.start), key=race.race.encode())
    try:
        yield server, producer
    finally:
        await server.stop()
        await bus.stop()


@pytest.mark.parametrize(
    "sub",
    [
        Subscription(cars=(), groups=(), codec=""),
        Subscription(cars=(0, 1), groups=("engine", "tyres"), codec="full"),
    ],
    ids=["everything-default-codec", "two-cars-two-groups-full"],
)
async def test_baseline_sends_the_bytes_the_node_sends_a_live_fan(
    node: tuple[BroadcastServer, Producer], race: RaceFrames, sub: Subscription
) -> None:
    server, producer = node
    cars = tuple(int(race.cars[i]) for i in sub.cars)
    sub = Subscription(race.race, cars, sub.groups, sub.codec)
    messages = TickMessages(race, sub, "sparse")
    adapter = SlipstreamAdapter()
    received: dict[int, bytes] = {}
    async with connect(server.ws_url, subprotocols=[Subprotocol(SUBPROTOCOL)]) as ws:
        for is_text, payload in adapter.ws_opening(sub):
            await ws.send(payload.decode() if is_text else payload)
        async with asyncio.timeout(20):
            for tick in range(4):
                await producer.send_many(
                    FRAMES_TOPIC, [(car_key(f.car), encode_frame(f)) for f in race.frames(tick)]
                )
                while tick not in received:
                    data = await ws.recv()
                    assert isinstance(data, bytes)
                    stamp = adapter.ws_message(data, False)
                    if stamp is not None:
                        received[stamp[0]] = data
    # Tick 0 is the subscription's keyframe; ticks 1.. are what every live fan gets.
    for tick in range(1, 4):
        ts = msgpack.unpackb(received[tick])["ts"]
        assert messages.at(tick, ts)[-1] == received[tick]


def test_tick_messages_carry_the_emission_time(race: RaceFrames) -> None:
    messages = TickMessages(race, Subscription(race.race), "sparse")
    assert len(messages.ticks) == race.ticks
    now = time.time_ns()
    decoded = msgpack.unpackb(messages.at(3, now)[-1])
    assert decoded["t"] == "tick" and decoded["tick"] == 3 and decoded["ts"] == now
    assert decoded["kf"] is False and decoded["codec"] == "sparse"
    # The race_start event travels with tick 0, as the node delivers it.
    first = messages.at(0, now)
    assert msgpack.unpackb(first[0])["t"] == "event" and len(first) == 2


def test_loops_run_and_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    async def main() -> None:
        seen.append(type(asyncio.get_running_loop()).__module__)

    run_on("asyncio", main)
    run_on("uvloop", main)
    assert seen[0].startswith("asyncio") and seen[1].startswith("uvloop")
    assert default_loop() == "asyncio"  # the node's default
    assert loop_version("uvloop").startswith("uvloop ")
    with pytest.raises(ConfigError, match="unknown event loop 'trio'"):
        validate_loop("trio")
    from slipstream.app.bench import loops

    monkeypatch.setattr(loops, "_uvloop_importable", lambda: False)
    with pytest.raises(ConfigError, match="pip install uvloop"):
        validate_loop("uvloop")


def _run(cpu: float, p99: float | None, delivered: float, rss: float) -> dict[str, object]:
    return {
        "server_cpu_us_per_update": cpu, "latency_ms": {"p50": 2.0, "p99": p99, "max": 9.0},
        "delivered_ratio": delivered, "updates_per_s": 2000.0,
        "server_rss_per_connection_kb": rss, "bytes_per_update": 430.0, "server_cpu_pct": 20.0,
        "other_cpu_pct": 3.0, "generator_cpu_pct": 30.0,
        "server": {"loop": "uvloop", "workers": 1},
    }  # fmt: skip


def test_ratios_are_node_over_baseline() -> None:
    node, base = _run(8.0, 150.0, 1.0, 12.0), _run(10.0, None, 0.5, 0.0)
    r = ratios(node, base)
    assert r == {
        "server_cpu_us_per_update": 0.8, "latency_p50_ms": 1.0, "latency_p99_ms": None,
        "delivered_ratio": 2.0, "updates_per_s": 1.0, "server_rss_per_connection_kb": None,
    }  # fmt: skip
    rows = compared_rows({**node, "baseline": base, "ratios": r})
    assert rows[0] == ("", "slipstream", "websockets.broadcast", "ratio")
    assert ("server_cpu_us_per_update", "8.00", "10.00", "0.800") in rows
    assert ("latency_p99_ms", "150.00", "-", "-") in rows


def test_pipe_send_keeps_a_large_message_whole_on_a_watched_pipe() -> None:
    import multiprocessing
    import os
    import threading

    from slipstream.app.bench.loops import pipe_send

    parent, child = multiprocessing.Pipe()
    big = ("result", bytes(range(256)) * 8192)  # 2 MiB, far past a pipe's buffer
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(parent.recv()), daemon=True)
    reader.start()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(child.fileno(), lambda: None)
        # What cut generator results short: uvloop watches the pipe non-blocking.
        assert not os.get_blocking(child.fileno())
        pipe_send(child, big)
        assert not os.get_blocking(child.fileno())
        loop.remove_reader(child.fileno())

    run_on("uvloop", main)
    reader.join(10)
    assert got == [big]
    parent.close()
    child.close()
