"""Fault 2: ``kill -9`` a broadcast node that serves ``failover_fans`` fans.

Two nodes read the same topics; every fan starts on the first.  When it dies
the fans fail over to the second (as a load balancer would send them) with
their cursors and resume there: no gap, no duplicate, and every car-frame they
hold equals the frames topic's.
"""

from __future__ import annotations

import pytest

from tests.faults.pipeline import GROUPS, field_cars, frames_truth, kafka_pipeline
from tests.faults.scale import record, scale
from tests.support.fleet import FanFleet

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]


async def test_kill_9_node_fans_resume_on_the_other_without_gap() -> None:
    s = scale()
    async with kafka_pipeline(nodes=2) as p:
        first, second = p.node_ports
        cars = (await field_cars(first))[:2]
        addresses = [("127.0.0.1", first), ("127.0.0.1", second)]
        async with FanFleet(addresses, s.failover_fans, cars, GROUPS, spread=False) as fleet:
            await fleet.open(timeout_s=120)
            await fleet.wait_all(fleet.latest_tick() + 4, 1, 60)
            assert all(f.address == 0 for f in fleet.fans)
            kill_tick = fleet.latest_tick()
            p.nodes[0].kill9()
            await fleet.wait_all(kill_tick + 10, 2, 120)
            moved = sum(1 for f in fleet.fans if f.address == 1)
            last_tick = fleet.latest_tick()
        truth, _ = await frames_truth(p.bootstrap)
        survivor_errors = p.nodes[1].error_lines()
        assert p.nodes[1].running
    summary = fleet.summary()
    problems = fleet.missing(truth)
    record(
        "node_kill_9",
        {
            "fans": s.failover_fans,
            "moved_to_second_node": moved,
            "kill_tick": kill_tick,
            "last_tick": last_tick,
            "lost": len(problems),
            "duplicated": summary["duplicates"],
            **summary,
        },
    )
    assert moved == s.failover_fans
    assert problems == []
    assert summary["duplicates"] == 0 and summary["unreported_gaps"] == 0
    assert summary["reported_gaps"] == 0 and summary["bad_bases"] == 0
    assert summary["errors"] == 0
    assert survivor_errors == []
