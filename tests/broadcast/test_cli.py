"""`slipstream subscribe` against a real node, as a subprocess."""

from __future__ import annotations

import asyncio
import json
import sys

from slipstream.bus import MemoryBus
from tests.broadcast.helpers import expected_values, node


async def run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "slipstream", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_subscribe_prints_json_lines_from_a_cursor() -> None:
    async with node(MemoryBus()) as (server, feeder):
        await feeder.start_race()
        for tick in range(5):
            await feeder.tick(tick)
        await feeder.event(2, "flag", [], flag="yellow")
        for tick in range(5, 8):
            await feeder.tick(tick)
        code, out, err = await run_cli(
            "subscribe", server.url, "--cars", "24,48", "--groups", "tyres,engine",
            "--codec", "sparse", "--from", "R1:1", "--count", "8", "--json",
        )  # fmt: skip
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    frames = [line for line in lines if "car" in line]
    events = [line for line in lines if "event" in line]
    assert [(f["tick"], f["car"]) for f in frames] == [
        (t, c) for t in range(2, 6) for c in (24, 48)
    ]
    for f in frames:
        want = expected_values("R1", f["tick"], f["car"], ["tyres", "engine"])
        assert f["race"] == "R1" and f["values"].keys() == want.keys()
        assert all(abs(f["values"][k] - want[k]) < 1e-9 for k in want)
    assert [e["event"] for e in events] == ["flag"] and events[0]["data"] == {"flag": "yellow"}
    assert "connected via ws" in err


async def test_subscribe_reports_a_refused_subscription() -> None:
    async with node(MemoryBus()) as (server, feeder):
        await feeder.start_race()
        await feeder.tick(0)
        code, _out, err = await run_cli("subscribe", server.url, "--groups", "warp", "--count", "1")
    assert code == 2
    assert "unknown_group" in err and "tyres" in err


async def test_subscribe_rejects_a_bad_cursor() -> None:
    code, _, err = await run_cli("subscribe", "http://127.0.0.1:9", "--from", "R1")
    assert code == 2 and "RACE:TICK" in err
