"""`slipstream broadcast` as users start it: tokens with SLIPSTREAM_SECRET, none with --no-auth."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from broadcast.protocol import SUBPROTOCOL, decode_message
from slipstream.auth import CLOSE_UNAUTHORIZED, mint_token
from slipstream.testing.broker import TansuBroker

pytestmark = pytest.mark.kafka

SECRET = "node-cli-secret-" + "n" * 32
LISTENING = re.compile(r"listening on (http://[\d.]+:\d+)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def broadcast_node(bootstrap: str, *args: str, secret: str | None) -> Iterator[tuple[str, str]]:
    """Run `slipstream broadcast`; yield its URL and the stderr read up to 'listening'."""
    env = {k: v for k, v in os.environ.items() if k != "SLIPSTREAM_SECRET"}
    if secret is not None:
        env["SLIPSTREAM_SECRET"] = secret
    env["PYTHONUNBUFFERED"] = "1"
    argv = ["--kafka", bootstrap, "--port", str(_free_port()), *args]
    proc = subprocess.Popen(
        [sys.executable, "-m", "slipstream", "broadcast", *argv],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    seen: list[str] = []
    try:
        assert proc.stderr is not None
        url = None
        for line in proc.stderr:  # ends when the process does
            seen.append(line)
            match = LISTENING.search(line)
            if match:
                url = match.group(1)
                break
        if url is None:
            pytest.fail("slipstream broadcast did not start:\n" + "".join(seen))
        yield url, "".join(seen)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _first_close(url: str, token: str | None) -> tuple[int | None, list[str]]:
    ws_url = url.replace("http://", "ws://") + "/ws" + (f"?token={token}" if token else "")
    kinds: list[str] = []
    async with connect(ws_url, subprotocols=[SUBPROTOCOL], open_timeout=20) as ws:  # type: ignore[list-item]
        with suppress(ConnectionClosed):
            kinds.append(decode_message(await ws.recv(decode=False))["t"])
            await ws.send(json.dumps({"op": "subscribe", "cars": [24], "groups": ["tyres"]}))
            kinds.append(decode_message(await ws.recv(decode=False))["t"])
            await ws.close()
        return ws.close_code, kinds


async def test_the_node_requires_tokens_when_a_secret_is_set(kafka_broker: TansuBroker) -> None:
    with broadcast_node(kafka_broker.bootstrap, secret=SECRET) as (url, log):
        assert "auth: on" in log and "--no-auth" in log
        code, kinds = await _first_close(url, None)
        assert code == CLOSE_UNAUTHORIZED and kinds == []
        good = mint_token(SECRET, [24], ["tyres"], 600)
        code, kinds = await _first_close(url, good)
        assert kinds == ["hello", "subscribed"]


async def test_no_auth_switches_tokens_off(kafka_broker: TansuBroker) -> None:
    with broadcast_node(kafka_broker.bootstrap, "--no-auth", secret=SECRET) as (url, log):
        assert "auth: off (--no-auth)" in log
        _code, kinds = await _first_close(url, None)
        assert kinds == ["hello", "subscribed"]


@contextmanager
def run_command(secret: str | None, *args: str) -> Iterator[tuple[str, list[str]]]:
    """Run `slipstream run --port 0`; yield its URL and the banner lines."""
    env = {k: v for k, v in os.environ.items() if k != "SLIPSTREAM_SECRET"}
    if secret is not None:
        env["SLIPSTREAM_SECRET"] = secret
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "slipstream", "run", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # ends when the process does
            lines.append(line.rstrip("\n"))
            if line.startswith("auth:"):
                break
        url = next((m.group(1) for m in map(SERVING.search, lines) if m), None)
        if url is None or not lines[-1].startswith("auth:"):
            pytest.fail("slipstream run printed no URL and auth line:\n" + "\n".join(lines))
        yield url, lines
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


SERVING = re.compile(r"serving on (http://[\d.]+:\d+)")


async def test_run_prints_whether_auth_is_on_and_enforces_it() -> None:
    with run_command(SECRET) as (url, lines):
        assert "auth: on" in lines[-1] and "--no-auth" in lines[-1]
        code, kinds = await _first_close(url, None)
        assert code == CLOSE_UNAUTHORIZED and kinds == []
    with run_command(None) as (url, lines):
        assert "auth: off" in lines[-1] and "SLIPSTREAM_SECRET" in lines[-1]
        _code, kinds = await _first_close(url, None)
        assert kinds[0] == "hello"
