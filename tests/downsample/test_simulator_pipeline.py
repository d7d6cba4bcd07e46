"""The simulator with every fault on, through the real broker, against a clean run."""

from __future__ import annotations

import asyncio

import pytest

from downsample.service import DownsampleService
from ingest.dlq import DeadLetter, decode_dead_letter
from ingest.validate import REASONS
from simulator.config import SimulatorConfig
from simulator.service import SimulatorService
from slipstream.bus import Bus
from slipstream.bus.base import Record
from slipstream.metrics import Registry
from slipstream.records import Frame, decode_raw
from slipstream.testing import unique_name
from tests.downsample.reference import frames_reference
from tests.downsample.test_service import config, frames_of, read_all, until_idle

pytestmark = pytest.mark.kafka

RACE = {"cars": 10, "rate_hz": 120, "speed": 0.0, "seed": 7, "duration_s": 8.0}
RACE_FAULTS = {"dup_rate": 0.03, "reorder_rate": 0.05, "corrupt_rate": 0.03}


async def simulate_and_downsample(
    bus: Bus, **faults: float
) -> tuple[list[Record], dict[tuple[str, int, int], Frame], list[DeadLetter], Registry]:
    cfg = config(idle_flush_ms=500)
    await bus.ensure_topic(cfg.raw_topic, cfg.partitions)
    simulator = SimulatorService(
        SimulatorConfig(**RACE, **faults),  # type: ignore[arg-type]
        bus,
        partitions=cfg.partitions,
        raw_topic=cfg.raw_topic,
        events_topic=unique_name("sim.events"),
    )
    await simulator.run()
    raw = await read_all(bus, cfg.raw_topic)
    registry = Registry()
    service = DownsampleService(cfg, bus, registry)
    service.expected_records = len(raw)  # type: ignore[attr-defined]
    task = asyncio.create_task(service.run())
    try:
        await until_idle(service, task)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    frames = frames_of(await read_all(bus, cfg.frames_topic))
    letters = [decode_dead_letter(r.value) for r in await read_all(bus, cfg.dlq_topic)]
    return raw, frames, letters, registry


async def test_faulty_feed_gives_the_clean_frames_and_dead_letters_every_bad_record(
    kafka_bus: Bus,
) -> None:
    clean_raw, clean_frames, clean_letters, _ = await simulate_and_downsample(kafka_bus)
    raw, frames, letters, registry = await simulate_and_downsample(kafka_bus, **RACE_FAULTS)

    assert clean_letters == []
    clean_batches = [decode_raw(r.value) for r in clean_raw]
    assert clean_frames == frames_reference(clean_batches)
    # The faulty run equals the clean one, less what corruption destroyed: the same
    # race computed from the clean batches that reached the faulty topic intact.
    good = {r.value for r in clean_raw}
    intact = {r.value for r in raw} & good
    assert frames == frames_reference(
        [b for b, r in zip(clean_batches, clean_raw, strict=True) if r.value in intact]
    )
    # Every record whose bytes are not a clean record's is corrupt: each is dead-lettered,
    # with its original bytes, under a reason of its own (not as a duplicate or late).
    corrupt = {(r.partition, r.offset): r for r in raw if r.value not in good}
    assert corrupt, "the simulator should have corrupted some records"
    by_position = {(d.partition, d.offset): d for d in letters}
    for position, record in corrupt.items():
        letter = by_position.get(position)
        assert letter is not None, f"corrupt record at {position} was not dead-lettered"
        assert letter.value == record.value and letter.reason in REASONS
        assert letter.reason not in ("duplicate", "late")
    # Every other dead letter is a copy of a clean record: a duplicate.
    extra = [d for d in letters if (d.partition, d.offset) not in corrupt]
    assert extra and all(d.reason == "duplicate" and d.value in good for d in extra)
    assert len({(d.race, d.car, d.seq) for d in extra}) == len(extra)
    # Every good sample is in a frame or counted late.
    samples = sum(decode_raw(value).values.shape[0] for value in intact)
    late = registry.counter("slipstream_late_samples_total", "").value()
    assert sum(f.samples for f in frames.values()) + late == samples
    assert registry.counter("slipstream_raw_samples_total", "").value() == samples
    lost = len(good - intact)
    assert 0 < lost <= len(corrupt)
