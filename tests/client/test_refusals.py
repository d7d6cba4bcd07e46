"""A refusal ends the retries: both Python entry points, every transport, a real node.

A bad, a missing and an expired token each turn the client ``suspended`` with
the node's reason within 5 s, with no further attempt until a new token comes;
``slipstream subscribe`` exits non-zero with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from broadcast.decoder import FrameItem, StateItem
from slipstream.client import Client, ClientError, SyncClient
from tests.auth.test_auth_server import guarded, token
from tests.broadcast.test_cli import run_cli

TRANSPORTS = ["ws", "sse", "poll", "auto"]
#: name -> (token maker, words of the node's reason: a close reason or an HTTP body)
TOKENS = {
    "bad": (lambda: "garbage", "token is not valid"),
    "missing": (lambda: None, "needs a token"),
    "expired": (lambda: token(ttl_s=60, now=time.time() - 120), "expired"),
}


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("kind", sorted(TOKENS))
async def test_a_refused_token_suspends_the_client(transport: str, kind: str) -> None:
    make_token, code = TOKENS[kind]
    async with guarded() as (server, _feeder):
        client = Client(
            server.url, cars=[24], groups=["tyres"], transport=transport, token=make_token(),
            backoff_initial_s=0.02, backoff_max_s=0.1,
        )  # fmt: skip
        iterator = aiter(client)
        states: list[StateItem] = []
        async with asyncio.timeout(5):
            async for item in iterator:
                if isinstance(item, StateItem):
                    states.append(item)
                    if item.state == "suspended":
                        break
        last = states[-1]
        assert last.refused and code in last.detail, states
        assert client.refusal == last.detail
        # No further attempt on its own: nothing arrives until a new token is given.
        nxt = asyncio.ensure_future(anext(iterator))
        done, _ = await asyncio.wait({nxt}, timeout=1.0)
        assert not done
        # A new token: the same client streams.
        client.set_token(token([24], ["tyres"]))
        async with asyncio.timeout(10):
            item = await nxt
            while not isinstance(item, FrameItem):
                item = await anext(iterator)
        assert item.car == 24
        await client.close()
        await iterator.aclose()


@pytest.mark.parametrize("transport", ["ws", "sse", "poll"])
async def test_a_token_expiring_mid_stream_suspends_the_client(transport: str) -> None:
    async with guarded() as (server, feeder):
        client = Client(server.url, transport=transport, token=token(ttl_s=1.5),
                        backoff_initial_s=0.02, backoff_max_s=0.1)  # fmt: skip

        async def race() -> None:
            # Ticks every 0.25 s: a held poll returns, and the next one meets the expiry.
            for tick in range(1, 1000):
                await feeder.tick(tick)
                await asyncio.sleep(0.25)  # the race's pace, not a wait for an event

        ticking = asyncio.create_task(race())
        got: list[StateItem] = []
        try:
            async with asyncio.timeout(8):
                async for item in client:
                    if isinstance(item, StateItem):
                        got.append(item)
                        if item.state == "suspended":
                            break
        finally:
            ticking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticking
            await client.close()
        assert got[0].state == "connected"
        # The WebSocket's close 4004, the stream's close message, a poll's 401.
        assert got[-1].refused and "expired" in got[-1].detail, got
        assert transport == "poll" or "4004" in got[-1].detail, got


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_subscribe_with_a_garbage_token_exits_non_zero(transport: str) -> None:
    async with guarded() as (server, _feeder):
        started = time.monotonic()
        code, _out, err = await run_cli(
            "subscribe", server.url, "--token", "garbage", "--transport", transport, "--count", "1"
        )
        elapsed_s = time.monotonic() - started
    assert code == 2, err
    assert "refused" in err and "token is not valid" in err, err
    # Startup of a Python process included; the refusal itself takes milliseconds.
    assert elapsed_s < 20, elapsed_s
    assert err.count("reconnecting") == 0, err


async def test_the_sync_iterator_yields_the_refusal_then_raises() -> None:
    async with guarded() as (server, _feeder):

        def read() -> tuple[list[StateItem], str]:
            states: list[StateItem] = []
            with SyncClient(server.url, token="garbage") as fan:
                try:
                    for item in fan:
                        if isinstance(item, StateItem):
                            states.append(item)
                except ClientError as exc:
                    return states, str(exc)
            raise AssertionError("the iterator ended without raising")

        async with asyncio.timeout(10):
            states, error = await asyncio.to_thread(read)
    assert [s.state for s in states] == ["suspended"] and states[0].refused
    assert "token is not valid" in error
