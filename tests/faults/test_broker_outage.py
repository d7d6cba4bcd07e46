"""Fault 5: the broker is unreachable for ``broker_outage_s`` and comes back.

The broker advertises a :class:`~slipstream.testing.faults.FaultProxy`'s address,
so every stage's every connection (bootstrap and partition leaders) runs
through it.  The proxy aborts every connection and refuses new ones for the
outage.  Then, with no restart:

* every process is still running and the race flows to the fans again;
* nothing produced is lost: the frames topic holds, for every (car, tick) the
  raw topic has up to the fans' last tick, exactly the reference frame;
* the only errors logged are aiokafka's retries during the outage;
* each fan either got every car-frame of the topic or was told of the gap
  (``resume_gap``) — nothing is hidden — and got no duplicate.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from slipstream.catalogue import CATALOGUE
from slipstream.records import TICK_NS
from tests.downsample.reference import frames_reference
from tests.faults.pipeline import (
    GROUPS,
    dead_letters,
    field_cars,
    frames_truth,
    kafka_pipeline,
    raw_batches,
)
from tests.faults.scale import record, scale
from tests.support.fans import digest
from tests.support.fleet import FanFleet

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]


async def test_broker_outage_every_stage_recovers_nothing_lost() -> None:
    s = scale()
    async with kafka_pipeline(proxied=True) as p:
        assert p.proxy is not None
        port = p.node_ports[0]
        cars = (await field_cars(port))[:2]
        async with FanFleet([("127.0.0.1", port)], s.kill_fans, cars, GROUPS) as fleet:
            await fleet.open(timeout_s=60)
            await fleet.wait_all(fleet.latest_tick() + 4, 1, 60)
            cut_tick = fleet.latest_tick()
            dropped = p.proxy.cut()
            started = time.monotonic()
            await asyncio.sleep(s.broker_outage_s)  # the outage itself
            p.proxy.restore()
            outage_s = time.monotonic() - started
            stalled_tick = fleet.latest_tick()
            await fleet.wait_all(stalled_tick + 10, 1, 120)
            recovered_s = time.monotonic() - started - outage_s
            last_tick = fleet.latest_tick()
            running = {svc.name: svc.running for svc in p.services}
        truth, repeats = await frames_truth(p.bootstrap)
        batches, raw_repeats = await raw_batches(p.bootstrap)
        letters: list[str] = []
        dlq = await dead_letters(p.bootstrap, letters)
        # What the downsampler said about its partitions (joins, revocations, restores).
        group_lines = [
            line for line in p.downsample.log().splitlines()
            if "aiokafka" not in line and "partition" in line
        ][:40]  # fmt: skip
        errors = p.errors()
        # The only ERROR lines: aiokafka's own retries while the broker was away.
        foreign = [line for lines in errors.values() for line in lines if "aiokafka" not in line]
    summary = fleet.summary()

    cutoff = last_tick - 1
    wanted = frames_reference([b for b in batches if b.t0_ns // TICK_NS <= cutoff + 1])
    slices = [slice(CATALOGUE.groups[g].start, CATALOGUE.groups[g].stop) for g in GROUPS]
    reference = {k: digest([f.q[sl] for sl in slices]) for k, f in wanted.items() if k[2] <= cutoff}
    topic = {k: v for k, v in truth.items() if k[2] <= cutoff}
    topic_lost = sorted(set(reference) - set(topic))[:5]
    topic_wrong = sorted(k for k in reference if k in topic and topic[k] != reference[k])[:5]
    problems = fleet.missing(truth)
    record(
        "broker_outage",
        {
            "fans": s.kill_fans,
            "outage_s": round(outage_s, 2),
            "connections_cut": dropped,
            "refused_during_outage": p.proxy.refused,
            "cut_tick": cut_tick,
            "stalled_tick": stalled_tick,
            "recovered_after_s": round(recovered_s, 2),
            "last_tick": last_tick,
            "topic_car_frames_checked": len(reference),
            "re_emitted_frames": repeats,
            "raw_records_sent_twice": raw_repeats,
            "dead_letters": dlq,
            "dead_letters_not_duplicates": letters[:20],
            "downsample_partition_log": group_lines,
            "lost": len(problems) + len(topic_lost),
            "stale_reported": fleet.stale_reported,
            "duplicated": summary["duplicates"],
            "errors_logged": {k: len(v) for k, v in errors.items()},
            **summary,
        },
    )
    assert all(running.values()), running
    assert foreign == []
    assert topic_lost == [] and topic_wrong == []
    # Every dead letter is a raw record sent twice, and every such repeat is one.
    assert dlq == ({"duplicate": raw_repeats} if raw_repeats else {})
    assert problems == []
    assert summary["duplicates"] == 0 and summary["unreported_gaps"] == 0
    assert summary["bad_bases"] == 0 and summary["errors"] == 0
