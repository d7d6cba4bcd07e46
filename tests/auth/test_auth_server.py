"""Tokens and limits on a real broadcast node, over real sockets (WebSocket and long-poll)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgpack
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin, Subprotocol

from broadcast.config import BroadcastConfig
from broadcast.decoder import FrameItem
from broadcast.protocol import SUBPROTOCOL, decode_message
from broadcast.server import BroadcastServer
from slipstream.auth import (
    CLOSE_FORBIDDEN,
    CLOSE_TOKEN_EXPIRED,
    CLOSE_UNAUTHORIZED,
    AuthConfig,
    mint_token,
)
from slipstream.bus import MemoryBus
from slipstream.catalogue import CATALOGUE
from slipstream.gate import Gate
from slipstream.limits import (
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_RATE_LIMITED,
    CLOSE_TOO_MANY_SUBSCRIPTIONS,
    LimitsConfig,
)
from tests.broadcast.helpers import Collector, Feeder, make_client, wait_for_tick

SECRET = "server-secret-" + "k" * 32
WRONG = "wrong-secret-" + "w" * 32
CARS = (1, 7, 24, 48)
PREMIUM = [g.name for g in CATALOGUE.groups if g.premium]
SUB = [Subprotocol(SUBPROTOCOL)]


@contextlib.asynccontextmanager
async def guarded(
    auth: bool = True, limits: LimitsConfig | None = None
) -> AsyncIterator[tuple[BroadcastServer, Feeder]]:
    """A node on port 0 with a gate, and a race of CARS at tick 0."""
    bus = MemoryBus()
    await bus.start()
    gate = Gate(AuthConfig(secret=SECRET, enabled=True) if auth else None, limits)
    config = BroadcastConfig(port=0, tick_wait_s=0.5)
    try:
        async with BroadcastServer(config, bus, gate=gate) as server:
            feeder = Feeder(bus, cars=CARS)
            await feeder.start_race()
            await feeder.tick(0)
            await wait_for_tick(server, 0)
            yield server, feeder
    finally:
        await bus.stop()


def token(cars: list[int] | None = None, groups: list[str] | None = None, ttl_s: float = 600,
          secret: str = SECRET, now: float | None = None) -> str:  # fmt: skip
    return mint_token(secret, cars, groups, ttl_s, now=now)


async def next_of(ws: ClientConnection, kind: str) -> dict[str, Any]:
    while True:
        msg = decode_message(await ws.recv(decode=False))
        if msg["t"] == kind:
            return msg


async def closed(ws: ClientConnection, timeout_s: float = 10.0) -> tuple[int | None, str | None]:
    """Read until the node closes; its close code and reason."""
    async with asyncio.timeout(timeout_s):
        with contextlib.suppress(ConnectionClosed):
            while True:
                await ws.recv()
    return ws.close_code, ws.close_reason


def ws_url(server: BroadcastServer, tok: str | None) -> str:
    return server.ws_url + (f"?token={tok}" if tok else "")


# -- tokens over WebSocket ---------------------------------------------------------------


async def test_a_valid_token_streams_exactly_its_scope() -> None:
    async with guarded() as (server, feeder):
        fan = Collector(make_client(server.url, token=token([24, 48], ["tyres"]), transport="ws"))
        try:
            item = await fan.wait_tick(0)
            assert isinstance(item, FrameItem)
            await feeder.tick(1)
            await fan.wait_tick(1, 48)
        finally:
            await fan.close()
        got = [i for i in fan.items if isinstance(i, FrameItem)]
        assert {i.car for i in got} == {24, 48}
        tyres = {c.name for c in CATALOGUE if c.group == "tyres"}
        assert all(set(i.values) == tyres for i in got)


@pytest.mark.parametrize(
    ("make", "code", "words"),
    [
        (lambda: None, CLOSE_UNAUTHORIZED, "needs a token"),
        (lambda: "not.a.token", CLOSE_UNAUTHORIZED, "not valid"),
        (lambda: token(secret=WRONG), CLOSE_UNAUTHORIZED, "signature"),
        (lambda: token(ttl_s=60, now=time.time() - 120), CLOSE_TOKEN_EXPIRED, "expired"),
    ],
    ids=["missing", "malformed", "wrong-signature", "expired"],
)
async def test_a_bad_token_closes_the_websocket_at_connect(
    make: Any, code: int, words: str
) -> None:
    async with guarded() as (server, _), connect(ws_url(server, make()), subprotocols=SUB) as ws:
        close_code, reason = await closed(ws)
        assert close_code == code
        assert words in (reason or "")
    assert not server.hub.fans.count("ws")


async def test_the_token_can_come_in_the_authorization_header() -> None:
    headers = {"Authorization": f"Bearer {token([7])}"}
    async with (
        guarded() as (server, _),
        connect(server.ws_url, subprotocols=SUB, additional_headers=headers) as ws,
    ):
        await next_of(ws, "hello")
        await ws.send(json.dumps({"op": "subscribe"}))
        ack = await next_of(ws, "subscribed")
        assert ack["cars"] == [7]  # "every car" means every car of the token
        assert "driver" not in ack["groups"]


@pytest.mark.parametrize(
    ("grant", "subscribe", "words"),
    [
        (([24], None), {"cars": [24, 7]}, "[7]"),
        (([24], ["tyres"]), {"cars": [24], "groups": ["tyres", "brakes"]}, "brakes"),
        ((None, None), {"groups": ["tyres", *PREMIUM]}, "premium"),
    ],
    ids=["car", "group", "premium-group"],
)
async def test_an_out_of_scope_subscription_closes_with_4003(
    grant: tuple[list[int] | None, list[str] | None], subscribe: dict[str, Any], words: str
) -> None:
    async with guarded() as (server, _):
        async with connect(ws_url(server, token(*grant)), subprotocols=SUB) as ws:
            await next_of(ws, "hello")
            await ws.send(json.dumps({"op": "subscribe", **subscribe}))
            close_code, reason = await closed(ws)
            assert close_code == CLOSE_FORBIDDEN
            assert words in (reason or "")
        assert server.guard.m_refused.value(code=str(CLOSE_FORBIDDEN)) == 1


async def test_a_premium_token_sees_the_premium_group() -> None:
    async with (
        guarded() as (server, _),
        connect(ws_url(server, token(None, PREMIUM)), subprotocols=SUB) as ws,
    ):
        await next_of(ws, "hello")
        await ws.send(json.dumps({"op": "subscribe", "groups": PREMIUM, "cars": [1]}))
        assert (await next_of(ws, "subscribed"))["groups"] == PREMIUM
        tick = await next_of(ws, "tick")
        premium_index = {CATALOGUE.group_by_name[g].index for g in PREMIUM}
        assert {p[1] for p in tick["p"]} == premium_index


async def test_an_expiring_token_ends_the_session_with_4004() -> None:
    async with guarded() as (server, _):
        # iat one second back: the token has between 1 and 2 s left.
        short = token([1], ttl_s=2, now=time.time() - 1)
        async with connect(ws_url(server, short), subprotocols=SUB) as ws:
            await next_of(ws, "hello")
            await ws.send(json.dumps({"op": "subscribe"}))
            await next_of(ws, "subscribed")
            started = time.monotonic()
            close_code, reason = await closed(ws, timeout_s=10)
            assert close_code == CLOSE_TOKEN_EXPIRED and "expired" in (reason or "")
            assert time.monotonic() - started < 3


# -- tokens over long-poll ------------------------------------------------------------------


async def poll(server: BroadcastServer, headers: dict[str, str] | None = None, /,
               **params: str) -> tuple[int, Any]:  # fmt: skip
    url = f"{server.url}/v1/poll"
    async with (
        aiohttp.ClientSession() as http,
        http.get(url, params=params, headers=headers) as resp,
    ):
        body = await resp.read()
        if resp.content_type == "application/json":
            return resp.status, json.loads(body)
        return resp.status, msgpack.unpackb(body, raw=False)


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({}, 401, "missing_token"),
        ({"token": "x.y.z"}, 401, "bad_token"),
        ({"token": token(secret=WRONG)}, 401, "bad_signature"),
        ({"token": token(ttl_s=60, now=time.time() - 120)}, 401, "token_expired"),
        ({"token": token([24]), "cars": "24,7"}, 403, "forbidden"),
        ({"token": token(None, ["tyres"]), "groups": "tyres,engine"}, 403, "forbidden"),
        ({"token": token(), "groups": ",".join(PREMIUM)}, 403, "forbidden"),
    ],
    ids=["missing", "malformed", "wrong-signature", "expired", "car", "group", "premium"],
)
async def test_long_poll_refusals(params: dict[str, str], status: int, code: str) -> None:
    async with guarded() as (server, _):
        got_status, body = await poll(server, **params)
        assert (got_status, body["code"]) == (status, code)
        assert body["message"]


async def test_long_poll_with_a_token_gets_its_scope() -> None:
    async with guarded() as (server, _):
        headers = {"Authorization": f"Bearer {token([7, 24], PREMIUM)}"}
        status, body = await poll(server, headers, keyframe="1")
        assert status == 200
        ticks = [decode_message(m) for m in body["m"]]
        parts = [p for t in ticks if t["t"] == "tick" for p in t["p"]]
        assert parts and {p[0] for p in parts} == {7, 24}
        assert {p[1] for p in parts} == {CATALOGUE.group_by_name[g].index for g in PREMIUM}


async def test_without_auth_no_token_is_needed() -> None:
    async with guarded(auth=False) as (server, _):
        status, _body = await poll(server, keyframe="1")
        assert status == 200
        async with connect(server.ws_url, subprotocols=SUB) as ws:
            await next_of(ws, "hello")
            await ws.send(json.dumps({"op": "subscribe", "groups": PREMIUM}))
            assert (await next_of(ws, "subscribed"))["groups"] == PREMIUM


# -- limits -------------------------------------------------------------------------------


async def test_connections_per_address_get_429_beyond_the_limit() -> None:
    limits = LimitsConfig(max_connections_per_address=2, limit_loopback=True)
    async with (
        guarded(auth=False, limits=limits) as (server, _),
        connect(server.ws_url, subprotocols=SUB) as a,
        connect(server.ws_url, subprotocols=SUB) as b,
    ):
        await next_of(a, "hello")
        await next_of(b, "hello")
        with pytest.raises(InvalidStatus) as info:
            async with connect(server.ws_url, subprotocols=SUB):
                pass
        assert info.value.response.status_code == 429
        assert b"too_many_connections" in (info.value.response.body or b"")
        status, body = await poll(server)
        assert (status, body["code"]) == (429, "too_many_connections")


async def test_message_size_rate_and_subscriptions_close_with_their_codes() -> None:
    limits = LimitsConfig(max_message_bytes=1024, message_rate_per_s=1, message_burst=3,
                          max_subscriptions=2)  # fmt: skip
    async with guarded(auth=False, limits=limits) as (server, _):
        async with connect(server.ws_url, subprotocols=SUB) as ws:
            await next_of(ws, "hello")
            await ws.send(json.dumps({"op": "ping", "pad": "x" * 2000}))
            assert (await closed(ws))[0] == CLOSE_MESSAGE_TOO_BIG
        async with connect(server.ws_url, subprotocols=SUB) as ws:
            await next_of(ws, "hello")
            for _ in range(5):
                await ws.send('{"op": "ping"}')
            assert (await closed(ws))[0] == CLOSE_RATE_LIMITED
        async with connect(server.ws_url, subprotocols=SUB) as ws:
            await next_of(ws, "hello")
            for cars in ([1], [7], [24]):
                await ws.send(json.dumps({"op": "subscribe", "cars": cars}))
            code, reason = await closed(ws)
            assert code == CLOSE_TOO_MANY_SUBSCRIPTIONS and "subscribe" in (reason or "")


async def test_long_polls_per_second_get_429() -> None:
    limits = LimitsConfig(message_rate_per_s=0.5, message_burst=2, limit_loopback=True)
    async with guarded(auth=False, limits=limits) as (server, _):
        statuses = [(await poll(server, keyframe="1"))[0] for _ in range(3)]
        assert statuses == [200, 200, 429]


async def test_a_foreign_origin_is_refused_with_403() -> None:
    limits = LimitsConfig(allowed_origins=("https://fans.example",))
    async with guarded(auth=False, limits=limits) as (server, _):
        with pytest.raises(InvalidStatus) as info:
            async with connect(
                server.ws_url, subprotocols=SUB, origin=Origin("https://evil.example")
            ):
                pass
        assert info.value.response.status_code == 403
        async with connect(
            server.ws_url, subprotocols=SUB, origin=Origin("https://fans.example")
        ) as ws:
            await next_of(ws, "hello")
        status, body = await poll(server, {"Origin": "https://evil.example"})
        assert (status, body["code"]) == (403, "origin_forbidden")


# -- event streams (SSE) --------------------------------------------------------------------


async def stream_status(server: BroadcastServer, **params: str) -> tuple[int, str]:
    """Status and content type of ``GET /v1/stream`` (the stream itself is not read)."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}/v1/stream", params=params) as resp,
    ):
        return resp.status, resp.content_type


