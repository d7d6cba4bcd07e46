"""Fault 3: a TCP proxy cuts fans' connections for 1 s, 30 s and longer than the replay window.

The whole pipeline runs in one ``slipstream run`` process (simulator, downsample,
node).  One reference fan is connected directly; ``cut_fans`` fans go through a
:class:`~slipstream.testing.faults.FaultProxy`.  After the two short cuts every fan
resumes with no gap and no duplicate, and every car-frame it holds equals the
reference fan's; after the long cut each gets a ``resume_gap`` notice naming the
missing ticks, then a keyframe, and nothing else is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from slipstream.testing.broker import free_port
from slipstream.testing.faults import Service
from tests.faults.scale import record, scale
from tests.support.fleet import FanFleet
from tests.support.proxy import FaultProxy

GROUPS = (1, 4)  # engine, tyres


@contextlib.asynccontextmanager
async def pipeline(replay_ticks: int) -> AsyncIterator[tuple[Service, int]]:
    s = scale()
    port = free_port()
    node = Service(
        [
            "run", "--port", str(port), "--cars", str(s.cars), "--rate", str(s.rate_hz),
            "--speed", str(s.speed), "--seed", "7", "--replay-ticks", str(replay_ticks),
            "--history-ticks", "0", "--ping-interval", "5",
        ],
        "run",
    )  # fmt: skip
    node.start()
    try:
        health = await node.wait_http(port)
        async with asyncio.timeout(30):
            while health["tick"] is None:
                await asyncio.sleep(0.2)  # the race's first tick comes after the node is up
                health = await asyncio.to_thread(node.get_json, port, "/healthz")
        yield node, port
    finally:
        node.close()


async def test_cuts_resume_without_gap_and_long_cut_is_reported() -> None:
    s = scale()
    window_s = s.replay_ticks / (2 * s.speed)
    assert s.cut_long_s < window_s - 1, "the long cut must fit in the replay window"
    async with (
        pipeline(s.replay_ticks) as (node, port),
        FanFleet([("127.0.0.1", port)], 1, None, GROUPS) as reference,
    ):
        await reference.open(timeout_s=30)
        await reference.wait_all(reference.latest_tick() + 2, 1, 30)
        cars = tuple(sorted({car for (_, car, _) in reference.observations.values})[:2])
        async with (
            FaultProxy(port) as proxy,
            FanFleet([("127.0.0.1", proxy.port)], s.cut_fans, cars, GROUPS) as fleet,
        ):
            await fleet.open(timeout_s=60)
            figures: dict[str, object] = {"fans": s.cut_fans, "cars": list(cars)}
            cut_s = [s.cut_short_s, s.cut_long_s, window_s + 3.0]
            for round_, seconds in enumerate(cut_s, start=1):
                await fleet.wait_all(fleet.latest_tick() + 1, round_, 60)
                dropped = proxy.cut()
                started = time.monotonic()
                await asyncio.sleep(seconds)  # the outage itself
                proxy.restore()
                outage = time.monotonic() - started
                tick = (await asyncio.to_thread(node.get_json, port, "/healthz"))["tick"]
                await fleet.wait_all(tick + 1, round_ + 1, 60 + seconds)
                figures[f"cut_{round_}"] = {
                    "seconds": round(outage, 2),
                    "dropped": dropped,
                    **fleet.summary(),
                }
                resumes = [[g for g in f.gaps if g.reason != "conflated"] for f in fleet.fans]
                if round_ < 3:
                    assert all(not gaps for gaps in resumes), figures
                else:
                    for gaps in resumes:
                        assert len(gaps) == 1 and gaps[0].reason == "resume_gap", gaps
                        assert gaps[0].last - gaps[0].first + 1 > s.replay_ticks
            await reference.wait_all(fleet.latest_tick(), 1, 30)
        summary = fleet.summary()
        problems = fleet.missing(reference.observations.values)
        figures["lost"] = len(problems)
        figures["duplicated"] = summary["duplicates"]
        record("proxy_cuts", figures)
        assert problems == []
        assert summary["duplicates"] == 0
        assert summary["bad_bases"] == 0
        assert summary["mismatches"] == 0
        assert summary["unreported_gaps"] == 0
        assert summary["reported_gaps"] == s.cut_fans
        assert all(not f.errors for f in fleet.fans), [f.errors for f in fleet.fans][:3]
        assert node.running
    assert node.error_lines() == []


pytestmark = pytest.mark.timeout(600)
