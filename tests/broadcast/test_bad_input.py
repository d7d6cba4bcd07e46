"""Bad input gets a clear error or close code, and everyone else keeps being served."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import msgpack
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from broadcast.config import BroadcastConfig
from broadcast.protocol import SUBPROTOCOL, decode_message
from broadcast.server import BroadcastServer
from slipstream.bus import MemoryBus
from slipstream.catalogue import CATALOGUE
from slipstream.errors import ConfigError
from tests.broadcast.helpers import Collector, make_client, node, wait_for_tick


async def next_of(ws: ClientConnection, kind: str) -> dict[str, object]:
    while True:
        msg = decode_message(await ws.recv(decode=False))
        if msg["t"] == kind:
            return msg


@pytest.mark.parametrize(
    ("message", "code", "hint"),
    [
        ("{oops", "malformed", "JSON"),
        (b"\xc1", "malformed", "msgpack"),
        ('{"op": "fly"}', "unknown_op", "subscribe"),
        ('{"op": "subscribe", "cars": [99]}', "unknown_car", "known: 1, 7, 24, 48"),
        ('{"op": "subscribe", "groups": ["warp"]}', "unknown_group", "tyres"),
        ('{"op": "subscribe", "codec": "zip"}', "unknown_codec", "sparse"),
        ('{"op": "subscribe", "cursor": "R1"}', "bad_cursor", "RACE:TICK"),
    ],
)
async def test_bad_messages_get_an_error_and_the_connection_lives_on(
    message: str | bytes, code: str, hint: str
) -> None:
    async with node(MemoryBus()) as (server, feeder):
        await feeder.start_race()
        await feeder.tick(0)
        other = Collector(make_client(server.url, cars=[1]))
        try:
            await other.wait_tick(0, 1)
            async with connect(server.ws_url, subprotocols=[SUBPROTOCOL]) as ws:  # type: ignore[list-item]
                await next_of(ws, "hello")
                await ws.send(message)
                error = await next_of(ws, "error")
                assert error["code"] == code
                assert hint in str(error["message"])
                # Still open and serving: a good subscription works on the same socket.
                await ws.send(json.dumps({"op": "subscribe", "cars": [7]}))
                assert (await next_of(ws, "subscribed"))["cars"] == [7]
                tick = await next_of(ws, "tick")
                assert {p[0] for p in tick["p"]} == {7}  # type: ignore[attr-defined]
            await feeder.tick(1)
            await other.wait_tick(1, 1)  # the other fan never noticed
        finally:
            await other.close()
        assert server.hub.m_errors.value(code=code) == 1


async def test_an_oversized_message_closes_with_1009_and_too_many_errors_with_1008() -> None:
    async with node(MemoryBus(), max_errors=3) as (server, _feeder):
        async with connect(server.ws_url, subprotocols=[SUBPROTOCOL]) as ws:  # type: ignore[list-item]
            await ws.send("x" * (server.config.max_message_bytes + 1))
            with pytest.raises(ConnectionClosed):
                while True:
                    await ws.recv()
            assert ws.close_code == 1009
        async with connect(server.ws_url, subprotocols=[SUBPROTOCOL]) as ws:  # type: ignore[list-item]
            for _ in range(3):
                await ws.send("{")
            with pytest.raises(ConnectionClosed):
                while True:
                    await ws.recv()
            assert ws.close_code == 1008
        assert server.hub.m_errors.value(code="malformed") == 3


async def test_bad_poll_requests_get_400_with_a_reason() -> None:
    async with node(MemoryBus()) as (server, _), aiohttp.ClientSession() as http:
        for query, code in [
            ("codec=zip", "unknown_codec"),
            ("groups=warp", "unknown_group"),
            ("cars=a,b", "bad_field"),
            ("race=R1", "bad_cursor"),
            ("race=R1&cursor=-7", "bad_cursor"),
        ]:
            async with http.get(f"{server.url}/v1/poll?{query}") as resp:
                assert resp.status == 400
                body = await resp.json()
                assert body["code"] == code and body["message"]


async def test_a_wrong_protocol_version_or_path_is_refused() -> None:
    async with node(MemoryBus()) as (server, _):
        with pytest.raises(InvalidStatus) as info:
            await connect(server.ws_url, subprotocols=["slipstream.v9"])  # type: ignore[list-item]
        assert info.value.response.status_code == 400
        assert b"slipstream.v1" in info.value.response.body
        with pytest.raises(InvalidStatus) as info:
            await connect(server.ws_url.replace("/ws", "/nope"))
        assert info.value.response.status_code == 404


async def test_http_endpoints() -> None:
    async with node(MemoryBus()) as (server, feeder), aiohttp.ClientSession() as http:
        await feeder.start_race()
        await feeder.tick(0)
        fan = Collector(make_client(server.url))
        try:
            await fan.wait_tick(0)
            async with http.get(f"{server.url}/v1/channels") as resp:
                assert await resp.json() == json.loads(json.dumps(CATALOGUE.to_json()))
            async with http.get(f"{server.url}/healthz") as resp:
                health = await resp.json()
                assert health["status"] == "ok" and health["race"] == "R1"
                assert health["subscribers"]["ws"] == 1
            async with http.get(f"{server.url}/metrics") as resp:
                text = await resp.text()
            assert 'slipstream_subscribers{transport="ws"} 1' in text
            assert 'slipstream_messages_sent_total{transport="ws"}' in text
            assert 'slipstream_bytes_sent_total{transport="ws"}' in text
            async with http.get(f"{server.url}/") as resp:
                assert resp.status == 200 and "<html" in (await resp.text()).lower()
            async with http.get(f"{server.url}/ws") as resp:  # no Upgrade: refused clearly
                assert resp.status == 426 and "/v1/poll" in await resp.text()
        finally:
            await fan.close()


async def test_a_port_in_use_is_a_clear_error() -> None:
    bus = MemoryBus()
    async with node(bus) as (server, _):
        with pytest.raises(ConfigError, match=f"127.0.0.1:{server.port}"):
            await BroadcastServer(BroadcastConfig(port=server.port), bus).start()


async def test_stop_tells_fans_to_reconnect_elsewhere() -> None:
    async with node(MemoryBus()) as (server, feeder):
        await feeder.start_race()
        await feeder.tick(0)
        async with connect(server.ws_url, subprotocols=[SUBPROTOCOL]) as ws:  # type: ignore[list-item]
            await ws.send('{"op": "subscribe"}')
            await next_of(ws, "tick")
            await server.stop()
            notice = await next_of(ws, "notice")
            assert notice["code"] == "shutdown" and "reconnect" in str(notice["message"])
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 1012


async def test_stop_releases_held_polls_with_the_shutdown_notice() -> None:
    async with node(MemoryBus()) as (server, feeder), aiohttp.ClientSession() as http:
        await feeder.start_race()
        await feeder.tick(0)
        await wait_for_tick(server, 0)
        url = f"{server.url}/v1/poll?race=R1&cursor=0"  # nothing new: the node holds it
        poll = asyncio.create_task(http.get(url))
        done, _ = await asyncio.wait([poll], timeout=0.5)
        assert not done and server.hub.poll_waiting == 1  # held
        await server.stop()
        async with asyncio.timeout(5):
            resp = await poll
        body = msgpack.unpackb(await resp.read())
        notices = [decode_message(m) for m in body["m"]]
        assert [n["code"] for n in notices] == ["shutdown"]
        assert (body["race"], body["cursor"]) == ("R1", 0)
