"""SimulatorService and ReplayService on the real buses (in-process and Kafka)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

from simulator.config import SimulatorConfig
from simulator.recording_file import RecordReader, RecordWriter
from simulator.replay import ReplayService
from simulator.service import SimulatorService
from slipstream.bus import Bus, MemoryBus, Record
from slipstream.catalogue import CATALOGUE
from slipstream.config import EVENTS_TOPIC, RAW_TOPIC
from slipstream.errors import ConfigError
from slipstream.metrics import Registry
from slipstream.records import RecordError, car_key, decode_event, decode_raw


async def read_all(bus: Bus, topic: str, count: int, timeout_s: float = 30.0) -> list[Record]:
    """Every record of ``topic`` once ``count`` have arrived (fails after ``timeout_s``)."""
    consumer = await bus.consumer([topic])
    records: list[Record] = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(records) < count:
                records += await consumer.getmany(timeout_ms=200)
    finally:
        await consumer.stop()
    return records


async def test_records_are_keyed_by_car_in_order_with_events(
    any_bus: Bus, unique_topic: Callable[[str], str]
) -> None:
    raw, events = unique_topic("raw"), unique_topic("events")
    config = SimulatorConfig(cars=6, seed=21, duration_s=3.0, speed=0)
    registry = Registry()
    service = SimulatorService(
        config, any_bus, registry, partitions=3, raw_topic=raw, events_topic=events
    )
    summary = await service.run()
    assert summary.records == 6 * 30
    records = await read_all(any_bus, raw, 6 * 30)
    by_car: dict[int, list[int]] = defaultdict(list)
    partitions: dict[int, set[int]] = defaultdict(set)
    for record in records:
        batch = decode_raw(record.value)
        assert record.key == car_key(batch.car)
        assert batch.race == "daytona-21"
        assert batch.values.shape == (12, len(CATALOGUE))
        assert batch.t0_ns == batch.seq * 100_000_000
        by_car[batch.car].append(batch.seq)
        partitions[batch.car].add(record.partition)
    assert sorted(by_car) == sorted(int(c) for c in service.sim.numbers)
    for car, seqs in by_car.items():
        assert seqs == list(range(30)), car
        assert len(partitions[car]) == 1
    assert registry.counter("slipstream_sim_records_total", "").value() == 180
    assert registry.counter("slipstream_sim_samples_total", "").value() == 180 * 12
    got = [decode_event(r.value) for r in await read_all(any_bus, events, 2)]
    start = next(e for e in got if e.kind == "race_start")
    assert len(start.data["entries"]) == 6
    assert all(e["driver"] and e["team"] for e in start.data["entries"])
    assert len(start.data["outline"]) == 200 and start.data["length_m"] == pytest.approx(
        4023, abs=1
    )
    assert {r.key for r in await read_all(any_bus, events, 2)} == {b"daytona-21"}
    assert any(e.kind == "flag" and e.data["flag"] == "green" for e in got)


async def test_speed_paces_against_the_loop_clock() -> None:
    bus = MemoryBus()
    config = SimulatorConfig(cars=3, seed=2, duration_s=2.0, speed=4.0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await SimulatorService(config, bus).run()
    # 2 s of race at 4x real time cannot finish before 0.5 s.
    assert loop.time() - start >= 0.45


async def test_cancellation_stops_promptly() -> None:
    bus = MemoryBus()
    config = SimulatorConfig(cars=4, seed=3, speed=1.0)
    task = asyncio.create_task(SimulatorService(config, bus).run())
    consumer = await bus.consumer([RAW_TOPIC])
    async with asyncio.timeout(10):
        while not await consumer.getmany(timeout_ms=100):
            pass
    task.cancel()
    async with asyncio.timeout(2):
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_flat_out_yields_to_other_tasks() -> None:
    bus = MemoryBus()
    ticks = 0

    async def other() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    side = asyncio.create_task(other())
    await SimulatorService(SimulatorConfig(cars=3, seed=4, duration_s=5.0, speed=0), bus).run()
    side.cancel()
    assert ticks >= 50  # at least once per batch interval


def test_silent_car_must_be_in_the_race() -> None:
    with pytest.raises(ConfigError, match="not in this race"):
        SimulatorService(SimulatorConfig(cars=3, seed=1, silent_car=100 - 1), MemoryBus())


async def collect(bus: Bus, topic: str) -> list[tuple[int, bytes | None, bytes]]:
    """Everything stored in ``topic`` of an in-process bus, in (partition, offset) order."""
    consumer = await bus.consumer([topic])
    records: list[Record] = []
    while batch := await consumer.getmany(timeout_ms=10):
        records += batch
    await consumer.stop()
    records.sort(key=lambda r: (r.partition, r.offset))
    return [(r.partition, r.key, r.value) for r in records]


async def test_record_then_replay_is_byte_identical(tmp_path: Path) -> None:
    path = tmp_path / "race.slip"
    config = SimulatorConfig(
        cars=10, seed=8, duration_s=8.0, speed=0, dup_rate=0.02, reorder_rate=0.02,
        corrupt_rate=0.02, dropout_rate=0.05,
    )  # fmt: skip
    original = MemoryBus()
    with RecordWriter(path) as recorder:
        await SimulatorService(config, original, recorder=recorder).run()
    raw_bytes = recorder.raw_bytes
    replayed = MemoryBus()
    await ReplayService(path, replayed, speed=0).run()
    for topic in (RAW_TOPIC, EVENTS_TOPIC):
        first, second = await collect(original, topic), await collect(replayed, topic)
        assert first and first == second, topic
    raw = await collect(original, RAW_TOPIC)
    assert raw_bytes == sum(len(v) for _, _, v in raw) + sum(
        len(v) for _, _, v in await collect(original, EVENTS_TOPIC)
    )
    assert path.stat().st_size * 3 <= raw_bytes
    # The faults are in the recording too: some records do not decode.
    bad = 0
    for _, _, value in raw:
        try:
            decode_raw(value)
        except RecordError:
            bad += 1
    assert bad > 0


async def test_record_without_a_bus_and_replay_into_the_bus(
    tmp_path: Path, any_bus: Bus, unique_topic: Callable[[str], str]
) -> None:
    path = tmp_path / "race.slip"
    config = SimulatorConfig(cars=5, seed=12, duration_s=3.0, speed=0, silent_car=None)
    with RecordWriter(path) as recorder:
        summary = await SimulatorService(config, None, recorder=recorder).run()
    assert summary.records == 5 * 30
    written = [(r.topic, r.key, r.value) for r in RecordReader(path)]
    raw, events = unique_topic("raw"), unique_topic("events")
    await ReplayService(path, any_bus, speed=0, raw_topic=raw, events_topic=events).run()
    got = await read_all(any_bus, raw, 150)
    assert sorted((r.key, r.value) for r in got) == sorted(
        (k, v) for t, k, v in written if t == RAW_TOPIC
    )


async def test_silent_car_stops_sending() -> None:
    bus = MemoryBus()
    probe = SimulatorService(SimulatorConfig(cars=4, seed=5), bus)
    silent = int(probe.sim.numbers[2])
    config = SimulatorConfig(cars=4, seed=5, duration_s=3.0, speed=0, silent_car=silent,
                             silent_after_s=1.0)  # fmt: skip
    await SimulatorService(config, bus).run()
    batches = [decode_raw(v) for _, _, v in await collect(bus, RAW_TOPIC)]
    mine = [b.t0_ns for b in batches if b.car == silent]
    assert mine and max(mine) < 1_000_000_000
    assert sum(1 for b in batches if b.car != silent) == 3 * 30


async def test_same_seed_gives_a_byte_identical_stream() -> None:
    config = SimulatorConfig(
        cars=8, seed=31, duration_s=4.0, speed=0, dup_rate=0.05, reorder_rate=0.05,
        corrupt_rate=0.05, dropout_rate=0.1,
    )  # fmt: skip
    streams = []
    for _ in range(2):
        bus = MemoryBus()
        await SimulatorService(config, bus).run()
        streams.append((await collect(bus, RAW_TOPIC), await collect(bus, EVENTS_TOPIC)))
    assert streams[0] == streams[1]
    assert len(streams[0][0]) > 8 * 40
    other = MemoryBus()
    await SimulatorService(SimulatorConfig(cars=8, seed=32, duration_s=4.0, speed=0), other).run()
    assert await collect(other, RAW_TOPIC) != streams[0][0]
