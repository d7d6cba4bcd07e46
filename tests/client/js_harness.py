"""A real broadcast node for the JavaScript package's tests, driven over stdin/stdout.

``python -m tests.client.js_harness [--auth]`` starts a node on port 0 (with a
token-checking gate if ``--auth``) and a TCP proxy in front of it, prints one JSON
line ``{"url", "proxy", "ready": true}``, then answers one JSON line per command
line read on stdin:

* ``{"op": "race"}``: start race R1 (cars 1, 7, 24, 48).
* ``{"op": "ticks", "from": A, "to": B}``: send ticks A..B-1, wait for the node.
* ``{"op": "drop"}``: abort every proxied connection (the network fails).
* ``{"op": "strip", "on": true}``: the proxy strips ``Upgrade`` (WebSocket refused).
* ``{"op": "token", "cars": [...], "groups": [...], "ttl_s": 600, "age_s": 0}``.
* ``{"op": "expected", "tick": T, "car": C, "groups": [...]}``: the values a fan
  must decode (channel units).

EOF ends it.  The JavaScript tests start it with ``SLIPSTREAM_PYTHON`` (default
``python``) from the repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any

from broadcast.config import BroadcastConfig
from broadcast.server import BroadcastServer
from slipstream.auth import AuthConfig, mint_token
from slipstream.bus import MemoryBus
from slipstream.gate import Gate
from tests.broadcast.helpers import Feeder, expected_values, wait_for_tick
from tests.support.proxy import FaultProxy

SECRET = "harness-secret-" + "s" * 32


async def _serve(auth: bool) -> None:
    bus = MemoryBus()
    await bus.start()
    gate = Gate(AuthConfig(secret=SECRET, enabled=True), None) if auth else None
    config = BroadcastConfig(port=0, tick_wait_s=0.5)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        async with (
            BroadcastServer(config, bus, gate=gate) as server,
            FaultProxy(server.port) as proxy,
        ):
            feeder = Feeder(bus, cars=(1, 7, 24, 48))
            _answer({"url": server.url, "proxy": proxy.url, "ready": True})
            while line := await reader.readline():
                command = json.loads(line)
                try:
                    _answer(await _do(command, server, feeder, proxy))
                except Exception as exc:  # reported to the test, which fails on it
                    _answer({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        await bus.stop()


async def _do(
    command: dict[str, Any], server: BroadcastServer, feeder: Feeder, proxy: FaultProxy
) -> dict[str, Any]:
    op = command["op"]
    if op == "race":
        await feeder.start_race()
    elif op == "ticks":
        for tick in range(command["from"], command["to"]):
            await feeder.tick(tick)
        await wait_for_tick(server, command["to"] - 1)
    elif op == "drop":
        proxy.drop_all()
    elif op == "strip":
        proxy.strip_upgrade = bool(command["on"])
    elif op == "token":
        now = time.time() - float(command.get("age_s", 0))
        token = mint_token(
            SECRET, command.get("cars"), command.get("groups"), command.get("ttl_s", 600), now=now
        )
        return {"token": token}
    elif op == "expected":
        return {"values": expected_values("R1", command["tick"], command["car"],
                                          command.get("groups"))}  # fmt: skip
    else:
        raise ValueError(f"unknown op {op!r}")
    return {"ok": True}


def _answer(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--auth", action="store_true", help="require tokens")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.auth))


if __name__ == "__main__":
    main()
