"""Two broadcast nodes behind a real nginx; one is killed; every fan resumes on the other.

The scale knobs are environment variables (CI may run a reduced scale):
``SLIPSTREAM_TEST_FANS`` (default 500), ``SLIPSTREAM_TEST_TICK_HZ`` (how fast the
race is fed, default 4 ticks a second).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import Counter
from pathlib import Path

import aiohttp
import msgpack
import pytest

from slipstream.app.cluster import Nginx, NginxConfig, find_nginx
from slipstream.bus import Bus
from slipstream.testing import unique_name
from slipstream.testing.broker import TansuBroker, free_port
from tests.broadcast.helpers import Feeder
from tests.scaleout.helpers import env_int, listening, start_node, stop
from tests.support.fans import group_indices
from tests.support.fleet import FanFleet

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.skipif(find_nginx() is None, reason="needs nginx (Debian package nginx)"),
]

CARS = (1, 7, 24, 48)


async def test_fans_behind_nginx_resume_on_the_surviving_node_without_a_gap(
    kafka_broker: TansuBroker, kafka_bus: Bus, tmp_path: Path
) -> None:
    fans_total = env_int("FANS", 500)
    tick_s = 1.0 / env_int("TICK_HZ", 4)
    frames, events = unique_name("lb.frames"), unique_name("lb.events")
    await kafka_bus.ensure_topic(frames, 4)
    await kafka_bus.ensure_topic(events, 1)
    feeder = Feeder(kafka_bus, "R-lb", CARS, frames, events)
    await feeder.start_race()
    for tick in range(5):
        await feeder.tick(tick)

    node_a, port_a = start_node(kafka_broker.bootstrap, frames, events, "node-a")
    node_b, port_b = start_node(kafka_broker.bootstrap, frames, events, "node-b")
    nginx: Nginx | None = None
    fleet: FanFleet | None = None

    def nginx_log() -> str:
        return nginx.error_log()[-1500:] if nginx is not None else ""

    feeding: asyncio.Task[None] | None = None
    try:
        await listening(port_a, node_a)
        await listening(port_b, node_b)
        config = NginxConfig(
            f"127.0.0.1:{free_port()}",
            (f"127.0.0.1:{port_a}", f"127.0.0.1:{port_b}"),
            str(tmp_path / "nginx"),
        )
        nginx = Nginx(config)
        await asyncio.to_thread(nginx.start)
        port = int(config.listen.rpartition(":")[2])

        fleet = FanFleet(
            [("127.0.0.1", port)], fans_total, None, group_indices(["timing"]),
            record_ticks=True,
        )  # fmt: skip
        fans = fleet.fans
        for i, fan in enumerate(fans):
            fan.cars = (CARS[i % len(CARS)],)
        await fleet.connect_all(60)

        next_tick = 5

        async def feed() -> None:
            nonlocal next_tick
            while True:
                await feeder.tick(next_tick)
                next_tick += 1
                await asyncio.sleep(tick_s)  # the race's pace, not a wait for an event

        feeding = asyncio.create_task(feed())
        await fleet.wait_all(next_tick + 3, 1, 60)
        on_a = [f for f in fans if f.servers[0] == "node-a"]
        on_b = [f for f in fans if f.servers[0] == "node-b"]
        assert on_a and on_b, f"nginx sent every fan to one node: {len(on_a)} / {len(on_b)}"

        killed_at = next_tick
        kill_started = time.monotonic()
        os.kill(node_a.pid, signal.SIGKILL)
        node_a.wait(10)
        await fleet.wait_all(killed_at + 8, 1, 60)
        resumed_s = time.monotonic() - kill_started

        feeding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeding
        feeding = None
        last = next_tick - 1
        await fleet.wait_all(last, 1, 30)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\nnginx: {nginx_log()}") from None
    finally:
        if feeding is not None:
            feeding.cancel()
        if fleet is not None:
            await fleet.close()
        if nginx is not None:
            nginx.stop(fast=True)
        stop([node_a, node_b])

    print(
        f"{fans_total} fans: {len(on_a)} on node-a (killed at tick {killed_at}), "
        f"{len(on_b)} on node-b; all past tick {killed_at + 8} {resumed_s:.1f} s after the kill"
    )
    problems: Counter[str] = Counter()
    for fan in on_a:
        assert fan.servers[-1] == "node-b", fan.servers
        assert fan.connects >= 2
    for fan in fans:
        problems.update(fan.tick_problems(fan.ticks[0], last))
        problems.update(f"error {e}" for e in fan.errors)
        problems.update(f"notice {n.get('code')}" for n in fan.notices)
    assert fleet.summary()["mismatches"] == 0
    assert not problems, problems.most_common(5)


async def test_long_polls_pass_through_nginx_held_and_answered(
    kafka_broker: TansuBroker, kafka_bus: Bus, tmp_path: Path
) -> None:
    """A poll held for the node's whole --poll-hold comes back through nginx (no 504),
    and a held poll is answered through nginx as soon as the next tick is out."""
    hold_s = 2.0
    frames, events = unique_name("lbpoll.frames"), unique_name("lbpoll.events")
    await kafka_bus.ensure_topic(frames, 4)
    await kafka_bus.ensure_topic(events, 1)
    feeder = Feeder(kafka_bus, "R-poll", CARS, frames, events)
    await feeder.start_race()
    for tick in range(3):
        await feeder.tick(tick)
    node, port = start_node(
        kafka_broker.bootstrap, frames, events, "node-p", "--poll-hold", str(hold_s)
    )
    nginx: Nginx | None = None
    try:
        await listening(port, node)
        config = NginxConfig(
            f"127.0.0.1:{free_port()}", (f"127.0.0.1:{port}",), str(tmp_path / "nginx"),
            poll_hold_s=hold_s,
        )  # fmt: skip
        nginx = Nginx(config)
        await asyncio.to_thread(nginx.start)
        base = f"http://{config.listen}/v1/poll?cars=1&groups=timing"
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(20):
                body: dict[str, object] = {"cursor": None}
                while body["cursor"] != 2:  # until the node has the three ticks
                    async with http.get(base) as answer:
                        assert answer.status == 200
                        body = msgpack.unpackb(await answer.read())
            # Nothing new: held for the whole hold, then an empty answer (not a 504).
            started = time.monotonic()
            async with http.get(f"{base}&cursor=R-poll:2") as answer:
                assert answer.status == 200, await answer.text()
                held = msgpack.unpackb(await answer.read())
            held_s = time.monotonic() - started
            assert held["m"] == [] and held["cursor"] == 2
            assert held_s >= hold_s * 0.9
            # Something new while held: answered with it.
            waiting = asyncio.create_task(http.get(f"{base}&cursor=R-poll:2"))
            await feeder.tick(3)
            async with await waiting as answer:
                assert answer.status == 200
                got = msgpack.unpackb(await answer.read())
            ticks = [msgpack.unpackb(m).get("tick") for m in got["m"]]
            assert got["cursor"] == 3 and 3 in ticks
            # The event stream (SSE) passes unbuffered: a tick fed now arrives at once.
            stream_url = f"http://{config.listen}/v1/stream?cars=1&groups=timing&cursor=R-poll:3"
            async with http.get(stream_url) as stream:
                assert stream.status == 200
                await feeder.tick(4)
                async with asyncio.timeout(10):
                    while (await stream.content.readline()).strip() != b"id: R-poll:4":
                        pass
    finally:
        if nginx is not None:
            nginx.stop(fast=True)
        stop([node])
    print(f"an empty poll was held {held_s:.2f} s through nginx (node hold {hold_s:g} s)")
