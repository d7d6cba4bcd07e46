"""The fault tools themselves: the cuttable proxy over real sockets, RSS and slope."""

from __future__ import annotations

import asyncio
import os

import pytest

from slipstream.testing.faults import rss_bytes, slope_per_s
from tests.support.proxy import FaultProxy


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()


async def test_proxy_forwards_cuts_refuses_and_restores() -> None:
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    upstream = server.sockets[0].getsockname()[1]
    try:
        async with FaultProxy(upstream) as proxy, asyncio.timeout(10):
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"lap")
            assert await reader.readexactly(3) == b"lap"
            assert proxy.open_connections == 1
            assert proxy.cut() == 1
            assert await reader.read(10) == b""  # aborted: the client sees the end
            writer.close()
            # While cut, a new connection is accepted by the kernel, then aborted at once.
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
                await reader.readexactly(1)
            writer.close()
            assert proxy.refused == 1
            proxy.restore()
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"pit")
            assert await reader.readexactly(3) == b"pit"
            writer.close()
            assert proxy.accepted == 2 and proxy.aborted == 1
    finally:
        server.close()
        await server.wait_closed()


def test_rss_of_this_process_and_a_slope() -> None:
    assert rss_bytes(os.getpid()) > 1 << 20
    assert slope_per_s([(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]) == pytest.approx(2.0)
    assert slope_per_s([(0.0, 4.0), (10.0, 4.0)]) == 0.0
    with pytest.raises(ValueError):
        slope_per_s([(1.0, 1.0)])
    with pytest.raises(ValueError):
        FaultProxy(0)
