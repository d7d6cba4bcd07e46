"""Fault 1: ``kill -9`` the downsampling process mid-race and restart it.

A whole pipeline of processes on a broker of its own (simulate -> downsample ->
node -> ``kill_fans`` fans).  The downsampler is killed after it has committed
a checkpoint, stays down, and is restarted; it resumes from its checkpoint and
re-emits some frames.  Checked on the data:

* the frames topic holds, for every (car, tick) up to the fans' last tick,
  exactly the frame the raw topic gives (slow reference aggregation), and
  re-emitted frames are identical;
* every fan got every tick once, no gap, no duplicate, and exactly the topic's
  car-frames of its cars with the same values.
"""

from __future__ import annotations

import asyncio

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


async def test_kill_9_downsample_mid_race_fans_get_every_frame_once() -> None:
    s = scale()
    async with kafka_pipeline(tick_wait_s=60.0) as p:
        port = p.node_ports[0]
        cars = (await field_cars(port))[:2]
        async with FanFleet([("127.0.0.1", port)], s.kill_fans, cars, GROUPS) as fleet:
            await fleet.open(timeout_s=60)
            await fleet.wait_all(fleet.latest_tick() + 6, 1, 60)
            kill_tick = fleet.latest_tick()
            p.downsample.kill9()
            assert p.downsample.process is not None
            assert p.downsample.process.returncode == -9
            await asyncio.sleep(1.0)  # the stage stays dead for a moment
            p.downsample.start()
            await fleet.wait_all(kill_tick + 20, 1, 180)
            last_tick = fleet.latest_tick()
        truth, repeats = await frames_truth(p.bootstrap)
        batches, raw_repeats = await raw_batches(p.bootstrap)
        dlq = await dead_letters(p.bootstrap)
        errors = p.errors()
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
        "downsample_kill_9",
        {
            "fans": s.kill_fans,
            "kill_tick": kill_tick,
            "last_tick": last_tick,
            "topic_car_frames_checked": len(reference),
            "re_emitted_frames": repeats,
            "raw_records_sent_twice": raw_repeats,
            "dead_letters": dlq,
            "lost": len(problems) + len(topic_lost),
            "duplicated": summary["duplicates"],
            **summary,
        },
    )
    assert topic_lost == [] and topic_wrong == []
    # Every dead letter is a raw record sent twice, and every such repeat is one.
    assert dlq == ({"duplicate": raw_repeats} if raw_repeats else {})
    assert len(topic) == len(reference)
    assert problems == []
    assert summary["duplicates"] == 0 and summary["unreported_gaps"] == 0
    assert summary["reported_gaps"] == 0 and summary["bad_bases"] == 0
    assert summary["reconnects"] == 0 and summary["errors"] == 0
    assert errors == {}
