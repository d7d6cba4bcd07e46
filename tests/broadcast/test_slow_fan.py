"""A fan that stops reading costs the others nothing, and the node's memory stays bounded."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable, Iterable

import numpy as np

from broadcast.decoder import FrameItem, NoticeItem
from broadcast.server import BroadcastServer
from broadcast.ticks import TickData
from slipstream.bus import Bus
from slipstream.client.connection import Client
from tests.broadcast.helpers import Feeder, make_client, node, peer_port, ws_fans

CARS = list(range(1, 41))  # a full field: ~22 KB per tick in the full codec
FANS = 5


async def stuck_fan(port: int) -> socket.socket:
    """A fan that subscribes to everything and then never reads again."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(
        sock,
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += await loop.sock_recv(sock, 1)
    assert head.startswith(b"HTTP/1.1 101")
    payload = json.dumps({"op": "subscribe", "codec": "full"}).encode()
    # A masked text frame with an all-zero mask: the payload goes as is.
    await loop.sock_sendall(sock, bytes([0x81, 0x80 | len(payload), 0, 0, 0, 0]) + payload)
    return sock


class Timed:
    """A fan that notes when each tick's last car arrived."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.arrived: dict[int, float] = {}
        self.notices: list[NoticeItem] = []
        self.changed = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        async for item in self.client:
            if isinstance(item, FrameItem) and item.car == CARS[-1]:
                self.arrived[item.tick] = loop.time()
                self.changed.set()
            elif isinstance(item, NoticeItem):
                self.notices.append(item)

    async def wait(self, tick: int) -> None:
        async with asyncio.timeout(10):
            while tick not in self.arrived:
                self.changed.clear()
                await self.changed.wait()


def note_publish_times(server: BroadcastServer) -> dict[int, float]:
    """When the node fanned out each tick (the start of its delivery latency).

    Measured from there, not from the feed, so the bus's own delay (Kafka's fetch
    wait) does not drown what a stuck fan could add.
    """
    published: dict[int, float] = {}
    publish = server.hub.publish
    loop = asyncio.get_running_loop()

    def timed(ticks: Iterable[TickData], known_cars: frozenset[int]) -> None:
        ticks = list(ticks)
        for data in ticks:
            published[data.tick] = loop.time()
        publish(ticks, known_cars)

    server.hub.publish = timed  # type: ignore[method-assign]
    return published


async def run_ticks(
    feeder: Feeder, fans: list[Timed], ticks: range, published: dict[int, float]
) -> list[float]:
    latencies = []
    for tick in ticks:
        await feeder.tick(tick)
        for fan in fans:
            await fan.wait(tick)
        latencies += [fan.arrived[tick] - published[tick] for fan in fans]
    return latencies


async def test_a_fan_that_stops_reading_does_not_slow_the_others(
    any_bus: Bus, unique_topic: Callable[[str], str]
) -> None:
    limit = 64 * 1024
    async with node(
        any_bus, unique_topic, max_send_buffer_bytes=limit, slow_fan_ticks=60, close_timeout_s=0.5,
        default_codec="full",
    ) as (server, feeder):  # fmt: skip
        feeder.cars = CARS
        published = note_publish_times(server)
        await feeder.start_race()
        # The fans decode little (one group), so that latency is the node's, not theirs.
        fans = [Timed(make_client(server.url, groups=["tyres"], codec="full")) for _ in range(FANS)]
        try:
            baseline = await run_ticks(feeder, fans, range(0, 60), published)
            sock = await stuck_fan(server.port)
            async with asyncio.timeout(5):
                while len(ws_fans(server)) < FANS + 1 or not all(
                    s.state == "live" for s in ws_fans(server)
                ):
                    await server.hub.wait_tick(0.05)
            stuck = next(s for s in ws_fans(server) if peer_port(s) == sock.getsockname()[1])
            buffered = []
            with_stuck = []
            for tick in range(60, 160):
                with_stuck += await run_ticks(feeder, fans, range(tick, tick + 1), published)
                if stuck.owner.transport is not None:
                    buffered.append(stuck.owner.transport.get_write_buffer_size())
        finally:
            for fan in fans:
                await fan.client.close()
                fan.task.cancel()
            await asyncio.gather(*(f.task for f in fans), return_exceptions=True)
        p99_base = float(np.percentile(baseline, 99))
        p99_stuck = float(np.percentile(with_stuck, 99))
        print(
            f"p99 delivery latency: {p99_base * 1000:.1f} ms alone, {p99_stuck * 1000:.1f} ms "
            f"with a stuck fan; stuck fan's unsent bytes at most {max(buffered)} B"
        )
        assert p99_stuck - p99_base < 0.050
        latest = server.hub.ring.latest
        assert latest is not None
        message_bytes = len(latest.message((None, tuple(range(13)), "full"), True))
        assert max(buffered) <= limit + 2 * message_bytes  # bounded by the limit, not by time
        assert server.hub.m_slow_drops.value() > 0
        assert server.hub.m_slow_closes.value() == 1  # stayed behind: closed
        assert all(not fan.notices for fan in fans)  # the others lost nothing
        assert server.hub.m_encodes.value() == 1  # one encode per tick served all six fans
        sock.close()
