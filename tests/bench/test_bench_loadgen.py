"""The lean load-generator clients against a real (tiny) tick server over loopback."""

from __future__ import annotations

import asyncio
import multiprocessing
from array import array
from collections.abc import AsyncIterator
from multiprocessing.connection import Connection
from typing import Any

import pytest

from slipstream.app.bench.adapter import Subscription
from slipstream.app.bench.generator import GeneratorSpec, generator_main, load_adapter
from slipstream.app.bench.loadgen import LoadGenerator
from tests.bench.fakeserver import FakeAdapter, TickServer


@pytest.fixture
async def server() -> AsyncIterator[TickServer]:
    srv = TickServer()
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


class _Seen:
    """Counts subscribers that decoded a given tick; an event fires at ``want``."""

    def __init__(self, tick: int, want: int) -> None:
        self.tick = tick
        self.want = want
        self.count = 0
        self.done = asyncio.Event()

    def __call__(self, tick: int) -> None:
        if tick == self.tick:
            self.count += 1
            if self.count >= self.want:
                self.done.set()


@pytest.mark.parametrize("transport", ["ws", "poll"])
async def test_generator_counts_window_ticks_latency_and_bytes(
    server: TickServer, transport: str
) -> None:
    subscribers = 40
    seen = _Seen(tick=6, want=subscribers)
    port = server.ws_port if transport == "ws" else server.poll_port
    gen = LoadGenerator(transport, "127.0.0.1", port, FakeAdapter(seen), Subscription())
    if transport == "poll":
        await server.publish()  # long-poll subscribers are "in" once they got an answer
    await gen.open(subscribers)
    assert gen.connected == subscribers and gen.failed == 0
    if transport == "ws":
        await server.wait_subscribed(subscribers)
        await server.publish()
    gen.set_window(2, 5)
    for _ in range(6):
        await server.publish()
    async with asyncio.timeout(10):
        await seen.done.wait()
    result = gen.result()
    assert result.delivered == subscribers * 3
    latencies = array("q", result.latencies_us)
    assert len(latencies) == subscribers * 3
    assert all(0 <= lat < 5_000_000 for lat in latencies)
    if transport == "ws":
        # 2-byte frame header + msgpack [tick, ns] (1 + 1 + 9 bytes).
        assert result.bytes_down == subscribers * 3 * 13
        assert result.bytes_up == 0
    else:
        # Ticks share their response's bytes (status line and headers included)
        # and the request's: at least a status line per response, a request line per poll.
        assert result.bytes_down > subscribers * 3 * 13 + subscribers * len("HTTP/1.1 200 OK")
        assert result.bytes_up > subscribers * len("GET /poll?cursor=1 HTTP/1.1")
    await gen.close()
    assert gen.connected == 0 and result.closed == 0


async def test_ws_client_answers_pings_and_closes_cleanly(server: TickServer) -> None:
    gen = LoadGenerator("ws", "127.0.0.1", server.ws_port, FakeAdapter(), Subscription())
    await gen.open(3)
    await server.wait_subscribed(3)
    async with asyncio.timeout(5):
        for ws in list(server.subscribed):
            pong = await ws.ping(b"hello")
            await pong
    await gen.close()
    async with asyncio.timeout(5):
        for ws in server.connections:
            await ws.wait_closed()
            assert ws.close_code == 1000


async def test_server_close_and_refused_connections_are_counted(server: TickServer) -> None:
    gen = LoadGenerator("ws", "127.0.0.1", server.ws_port, FakeAdapter(), Subscription())
    await gen.open(2)
    await server.wait_subscribed(2)
    victim = next(iter(server.subscribed))
    await victim.close(4008, "too slow")
    async with asyncio.timeout(5):
        await asyncio.wait([s.lost for s in gen.subscribers], return_when=asyncio.FIRST_COMPLETED)
    result = gen.result()
    assert result.closed == 1 and gen.connected == 1
    assert any("4008" in e for e in result.errors)
    await gen.close()
    # Nothing listens on the poll port's neighbour: connections fail and are counted.
    refused = LoadGenerator("ws", "127.0.0.1", 1, FakeAdapter(), Subscription())
    await refused.open(3)
    assert refused.failed == 3 and refused.connected == 0
    await refused.close()


def test_load_adapter_names() -> None:
    assert isinstance(load_adapter("tests.bench.fakeserver:make_adapter"), FakeAdapter)
    with pytest.raises(ValueError, match="module:attribute"):
        load_adapter("nonsense")
    with pytest.raises(ValueError, match="cannot load"):
        load_adapter("tests.bench.fakeserver:nope")


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _recv(conn: Connection, kind: str, timeout_s: float = 20.0) -> tuple[Any, ...]:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout_s):
        while True:
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(conn.fileno(), _resolve, ready)
            try:
                await ready
            finally:
                loop.remove_reader(conn.fileno())
            while conn.poll():
                message: tuple[Any, ...] = conn.recv()
                if message[0] == kind:
                    return message
                assert message[0] != "error", message


async def test_generator_process_over_the_pipe(server: TickServer) -> None:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    spec = GeneratorSpec(
        "ws", "127.0.0.1", server.ws_port, 20, "tests.bench.fakeserver:make_adapter",
        report_interval_s=0.2, max_runtime_s=60,
    )  # fmt: skip
    proc = ctx.Process(target=generator_main, args=(spec, child), daemon=True)
    proc.start()
    child.close()
    try:
        opened = await _recv(parent, "opened")
        assert opened[1:] == (20, 0)
        await server.wait_subscribed(20)
        parent.send(("window", 1, 3))
        await _recv(parent, "progress")  # the window command was read before this
        for _ in range(4):
            await server.publish()
        while True:
            progress = await _recv(parent, "progress")
            if progress[4] == 80:
                break
        parent.send(("result",))
        result = (await _recv(parent, "result"))[1]
        assert result["delivered"] == 40 and result["connected"] == 20
        assert len(result["latencies_us"]) == 40 * 8
        parent.send(("stop",))
        await asyncio.to_thread(proc.join, 10)
        assert proc.exitcode == 0
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join(5)
        parent.close()


async def test_a_timed_out_attempt_is_aborted_before_the_retry() -> None:
    """A server that accepts but never answers the upgrade: every attempt is closed."""
    opened: list[asyncio.StreamReader] = []
    ended = asyncio.Queue[bool]()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        opened.append(reader)
        try:
            while await reader.read(4096):
                pass  # read the upgrade request, answer nothing
        except ConnectionError:
            pass
        ended.put_nowait(True)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    gen = LoadGenerator(
        "ws", "127.0.0.1", port, FakeAdapter(), Subscription(), connect_timeout_s=0.3
    )
    await gen.open(1)
    assert gen.failed == 1 and gen.connected == 0 and gen.subscribers == []
    async with asyncio.timeout(5):
        for _ in range(3):
            await ended.get()  # each of the 3 attempts was closed by the client
    assert len(opened) == 3
    server.close()
    await server.wait_closed()