async def test_event_streams_need_a_token_within_scope() -> None:
    async with guarded() as (server, _):
        assert (await stream_status(server)) == (401, "application/json")
        assert (await stream_status(server, token=token([24]), cars="7"))[0] == 403
        assert (await stream_status(server, token=token(), groups=PREMIUM[0]))[0] == 403
        assert (await stream_status(server, token=token([24]), cars="24")) == (
            200,
            "text/event-stream",
        )


async def test_event_stream_control_needs_a_token_within_scope() -> None:
    tok = {"Authorization": f"Bearer {token([24])}"}
    async with (
        guarded() as (server, _),
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}/v1/stream", params={"cars": "24"}, headers=tok) as stream,
    ):
        assert stream.status == 200
        event = b""
        while b"data: " not in event:  # skip the retry: line
            event = await stream.content.readuntil(b"\n\n")
        hello = decode_message(base64.b64decode(event.split(b"data: ", 1)[1].strip()))
        url = server.url + hello["subscribe"]
        async with http.post(url, data=b'{"cars": [24]}') as resp:
            assert resp.status == 401
        async with http.post(url, data=b'{"cars": [7]}', headers=tok) as resp:
            assert resp.status == 403
            assert (await resp.json())["code"] == "forbidden"
        async with http.post(url, data=b'{"cars": [24]}', headers=tok) as resp:
            assert resp.status == 200
            assert (await resp.json())["cars"] == [24]
