"""``async with Client``, the synchronous iterator and ``to_pandas`` over a real node."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from broadcast.decoder import FrameItem, StateItem
from broadcast.protocol import encode_message
from slipstream.bus import MemoryBus
from slipstream.catalogue import CATALOGUE
from slipstream.client import Client, Cursor, FrameBatch, SyncClient
from tests.broadcast.helpers import expected_values, node

TYRES = [c.name for c in CATALOGUE if c.group == "tyres"]


def test_the_client_imports_without_the_server() -> None:
    code = (
        "import sys; from slipstream.client import Client, SyncClient; "
        "bad = [m for m in sys.modules if m.split('.')[0] == 'aiokafka' or m in "
        "('broadcast.server', 'broadcast.hub', 'websockets.asyncio.server', 'aiohttp.web')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


async def test_async_with_streams_and_tells_the_node_on_exit() -> None:
    async with node(MemoryBus()) as (server, feeder):
        await feeder.start_race()
        for tick in range(4):
            await feeder.tick(tick)
        seen: list[FrameItem] = []
        async with Client(server.url, cars=[24], groups=["tyres"],
                          cursor=Cursor("R1", 0)) as client:  # fmt: skip
            async with asyncio.timeout(10):
                async for item in client:
                    if isinstance(item, FrameItem):
                        seen.append(item)
                        if item.tick == 3:
                            break
            assert client.cursor == Cursor("R1", 3)
        assert [i.tick for i in seen] == [1, 2, 3]
        for item in seen:
            assert item.values == pytest.approx(expected_values("R1", item.tick, 24, ["tyres"]))


async def test_leaving_async_with_sends_a_close_frame() -> None:
    closed: asyncio.Future[tuple[int | None, str | None]] = asyncio.Future()

    async def handler(ws: ServerConnection) -> None:
        await ws.send(encode_message({"t": "hello", "v": 1}))
        await ws.recv()
        with contextlib.suppress(ConnectionClosed):
            await ws.recv()
        rcvd = ws.protocol.close_rcvd
        closed.set_result((rcvd.code, rcvd.reason) if rcvd else (None, None))

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with Client(f"http://127.0.0.1:{port}", transport="ws") as client:
            async for item in client:
                assert isinstance(item, StateItem) and item.state == "connected"
                break
        async with asyncio.timeout(5):
            code, _reason = await closed
    assert code == 1000


async def test_the_sync_iterator_and_to_pandas() -> None:
    async with node(MemoryBus()) as (server, feeder):
        await feeder.start_race()
        for tick in range(6):
            await feeder.tick(tick)

        def read() -> tuple[list[str], FrameBatch]:
            states: list[str] = []
            with SyncClient(server.url, cars=[24, 48], groups=["tyres"],
                            cursor=Cursor("R1", 1)) as fan:  # fmt: skip
                for item in fan:
                    if isinstance(item, StateItem):
                        states.append(item.state)
                    if isinstance(item, FrameItem):
                        break  # the first frame (tick 2, car 24) is read here
                batch = fan.frames(5, timeout_s=10)  # the rest: ticks 2..4
            return states, batch

        states, batch = await asyncio.to_thread(read)
    assert states == ["connected"]
    assert [(f.tick, f.car) for f in batch] == [(2, 48), (3, 24), (3, 48), (4, 24), (4, 48)]
    df = batch.to_pandas()
    assert list(df.columns) == ["race", "tick", "car", *TYRES]
    assert len(df) == 5
    assert df.attrs["units"] == {c.name: c.unit for c in CATALOGUE if c.group == "tyres"}
    for row in df.itertuples(index=False):
        want = expected_values("R1", row.tick, row.car, ["tyres"])
        assert [getattr(row, n) for n in TYRES] == pytest.approx([want[n] for n in TYRES])
