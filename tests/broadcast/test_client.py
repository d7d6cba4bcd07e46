"""The Python client's connection states and its refusals, over real sockets."""

from __future__ import annotations

import socket

import pytest
from aiohttp import web
from websockets.asyncio.server import ServerConnection, serve

from broadcast.decoder import StateItem
from broadcast.protocol import encode_message
from slipstream.client.connection import Client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_urls_and_arguments() -> None:
    client = Client("ws://h:1/ws")
    assert (client.base_url, client.ws_url) == ("http://h:1", "ws://h:1/ws")
    client = Client("https://h/base/")
    assert (client.base_url, client.ws_url) == ("https://h/base", "wss://h/base/ws")
    with pytest.raises(ValueError, match="transport"):
        Client("http://h:1", transport="pigeon")
    with pytest.raises(ValueError, match="URL"):
        Client("ftp://h:1")


async def test_an_unreachable_node_reports_reconnecting_then_suspended() -> None:
    client = Client(
        f"http://127.0.0.1:{free_port()}", backoff_initial_s=0.01, backoff_max_s=0.05,
        suspend_after_s=0.2,
    )  # fmt: skip
    states = []
    async for item in client:
        assert isinstance(item, StateItem)
        states.append(item.state)
        if item.state == "suspended":
            break
    assert states[0] == "reconnecting" and states[-1] == "suspended"
    assert set(states) == {"reconnecting", "suspended"}


async def test_a_refused_token_stops_the_client_with_a_clear_error() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send(encode_message({"t": "hello", "v": 1}))
        await ws.recv()
        await ws.close(4001, "bad_token: signature does not match")

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        last = None
        async for item in Client(f"http://127.0.0.1:{port}", token="nope"):
            last = item
            if isinstance(item, StateItem) and item.state == "suspended":
                break
        assert isinstance(last, StateItem) and last.refused
        assert "4001 bad_token" in last.detail


@pytest.mark.parametrize("transport", ["auto", "poll"])
async def test_http_401_is_fatal_on_upgrade_and_on_poll(transport: str) -> None:
    async def refuse(request: web.Request) -> web.Response:
        assert request.headers.get("Authorization") == "Bearer expired"
        return web.json_response({"code": "token_expired", "message": "token expired"}, status=401)

    app = web.Application()
    app.router.add_get("/{tail:.*}", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        client = Client(f"http://127.0.0.1:{port}", transport=transport, token="expired")
        async for item in client:
            if isinstance(item, StateItem) and item.refused:
                break
        assert client.refusal is not None and "token_expired" in client.refusal
    finally:
        await runner.cleanup()
