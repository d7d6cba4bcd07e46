"""Operator paths, public endpoints, trusted proxies and key rotation on a real node."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from broadcast.config import BroadcastConfig
from broadcast.decoder import FrameItem
from broadcast.server import BroadcastServer
from slipstream.auth import AuthConfig, mint_token
from slipstream.bus import MemoryBus
from slipstream.gate import COSTLY_BURST, Gate
from slipstream.keys import generate_key_pair, load_private_key
from slipstream.limits import LimitsConfig
from slipstream.testing.broker import free_port
from tests.broadcast.helpers import Collector, Feeder, make_client, wait_for_tick

OLD = "old-secret-" + "o" * 32
NEW = "new-secret-" + "n" * 32
FAN_ADDRESS = "198.51.100.23"
PUBLIC_PATHS = ("/", "/healthz", "/metrics", "/v1/channels", "/v1/race", "/ops")


@contextlib.asynccontextmanager
async def started(
    gate: Gate, port: int = 0, bus: MemoryBus | None = None, **config: object
) -> AsyncIterator[tuple[BroadcastServer, Feeder]]:
    """A node with ``gate`` and a race at tick 0 (on ``bus``, or a fresh one)."""
    own = bus is None
    bus = bus or MemoryBus()
    if own:
        await bus.start()
    try:
        cfg = BroadcastConfig(port=port, tick_wait_s=0.3, **config)  # type: ignore[arg-type]
        async with BroadcastServer(cfg, bus, gate=gate) as server:
            feeder = Feeder(bus)
            if own:
                await feeder.start_race()
                await feeder.tick(0)
                await wait_for_tick(server, 0)
            yield server, feeder
    finally:
        if own:
            await bus.stop()


async def get(url: str, token: str | None = None, **headers: str) -> tuple[int, str]:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
        return response.status, (await response.read()).decode(errors="replace")


async def test_sessions_need_an_operator_token_and_public_paths_show_no_address() -> None:
    gate = Gate(AuthConfig(secret=NEW, enabled=True), LimitsConfig())
    async with started(gate, trusted_proxies=("127.0.0.1/32",)) as (server, _):
        fan_token = mint_token(NEW, None, None, 600)
        # The fan comes through a trusted proxy, which names it.
        async with connect(
            server.ws_url + f"?token={fan_token}",
            additional_headers={"X-Forwarded-For": FAN_ADDRESS},
        ) as ws:
            await ws.send('{"t":"subscribe","groups":["timing"]}')
            await ws.recv()
            assert [f.remote for f in server.hub.fans] == [FAN_ADDRESS]
            status, body = await get(server.url + "/v1/sessions")
            assert status == 401 and "operator token" in body
            status, body = await get(server.url + "/v1/sessions", fan_token)
            assert status == 403 and "operator_only" in body
            status, body = await get(server.url + "/v1/sessions?token=garbage")
            assert status == 401
            operator = mint_token(NEW, None, None, 600, operator=True)
            status, body = await get(server.url + "/v1/sessions", operator)
            assert status == 200 and '"sessions"' in body
            for path in PUBLIC_PATHS:
                status, body = await get(server.url + path, fan_token)
                assert status == 200, path
                assert FAN_ADDRESS not in body, f"{path} shows a fan's address"
        # An operator token opens no telemetry.
        status, body = await get(server.url + "/v1/poll?groups=timing", operator)
        assert status == 403 and "operator token" in body
        assert server.guard.m_refused.value(code="operator_only") == 1
        assert server.guard.m_refused.value(code="missing_token") == 1


async def test_with_auth_off_operator_paths_answer_loopback_clients_only() -> None:
    async with started(Gate(), trusted_proxies=("127.0.0.1/32",)) as (server, _):
        assert (await get(server.url + "/v1/sessions"))[0] == 200
        status, body = await get(server.url + "/v1/sessions", **{"X-Forwarded-For": FAN_ADDRESS})
        assert status == 403 and "loopback" in body
    # Without a trusted proxy the header is nobody's word: the peer is loopback.
    async with started(Gate()) as (server, _):
        assert (await get(server.url + "/v1/sessions", **{"X-Forwarded-For": FAN_ADDRESS}))[
            0
        ] == 200


async def test_costly_public_paths_are_rate_limited_per_address() -> None:
    gate = Gate(None, LimitsConfig(limit_loopback=True))
    async with started(gate) as (server, _):
        statuses = [(await get(server.url + "/metrics"))[0] for _ in range(int(COSTLY_BURST) + 10)]
        assert statuses[0] == 200 and statuses[-1] == 429, statuses
        assert (await get(server.url + "/v1/channels"))[0] == 200, "cheap paths are not limited"
        assert server.guard.m_refused.value(code="too_many_requests") >= 1


async def _open(server: BroadcastServer, spoof: str) -> ClientConnection | int:
    try:
        return await connect(server.ws_url, additional_headers={"X-Forwarded-For": spoof})
    except InvalidStatus as exc:
        return exc.response.status_code


async def _count_admitted(server: BroadcastServer, spoofs: Sequence[str]) -> list[object]:
    results = [await _open(server, spoof) for spoof in spoofs]
    for result in results:
        if isinstance(result, ClientConnection):
            await result.close()
    return [r if isinstance(r, int) else "open" for r in results]


async def test_a_spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing() -> None:
    spoofs = ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
    limits = LimitsConfig(max_connections_per_address=2, limit_loopback=True)
    # Untrusted peer: every connection is 127.0.0.1's, whatever the header says.
    async with started(Gate(None, limits)) as (server, _):
        assert await _count_admitted(server, spoofs) == ["open", "open", 429]
    # The same headers from a trusted proxy name three fans: each within its limit.
    async with started(Gate(None, limits), trusted_proxies=("127.0.0.0/8",)) as (server, _):
        assert await _count_admitted(server, spoofs) == ["open", "open", "open"]


async def _frames_until(fan: Collector, feeder: Feeder, first: int, last: int) -> None:
    for tick in range(first, last + 1):
        await feeder.tick(tick)
    await fan.wait(lambda i: isinstance(i, FrameItem) and i.tick == last)


@pytest.mark.parametrize("kind", ["secret", "ed25519"])
async def test_a_key_rotation_ends_no_session(kind: str, tmp_path: Path) -> None:
    """Old key only -> (old + new) -> the fan's old token still resumes on the restarted node."""
    port = free_port()
    bus = MemoryBus()
    await bus.start()
    if kind == "secret":
        old_auth = AuthConfig(secret=OLD, enabled=True)
        both = AuthConfig(secret=NEW, enabled=True, previous_secrets=(OLD,))
        new_only = AuthConfig(secret=NEW, enabled=True)
        old_key: str | object = OLD
        new_key: str | object = NEW
    else:
        old_pair = generate_key_pair(tmp_path / "old")
        new_pair = generate_key_pair(tmp_path / "new")
        old_auth = AuthConfig(enabled=True, public_keys=(str(old_pair[1]),))
        both = AuthConfig(enabled=True, public_keys=(str(new_pair[1]), str(old_pair[1])))
        new_only = AuthConfig(enabled=True, public_keys=(str(new_pair[1]),))
        old_key, new_key = load_private_key(old_pair[0]), load_private_key(new_pair[0])
    old_token = mint_token(old_key, None, ["timing"], 600)  # type: ignore[arg-type]
    new_token = mint_token(new_key, None, ["timing"], 600)  # type: ignore[arg-type]
    feeder = Feeder(bus)
    await feeder.start_race()
    fan: Collector | None = None
    try:
        async with started(Gate(old_auth), port, bus) as (server, _):
            fan = Collector(make_client(server.url, token=old_token, transport="ws"))
            await _frames_until(fan, feeder, 0, 3)
        # Rolling restart with the new key added: the fan reconnects with its old token.
        async with started(Gate(both), port, bus) as (server, _):
            await _frames_until(fan, feeder, 4, 8)
            fresh = Collector(make_client(server.url, token=new_token, transport="ws"))
            await _frames_until(fresh, feeder, 9, 10)
            await fresh.close()
        ticks = sorted({i.tick for i in fan.items if isinstance(i, FrameItem)})
        assert ticks[0] <= 3 and ticks == list(range(ticks[0], 11)), "resumed without a gap"
        await fan.close()
        # Once the old key is retired, its tokens are refused.
        async with started(Gate(new_only), port, bus) as (server, _):
            status, body = await get(server.url + "/v1/poll?groups=timing", old_token)
            assert status == 401 and "bad_signature" in body
            status, _ = await get(server.url + "/v1/poll?groups=timing&timeout=0", new_token)
            assert status == 200
    finally:
        if fan is not None:
            await fan.close()
        await bus.stop()
