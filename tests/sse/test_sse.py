"""HTTP streaming (SSE) over real sockets: same bytes as the WebSocket, resume, fallbacks."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import connect

from broadcast.decoder import EventItem, FrameItem, NoticeItem, StateItem
from broadcast.protocol import SUBPROTOCOL, Cursor, decode_message
from slipstream.bus.memory import MemoryBus
from tests.broadcast.helpers import (
    Collector,
    Feeder,
    frames,
    make_client,
    node,
    oracle,
    same_frames,
    wait_for_tick,
)
from tests.support.proxy import FaultProxy

CARS = [1, 7, 24, 48]
SKIP = {3: {7}, 4: {7}, 11: {48}}
QUERY = "cursor=R1:-1&cars=1,24,48&groups=tyres,engine&codec=full"


async def feed(feeder: Feeder, ticks: range) -> None:
    for t in ticks:
        await feeder.tick(t, skip=sorted(SKIP.get(t, ())))


async def sse_events(resp: aiohttp.ClientResponse) -> AsyncIterator[tuple[str | None, bytes]]:
    """(id, message) of each event of an SSE response; comments as (None, b": ...")."""
    event_id: str | None = None
    data: list[bytes] = []
    async for raw in resp.content:
        line = raw.rstrip(b"\r\n")
        if line.startswith(b":"):
            yield None, line
        elif line.startswith(b"id: "):
            event_id = line[4:].decode()
        elif line.startswith(b"data: "):
            data.append(line[6:])
        elif not line and data:
            yield event_id, base64.b64decode(b"".join(data))
            event_id, data = None, []


async def read_until_tick(
    events: AsyncIterator[tuple[str | None, bytes]], tick: int, out: list[tuple[str | None, bytes]]
) -> None:
    async with asyncio.timeout(10):
        async for event_id, message in events:
            if event_id is None and message.startswith(b":"):
                continue
            out.append((event_id, message))
            msg = decode_message(message)
            if msg["t"] == "tick" and msg["tick"] == tick:
                return


def is_state(state: str, transport: str | None = None) -> Callable[[object], bool]:
    return lambda i: (
        isinstance(i, StateItem) and i.state == state and transport in (None, i.transport)
    )


async def test_sse_sends_the_websockets_bytes_with_tick_ids() -> None:
    async with node(MemoryBus()) as (server, feeder), aiohttp.ClientSession() as http:
        await feeder.start_race()
        await feed(feeder, range(0, 6))
        await feeder.event(2, "flag", flag="yellow")
        await wait_for_tick(server, 5)
        async with (
            connect(server.ws_url, subprotocols=[SUBPROTOCOL]) as ws,  # type: ignore[list-item]
            http.get(f"{server.url}/v1/stream?{QUERY}") as resp,
        ):
            assert resp.headers["Content-Type"] == "text/event-stream"
            assert resp.headers["Cache-Control"].startswith("no-cache")
            assert resp.headers["X-Accel-Buffering"] == "no"
            await ws.recv()  # hello
            sub = {"op": "subscribe", "cars": [1, 24, 48], "groups": ["tyres", "engine"]}
            await ws.send(json.dumps(sub | {"codec": "full", "cursor": "R1:-1"}))
            events = sse_events(resp)
            got: list[tuple[str | None, bytes]] = []
            await read_until_tick(events, 5, got)
            await feed(feeder, range(6, 12))
            await read_until_tick(events, 11, got)
            ws_messages: list[bytes] = []
            async with asyncio.timeout(10):
                while True:
                    data = await ws.recv(decode=False)
                    ws_messages.append(data)
                    msg = decode_message(data)
                    if msg["t"] == "tick" and msg["tick"] == 11:
                        break
        hello = decode_message(got[0][1])
        assert hello["t"] == "hello" and hello["stream"] and hello["protocol"] == SUBPROTOCOL
        # Every message after the hello: byte for byte what the WebSocket fan got.
        assert [m for _, m in got[1:]] == [m for m in ws_messages if b"subscribed" not in m[:20]]
        kinds = [decode_message(m)["t"] for _, m in got[1:]]
        assert kinds.count("tick") == 12 and kinds.count("event") == 2
        for event_id, message in got[1:]:
            msg = decode_message(message)
            assert event_id == (f"R1:{msg['tick']}" if msg["t"] == "tick" else None)
        assert server.hub.m_messages.value(transport="sse") >= len(got)


async def test_last_event_id_resumes_without_gap_or_duplicate() -> None:
    async with node(MemoryBus()) as (server, feeder), aiohttp.ClientSession() as http:
        await feeder.start_race()
        await feed(feeder, range(0, 5))
        await wait_for_tick(server, 4)
        reference: list[tuple[str | None, bytes]] = []
        async with http.get(f"{server.url}/v1/stream?{QUERY}") as ref:
            ref_events = sse_events(ref)
            await read_until_tick(ref_events, 4, reference)
            first: list[tuple[str | None, bytes]] = []
            async with http.get(f"{server.url}/v1/stream?{QUERY}") as resp:
                await read_until_tick(sse_events(resp), 2, first)  # then the fan drops
            last_id = first[-1][0]
            assert last_id == "R1:2"
            await feed(feeder, range(5, 9))
            await wait_for_tick(server, 8)
            second: list[tuple[str | None, bytes]] = []
            # What an EventSource does on reconnect: the same URL plus Last-Event-ID.
            async with http.get(
                f"{server.url}/v1/stream?{QUERY}", headers={"Last-Event-ID": last_id}
            ) as resp:
                events = sse_events(resp)
                await read_until_tick(events, 8, second)
                await feed(feeder, range(9, 12))
                await read_until_tick(events, 11, second)
            await read_until_tick(ref_events, 11, reference)
        resumed = [m for _, m in first[1:]] + [m for _, m in second[1:]]
        assert resumed == [m for _, m in reference[1:]]
        ticks = [decode_message(m)["tick"] for m in resumed if decode_message(m)["t"] == "tick"]
        assert ticks == list(range(12))


async def test_subscribe_post_changes_the_stream_and_unknown_streams_are_404() -> None:
    async with (
        node(MemoryBus(), ping_interval_s=0.2) as (server, feeder),
        aiohttp.ClientSession() as http,
    ):
        await feeder.start_race()
        await feed(feeder, range(0, 2))
        await wait_for_tick(server, 1)
        async with http.get(f"{server.url}/v1/stream?cars=1&groups=tyres") as resp:
            events = sse_events(resp)
            _, hello = await anext(events)
            stream = decode_message(hello)["stream"]
            _, keyframe = await anext(events)
            assert decode_message(keyframe)["kf"] is True
            # Nothing new for a while: heartbeat comments keep the stream alive.
            async with asyncio.timeout(5):
                assert (await anext(events))[1].startswith(b": heartbeat")
            url = f"{server.url}/v1/stream/{stream}/subscribe"
            async with http.post(url, json={"cars": [7, 24], "groups": ["engine"]}) as r:
                assert r.status == 200
                ack = await r.json()
            assert ack["t"] == "subscribed" and ack["cars"] == [7, 24]
            async with http.post(url, json={"cars": [999]}) as r:
                assert r.status == 400 and (await r.json())["code"] == "unknown_car"
            async with http.post(url, data=b"not json") as r:
                assert r.status == 400 and (await r.json())["code"] == "malformed"
            await feed(feeder, range(2, 3))
            got: list[tuple[str | None, bytes]] = []
            await read_until_tick(events, 2, got)
            msgs = [decode_message(m) for _, m in got]
            assert msgs[0]["t"] == "subscribed"
            assert msgs[-1]["kf"] is True and {p[0] for p in msgs[-1]["p"]} == {7, 24}
        async with http.post(f"{server.url}/v1/stream/nope/subscribe", json={}) as r:
            assert r.status == 404
        async with http.get(f"{server.url}/v1/stream?cars=x") as r:
            assert r.status == 400 and (await r.json())["code"] == "bad_field"


async def test_client_settles_on_sse_when_upgrade_is_refused_and_climbs_back() -> None:
    async with node(MemoryBus()) as (server, feeder), FaultProxy(server.port) as proxy:
        proxy.strip_upgrade = True
        await feeder.start_race()
        await feed(feeder, range(0, 4))
        fan = Collector(
            make_client(proxy.url, groups=["tyres"], cursor=Cursor("R1", -1), ws_retry_s=0.5)
        )
        reference = Collector(
            make_client(server.url, groups=["tyres"], cursor=Cursor("R1", -1), transport="ws")
        )
        try:
            await fan.wait(is_state("connected", "sse"))
            assert fan.client.current_transport == "sse"
            await fan.wait_tick(3, 48)
            await fan.client.subscribe(groups=["tyres"])  # answered by the POST
            proxy.drop_all()  # the network drops: the fan resumes on SSE
            await feed(feeder, range(4, 8))
            await fan.wait_tick(7, 48)
            proxy.strip_upgrade = False  # the proxy lets WebSockets through again
            await fan.wait(is_state("connected", "ws"))
            await feed(feeder, range(8, 12))
            await fan.wait_tick(11, 24)  # 48 has no frame at 11
            await reference.wait_tick(11, 24)
        finally:
            await fan.close()
            await reference.close()
        states = [(i.state, i.transport) for i in fan.items if isinstance(i, StateItem)]
        assert states[0] == ("connected", "sse") and ("connected", "ws") in states
        # The subscription change made a keyframe: compare the decoded values, tick by tick.
        assert frames(fan.items) == frames(reference.items)
        assert same_frames(frames(fan.items), oracle("R1", range(12), CARS, ["tyres"], SKIP))
        assert [i.kind for i in fan.items if isinstance(i, EventItem)] == ["race_start"]
        assert not [i for i in fan.items if isinstance(i, NoticeItem)]


async def test_client_settles_on_long_poll_behind_a_buffering_proxy() -> None:
    async with (
        node(MemoryBus(), poll_hold_s=0.5) as (server, feeder),
        FaultProxy(server.port, buffer_responses=True, cut_after_s=0.3) as proxy,
    ):
        proxy.strip_upgrade = True
        await feeder.start_race()
        await feed(feeder, range(0, 4))
        fan = Collector(
            make_client(
                proxy.url, groups=["tyres"], cursor=Cursor("R1", -1), open_timeout_s=1.0,
                ws_retry_s=2.0,
            )
        )  # fmt: skip
        try:
            await fan.wait(is_state("connected", "poll"))
            await fan.wait_tick(3, 48)
            await feed(feeder, range(4, 8))
            await fan.wait_tick(7, 48)
            assert [i.transport for i in fan.items if isinstance(i, StateItem)] == ["poll"]
            proxy.strip_upgrade = proxy.buffering = False  # a better proxy: the fan climbs back
            await fan.wait(is_state("connected", "ws"))
            await feed(feeder, range(8, 12))
            await fan.wait_tick(11, 24)
        finally:
            await fan.close()
        states = [(i.state, i.transport) for i in fan.items if isinstance(i, StateItem)]
        assert states[0] == ("connected", "poll") and states[-1] == ("connected", "ws")
        assert same_frames(frames(fan.items), oracle("R1", range(12), CARS, ["tyres"], SKIP))


async def test_explicit_sse_transport_gets_every_frame() -> None:
    async with node(MemoryBus()) as (server, feeder):
        await feeder.start_race()
        fan = Collector(make_client(server.url, transport="sse", cars=[7, 24]))
        try:
            await fan.wait(is_state("connected", "sse"))
            await feed(feeder, range(0, 5))
            await fan.wait_tick(4, 24)
        finally:
            await fan.close()
        got = frames(fan.items)
        assert same_frames(got, oracle("R1", range(5), [7, 24], None, SKIP))
        assert any(isinstance(i, FrameItem) for i in fan.items)


async def test_a_subscribe_post_the_node_does_not_know_reconnects_the_stream() -> None:
    async with node(MemoryBus()) as (server, feeder):
        await feeder.start_race()
        await feed(feeder, range(0, 2))
        fan = Collector(make_client(server.url, transport="sse", cars=[1]))
        try:
            await fan.wait_tick(1, 1)
            # As if a load balancer sent the POST to another node: it answers 404.
            fan.client._stream_id = "elsewhere"
            await fan.client.subscribe(cars=[24])
            await feed(feeder, range(2, 4))
            await fan.wait_tick(3, 24)
        finally:
            await fan.close()
        cars = {(i.tick, i.car) for i in fan.items if isinstance(i, FrameItem)}
        assert (3, 24) in cars and (3, 1) not in cars
        assert sum(map(is_state("connected", "sse"), fan.items)) == 2  # a new stream


async def test_closing_an_sse_client_ends_it_at_once() -> None:
    async with node(MemoryBus()) as (server, _feeder):
        fan = Collector(make_client(server.url, transport="sse"))
        await fan.wait(is_state("connected", "sse"))
        await fan.client.close()  # nothing is flowing: the next heartbeat is 20 s away
        async with asyncio.timeout(5):
            await fan.task
        assert fan.task.exception() is None


async def _paused_reader(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    writer.write(b"GET /v1/stream?codec=full HTTP/1.1\r\nHost: x\r\n\r\n")
    return reader, writer


async def _chunked_events(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """Messages of a chunked SSE response read off a raw socket."""
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    pending = b""
    while size := int((await reader.readline()).strip(), 16):
        pending += await reader.readexactly(size)
        await reader.readexactly(2)
        *done, pending = pending.split(b"\n\n")
        for event in done:
            for line in event.split(b"\n"):
                if line.startswith(b"data: "):
                    yield base64.b64decode(line[6:])


@pytest.mark.parametrize("slow_fan_ticks", [4, 1000])
async def test_a_slow_sse_reader_is_conflated_then_cut(slow_fan_ticks: int) -> None:
    overrides: dict[str, Any] = {"max_send_buffer_bytes": 1024, "socket_send_buffer_bytes": 4096}
    async with node(MemoryBus(), slow_fan_ticks=slow_fan_ticks, **overrides) as (server, feeder):
        feeder.cars = list(range(1, 41))  # ~22 KB per tick in the full codec
        await feeder.start_race()
        healthy = Collector(make_client(server.url, transport="sse", cars=[1], codec="full"))
        reader, writer = await _paused_reader(server.port)
        hub = server.hub
        try:
            await healthy.wait(is_state("connected", "sse"))
            tick = 0
            while hub.m_slow_drops.value() == 0 or (
                slow_fan_ticks < 100 and hub.m_slow_closes.value() == 0
            ):
                assert tick < 200, "the paused reader never fell behind"
                await feeder.tick(tick)
                await wait_for_tick(server, tick)
                tick += 1
            await healthy.wait_tick(tick - 1, 1)
            if slow_fan_ticks < 100:
                assert hub.m_slow_closes.value() == 1
                return
            # It reads again: a conflated notice naming the dropped ticks, then a keyframe.
            messages: list[dict[str, Any]] = []
            got = asyncio.Event()
            reading = asyncio.create_task(_read_into(reader, messages, got))
            try:
                # The healthy fan is served in the same fan-out pass as the paused one.
                while hub.m_keyframes.value(reason="slow") == 0:
                    assert tick < 300, "the reader never caught up"
                    await feeder.tick(tick)
                    await healthy.wait_tick(tick, 1)
                    tick += 1
                async with asyncio.timeout(10):
                    while not messages or messages[-1].get("tick") != tick - 1:
                        got.clear()
                        await got.wait()
            finally:
                reading.cancel()
            notice = next(i for i, m in enumerate(messages) if m.get("code") == "conflated")
            assert messages[notice + 1]["t"] == "tick" and messages[notice + 1]["kf"] is True
            dropped = range(messages[notice]["from"], messages[notice]["to"] + 1)
            delivered = [m["tick"] for m in messages if m["t"] == "tick"]
            assert not set(dropped) & set(delivered) and delivered == sorted(set(delivered))
        finally:
            writer.close()
            await healthy.close()
        assert not [i for i in healthy.items if isinstance(i, NoticeItem)]


async def _read_into(
    reader: asyncio.StreamReader, out: list[dict[str, Any]], got: asyncio.Event
) -> None:
    async for message in _chunked_events(reader):
        out.append(decode_message(message))
        got.set()
