"""A broadcast node over real sockets, on the in-process bus and on the Kafka broker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from broadcast.decoder import EventItem, FrameItem, NoticeItem, StateItem
from broadcast.protocol import Cursor
from slipstream.bus import Bus
from tests.broadcast.helpers import (
    Collector,
    frames,
    make_client,
    node,
    oracle,
    peer_port,
    same_frames,
    wait_for_tick,
    ws_fans,
)
from tests.support.proxy import FaultProxy

CARS = [1, 7, 24, 48]
SKIP = {3: {7}, 4: {7}, 11: {48}}


async def feed(feeder, ticks: range) -> None:  # type: ignore[no-untyped-def]
    for t in ticks:
        await feeder.tick(t, skip=SKIP.get(t, set()))


def is_state(state: str, transport: str | None = None) -> Callable[[object], bool]:
    return lambda i: (
        isinstance(i, StateItem) and i.state == state and transport in (None, i.transport)
    )


async def test_resume_after_server_abort_and_client_drop_loses_nothing(
    any_bus: Bus, unique_topic: Callable[[str], str]
) -> None:
    async with node(any_bus, unique_topic) as (server, feeder), FaultProxy(server.port) as proxy:
        await feeder.start_race()
        await feed(feeder, range(0, 5))
        # Slow to come back, so that the missed ticks are emitted meanwhile and replayed.
        fan = Collector(
            make_client(proxy.url, groups=["tyres", "engine"], cursor=Cursor("R1", -1),
                        backoff_initial_s=0.6, backoff_max_s=0.6)
        )  # fmt: skip
        # The same subscription, never interrupted.
        reference = Collector(
            make_client(server.url, groups=["tyres", "engine"], cursor=Cursor("R1", -1))
        )
        try:
            await fan.wait_tick(4, 48)
            through_proxy = proxy.upstream_ports()
            for fan_ in ws_fans(server):  # server side: abort the fan's
                if peer_port(fan_) in through_proxy:
                    fan_.owner.transport.abort()
            await fan.wait(is_state("reconnecting"))
            await feed(feeder, range(5, 10))
            await wait_for_tick(server, 9)
            await fan.wait_tick(9, 48)
            proxy.drop_all()  # client side: the network drops
            await fan.wait(lambda _: sum(map(is_state("reconnecting"), fan.items)) == 2)
            await feed(feeder, range(10, 15))
            await wait_for_tick(server, 14)
            await fan.wait_tick(14, 48)
            await reference.wait_tick(14, 48)
        finally:
            await fan.close()
            await reference.close()
        assert frames(fan.items) == frames(reference.items)
        want = oracle("R1", range(15), CARS, ["tyres", "engine"], SKIP)
        assert same_frames(frames(fan.items), want)
        assert not any(is_state("reconnecting")(i) for i in reference.items)
        assert [i.kind for i in fan.items if isinstance(i, EventItem)] == ["race_start"]
        assert not [i for i in fan.items if isinstance(i, NoticeItem)]
        assert server.hub.m_replays.value() >= 2
        assert server.hub.m_replayed.value() >= 10


async def test_a_gap_past_the_replay_window_gives_a_keyframe_and_a_notice(
    any_bus: Bus, unique_topic: Callable[[str], str]
) -> None:
    # Ring: ticks 15..19; the bus could serve 10 more (5..14) but the fan needs 3..14.
    async with node(any_bus, unique_topic, replay_ticks=5, history_ticks=10) as (server, feeder):
        await feeder.start_race()
        await feed(feeder, range(20))
        await wait_for_tick(server, 19)
        for transport in ("ws", "poll"):
            fan = Collector(make_client(server.url, transport=transport, cursor=Cursor("R1", 2)))
            try:
                notice = await fan.wait(lambda i: isinstance(i, NoticeItem))
                await fan.wait_tick(19, 48)
            finally:
                await fan.close()
            assert isinstance(notice, NoticeItem)
            assert (notice.code, notice.from_tick, notice.to_tick) == ("resume_gap", 3, 19)
            assert "replay window" in notice.message
            assert same_frames(frames(fan.items), oracle("R1", [19], CARS, None, SKIP))
        fan = Collector(make_client(server.url, cursor=Cursor("another-race", 2)))
        try:
            notice = await fan.wait(lambda i: isinstance(i, NoticeItem))
            await fan.wait_tick(19, 48)
        finally:
            await fan.close()
        assert isinstance(notice, NoticeItem) and notice.code == "race_changed"


@pytest.mark.parametrize("transport", ["ws", "poll"])
async def test_a_resume_past_the_ring_is_replayed_from_the_bus(
    any_bus: Bus, unique_topic: Callable[[str], str], transport: str
) -> None:
    async with (
        node(any_bus, unique_topic, replay_ticks=5, poll_hold_s=1.0) as (server, feeder),
        FaultProxy(server.port) as proxy,
    ):
        assert server.hub.history is not None
        server.hub.history.chunk_ticks = 4  # several chunks per resume
        await feeder.start_race()
        await feed(feeder, range(9))
        fan = Collector(make_client(proxy.url, transport=transport, cursor=Cursor("R1", -1)))
        late = None
        try:
            await fan.wait_tick(8, 48)
            proxy.refuse = True  # the fan is away while ticks 9..19 go by
            proxy.drop_all()
            await fan.wait(is_state("reconnecting"))
            await feeder.event(10, "flag", [], flag="yellow")
            await feed(feeder, range(9, 20))
            await wait_for_tick(server, 19)
            assert next(iter(server.hub.ring)).tick == 15
            proxy.refuse = False  # back: 9..14 are re-read from the bus, 15..19 from the ring
            await fan.wait_tick(19, 1)
            # A newcomer from the race start: 0..14 from the bus.
            late = Collector(make_client(server.url, transport=transport, cursor=Cursor("R1", -1)))
            await late.wait_tick(19, 1)
        finally:
            await fan.close()
            if late is not None:
                await late.close()
        want = oracle("R1", range(20), CARS, None, SKIP)
        for collector in (fan, late):
            assert not [i for i in collector.items if isinstance(i, NoticeItem)]
            assert same_frames(frames(collector.items), want)
            events = [(i.kind, i.tick) for i in collector.items if isinstance(i, EventItem)]
            assert events == [("race_start", 0), ("flag", 10)]
        assert server.hub.m_history.value() >= 6 + 15


async def test_changing_the_subscription_takes_effect_on_the_next_tick(
    any_bus: Bus, unique_topic: Callable[[str], str]
) -> None:
    async with node(any_bus, unique_topic) as (server, feeder):
        await feeder.start_race()
        await feed(feeder, range(3))
        client = make_client(server.url, cars=[1], groups=["tyres"], codec="sparse")
        fan = Collector(client)
        try:
            await fan.wait_tick(2, 1)
            await client.subscribe(cars=[24, 48], groups=["engine"])
            await feed(feeder, range(3, 5))
            await fan.wait_tick(4, 48)
        finally:
            await fan.close()
        got = frames(fan.items)
        before = [f for f in got if f[1] <= 2]
        after = [f for f in got if f[1] >= 3]
        assert {f[2] for f in before} == {1}
        assert same_frames(after, oracle("R1", [3, 4], [24, 48], ["engine"], SKIP))


@pytest.mark.parametrize("codec", ["full", "sparse", "vcdiff"])
async def test_long_poll_and_websocket_yield_identical_streams(
    any_bus: Bus, unique_topic: Callable[[str], str], codec: str
) -> None:
    if any_bus.name != "memory" and codec != "sparse":
        pytest.skip("one codec is enough on Kafka")
    async with node(any_bus, unique_topic) as (server, feeder):
        await feeder.start_race()
        await feed(feeder, range(4))
        start = Cursor("R1", -1)
        ws = Collector(
            make_client(server.url, cars=[7, 48], codec=codec, transport="ws", cursor=start)
        )
        poll = Collector(
            make_client(server.url, cars=[7, 48], codec=codec, transport="poll", cursor=start)
        )
        try:
            await ws.wait_tick(3, 48)
            await poll.wait_tick(3, 48)
            await feeder.event(6, "pit_in", [7])
            await feed(feeder, range(4, 12))
            await ws.wait_tick(11, 7)
            await poll.wait_tick(11, 7)
        finally:
            await ws.close()
            await poll.close()

        def content(items):  # type: ignore[no-untyped-def]
            return [i for i in items if isinstance(i, FrameItem | EventItem)]

        assert content(ws.items) == content(poll.items)
        assert same_frames(frames(ws.items), oracle("R1", range(12), [7, 48], None, SKIP))
        assert [i.kind for i in content(ws.items) if isinstance(i, EventItem)] == [
            "race_start",
            "pit_in",
        ]


async def test_fallback_to_long_poll_behind_a_proxy_that_refuses_the_upgrade(
    any_bus: Bus, unique_topic: Callable[[str], str]
) -> None:
    async with (
        node(any_bus, unique_topic, poll_hold_s=1.0) as (server, feeder),
        FaultProxy(server.port) as proxy,
    ):
        proxy.strip_upgrade = True
        await feeder.start_race()
        await feed(feeder, range(3))
        fan = Collector(make_client(proxy.url, cars=[24], cursor=Cursor("R1", -1), ws_retry_s=0.5))
        try:
            await fan.wait(is_state("connected", "sse"))  # HTTP streaming passes (tests/sse)
            await fan.wait_tick(2, 24)
            proxy.strip_upgrade = False  # the proxy is fixed: back to the WebSocket
            await fan.wait(is_state("connected", "ws"))
            await feed(feeder, range(3, 6))
            await fan.wait_tick(5, 24)
        finally:
            await fan.close()
        states = [(i.state, i.transport) for i in fan.items if isinstance(i, StateItem)]
        assert states[0] == ("connected", "sse")  # no failed-connection noise first
        assert ("connected", "ws") in states
        assert same_frames(frames(fan.items), oracle("R1", range(6), [24], None, SKIP))


async def test_a_dead_peer_is_closed_by_the_heartbeat(
    any_bus: Bus, unique_topic: Callable[[str], str]
) -> None:
    async with node(any_bus, unique_topic, ping_interval_s=0.2, ping_timeout_s=0.3) as (server, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        # Never answer a ping: the node must give up on us.
        async with asyncio.timeout(5):
            rest = await reader.read()  # until EOF
        writer.close()
        assert b"\x89" in rest  # it did ping us
        assert not ws_fans(server)


async def test_a_new_race_follows_on_the_same_stream(
    any_bus: Bus, unique_topic: Callable[[str], str]
) -> None:
    async with node(any_bus, unique_topic) as (server, feeder):
        await feeder.start_race()
        await feed(feeder, range(3))
        fan = Collector(make_client(server.url, cars=[1, 7], groups=["tyres"]))
        try:
            await fan.wait_tick(2, 7)
            await feeder.event(3, "race_end")
            feeder.race = "R2"
            await feeder.start_race()
            await feed(feeder, range(3))
            await fan.wait(lambda i: isinstance(i, FrameItem) and i.race == "R2" and i.tick == 2)
        finally:
            await fan.close()
        r2 = [f for f in frames(fan.items) if f[0] == "R2"]
        assert same_frames(r2, oracle("R2", range(3), [1, 7], ["tyres"]))
        kinds = [(i.race, i.kind) for i in fan.items if isinstance(i, EventItem)]
        # (R1's race_start too, when the fan got there before tick 0 was emitted)
        assert kinds[-2:] == [("R1", "race_end"), ("R2", "race_start")]
        assert not fan.client.decoder.needs_keyframe
        assert server.hub.m_keyframes.value(reason="requested") == 0
