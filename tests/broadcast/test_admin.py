"""broadcast/admin.py: RaceInfo (pure) and the /ops, /v1/race, /v1/sessions routes."""

from __future__ import annotations

import json

import aiohttp
import numpy as np

from broadcast.admin import RaceInfo
from broadcast.decoder import FrameItem
from broadcast.ticks import TickData
from slipstream.bus.memory import MemoryBus
from slipstream.records import RaceEvent
from tests.broadcast.helpers import Collector, make_client, node, wait_for_tick


def _tick(race: str, tick: int, *events: RaceEvent) -> TickData:
    empty = np.zeros(0, dtype=np.int64)
    q = np.zeros((0, 1), dtype=np.int32)
    return TickData(race, tick, empty, q, empty, q, empty, q, empty, empty, tuple(events))


def test_race_info_keeps_start_flag_and_recent_events_of_the_current_race() -> None:
    info = RaceInfo(recent=3)
    start = RaceEvent("A", 0, "race_start", (1, 2), {"laps": 10, "entries": [{"car": 1}]})
    info.observe([_tick("A", 0, start, RaceEvent("A", 1, "flag", (), {"flag": "green"}))])
    info.observe([_tick("A", 1, RaceEvent("A", 2, "lap", (1,), {"lap": 1}))])
    info.observe(
        [_tick("A", 2, *(RaceEvent("A", 3 + i, "pit_in", (2,), {"lap": i}) for i in range(3)))]
    )
    body = info.to_json()
    assert body["race"] == "A" and body["start"] == {"laps": 10, "entries": [{"car": 1}]}
    assert body["flag"] == {"tick": 0, "flag": "green"}
    assert [e["kind"] for e in body["events"]] == ["pit_in"] * 3, "lap events are not kept"
    json.dumps(body)
    info.observe([_tick("B", 0)])
    assert info.to_json() == {"race": "B", "start": None, "flag": None, "end": None, "events": []}


async def test_race_and_sessions_routes_on_a_live_node() -> None:
    bus = MemoryBus()
    await bus.start()
    try:
        async with node(bus) as (server, feeder), aiohttp.ClientSession() as http:
            await feeder.start_race()
            await feeder.event(0, "flag", flag="green", lap=0)
            for tick in range(3):
                await feeder.tick(tick)
            await wait_for_tick(server, 2)
            async with http.get(server.url + "/v1/race") as response:
                race = await response.json()
            assert race["race"] == "R1"
            assert [e["car"] for e in race["start"]["entries"]] == feeder.cars
            assert race["flag"]["flag"] == "green"
            fan = Collector(make_client(server.url, cars=[7], groups=["tyres"]))
            await fan.wait(lambda i: isinstance(i, FrameItem))
            for tick in range(3, 8):
                await feeder.tick(tick)
            await fan.wait_tick(7, car=7)
            async with http.get(server.url + "/v1/sessions") as response:
                sessions = (await response.json())["sessions"]
            assert len(sessions) == 1
            row = sessions[0]
            assert row["cars"] == [7] and row["groups"] == ["tyres"] and row["live"] is True
            assert row["bytes_per_tick"] > 0 and row["bytes_per_s"] > 0
            await fan.close()
            async with http.get(server.url + "/ops") as response:
                assert response.status == 200
                assert "/static/js/ops.js" in await response.text()
            async with http.get(server.url + "/metrics") as response:
                assert "slipstream_process_resident_bytes " in await response.text()
    finally:
        await bus.stop()
