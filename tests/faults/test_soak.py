"""Soak: a whole accelerated race (``soak_race_s`` at ``soak_speed``x) to ``soak_fans`` fans.

Every process's resident memory is sampled from ``/proc`` once a second; after
a warm-up (the first quarter of the race, by which the replay ring is full)
the least-squares slope of each is reported in MiB per minute.  Checked: no
process logs an error, every fan got every car-frame of the race once (against
the frames topic) and its ``race_end``, the stages exit cleanly, and the
node's memory does not grow by more than a tenth of its size after warm-up.
In CI at a tiny scale; the full soak is the command in docs/resilience.md.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from slipstream.testing.faults import rss_bytes, slope_per_s
from tests.faults.pipeline import GROUPS, field_cars, frames_truth, kafka_pipeline
from tests.faults.scale import record, scale
from tests.support.fleet import FanFleet

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(3600)]

SAMPLE_EVERY_S = 1.0


async def test_soak_memory_flat_no_error_nothing_lost() -> None:
    s = scale()
    wall_s = s.soak_race_s / s.soak_speed
    async with kafka_pipeline(
        race_s=s.soak_race_s, speed=s.soak_speed, rate_hz=s.soak_rate_hz
    ) as p:
        port = p.node_ports[0]
        cars = (await field_cars(port))[:2]
        samples: dict[str, list[tuple[float, float]]] = {"node": [], "downsample": []}
        watched = {"node": p.nodes[0], "downsample": p.downsample}
        async with FanFleet([("127.0.0.1", port)], s.soak_fans, cars, GROUPS) as fleet:
            await fleet.open(timeout_s=300)
            started = time.monotonic()
            simulate = p.simulate.process
            assert simulate is not None
            deadline = started + wall_s * 2 + 60
            while simulate.poll() is None and time.monotonic() < deadline:
                now = time.monotonic() - started
                for name, service in watched.items():
                    samples[name].append((now, rss_bytes(service.pid) / 2**20))
                await asyncio.sleep(SAMPLE_EVERY_S)  # the sampling period
            assert simulate.returncode == 0, p.simulate.log()[-2000:]
            await fleet.wait_race_end(60)
            ticks = fleet.latest_tick()
        truth, _ = await frames_truth(p.bootstrap)
        errors = p.errors()
        exits = {svc.name: svc.stop() for svc in (*p.nodes, p.downsample)}
    summary = fleet.summary()
    problems = fleet.missing(truth)
    figures: dict[str, object] = {
        "race_s": s.soak_race_s,
        "speed": s.soak_speed,
        "cars_x_hz": f"{s.cars} x {s.soak_rate_hz}",
        "wall_s": round(samples["node"][-1][0], 1),
        "fans": s.soak_fans,
        "ticks": ticks,
        "lost": len(problems),
        "stale_reported": fleet.stale_reported,
        "duplicated": summary["duplicates"],
        "errors_logged": sum(len(v) for v in errors.values()),
    }
    for name, series in samples.items():
        warm = [x for x in series if x[0] >= series[-1][0] / 4]
        figures[f"{name}_rss_mib_after_warmup"] = round(warm[0][1], 1)
        figures[f"{name}_rss_mib_end"] = round(series[-1][1], 1)
        figures[f"{name}_rss_mib_max"] = round(max(v for _, v in series), 1)
        figures[f"{name}_slope_mib_per_min"] = round(slope_per_s(warm) * 60, 3)
    record("soak", {**figures, **summary})
    assert errors == {}
    assert exits == {"node-0": 0, "downsample": 0}
    assert problems == []
    assert summary["duplicates"] == 0 and summary["unreported_gaps"] == 0
    assert summary["reported_gaps"] == 0 and summary["errors"] == 0
    warm = [x for x in samples["node"] if x[0] >= samples["node"][-1][0] / 4]
    assert warm[-1][1] - warm[0][1] < warm[0][1] / 10, samples["node"]
