"""`slipstream subscribe --transport sse` against a real node, as a subprocess."""

from __future__ import annotations

import json

from slipstream.bus import MemoryBus
from tests.broadcast.helpers import expected_values, node
from tests.broadcast.test_cli import run_cli


async def test_subscribe_over_sse_prints_the_frames_after_the_cursor() -> None:
    async with node(MemoryBus()) as (server, feeder):
        await feeder.start_race()
        for tick in range(6):
            await feeder.tick(tick)
        code, out, err = await run_cli(
            "subscribe", server.url, "--transport", "sse", "--cars", "24,48", "--groups",
            "tyres", "--from", "R1:1", "--count", "8", "--json",
        )  # fmt: skip
    assert code == 0, err
    frames = [line for line in map(json.loads, out.splitlines()) if "car" in line]
    assert [(f["tick"], f["car"]) for f in frames] == [
        (t, c) for t in range(2, 6) for c in (24, 48)
    ]
    for f in frames:
        want = expected_values("R1", f["tick"], f["car"], ["tyres"])
        assert all(abs(f["values"][k] - want[k]) < 1e-9 for k in want)
    assert "connected via sse" in err
