"""Fault 4: a reconnect storm: ``storm_fans`` fans drop and reconnect within one second.

Every fan of one node loses its connection at the same moment and reconnects
after a uniform delay in ``[0, storm_window_s)``, each resuming from its cursor.
All of them resume with no gap and no duplicate (checked against the frames
topic), the node stays up and logs no error.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from slipstream.testing.faults import rss_bytes
from tests.faults.pipeline import GROUPS, field_cars, frames_truth, kafka_pipeline
from tests.faults.scale import record, scale
from tests.support.fleet import FanFleet

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(900)]


async def test_reconnect_storm_all_resume_node_stays_up() -> None:
    s = scale()
    async with kafka_pipeline() as p:
        port = p.node_ports[0]
        node = p.nodes[0]
        cars = (await field_cars(port))[:2]
        fleet = FanFleet(
            [("127.0.0.1", port)], s.storm_fans, cars, GROUPS, first_delay_s=s.storm_window_s
        )
        async with fleet:
            await fleet.open(timeout_s=300)
            await fleet.wait_all(fleet.latest_tick() + 2, 1, 120)
            rss_before = rss_bytes(node.pid)
            storm_tick = fleet.latest_tick()
            started = time.monotonic()
            dropped = fleet.drop_all()
            await fleet.wait_all(storm_tick + 6, 2, 300)
            all_resumed_s = time.monotonic() - started
            resubscribed = sorted(f.subscribed_at[1] - started for f in fleet.fans)
            health = await asyncio.to_thread(node.get_json, port, "/healthz")
            rss_after = rss_bytes(node.pid)
            last_tick = fleet.latest_tick()
        truth, _ = await frames_truth(p.bootstrap)
        assert node.running
        node_errors = node.error_lines()
    summary = fleet.summary()
    problems = fleet.missing(truth)
    record(
        "reconnect_storm",
        {
            "fans": s.storm_fans,
            "dropped": dropped,
            "resubscribed_p50_s": round(resubscribed[len(resubscribed) // 2], 3),
            "resubscribed_max_s": round(resubscribed[-1], 3),
            "all_past_storm_tick_plus_6_s": round(all_resumed_s, 2),
            "node_rss_mb_before": round(rss_before / 2**20, 1),
            "node_rss_mb_after": round(rss_after / 2**20, 1),
            "storm_tick": storm_tick,
            "last_tick": last_tick,
            "lost": len(problems),
            "duplicated": summary["duplicates"],
            **summary,
        },
    )
    assert dropped == s.storm_fans
    assert health["status"] == "ok"
    assert problems == []
    assert summary["duplicates"] == 0 and summary["unreported_gaps"] == 0
    assert summary["reported_gaps"] == 0 and summary["bad_bases"] == 0
    assert summary["errors"] == 0
    assert node_errors == []
