"""The downsampling service over a real bus: accounting, dead letters, restarts, metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import numpy as np
import pytest

from downsample.config import DownsampleConfig
from downsample.outage import OUTAGE_GRACE_FACTOR
from downsample.service import DownsampleService
from downsample.synthetic import synthetic_batches
from ingest.dlq import decode_dead_letter
from slipstream.bus import Bus
from slipstream.bus.base import Consumer, Record, TopicPartition
from slipstream.errors import BusError
from slipstream.metrics import Registry
from slipstream.records import Frame, RawBatch, car_key, decode_frame, decode_raw, encode_raw
from slipstream.testing import unique_name
from tests.downsample.reference import frames_reference


def config(**changes: object) -> DownsampleConfig:
    fields: dict[str, object] = {
        "group_id": unique_name("ds.group"),
        "raw_topic": unique_name("ds.raw"),
        "frames_topic": unique_name("ds.frames"),
        "dlq_topic": unique_name("ds.dlq"),
        "partitions": 4,
        "idle_flush_ms": 300,
        "poll_ms": 50,
        "commit_interval_ms": 100,
    }
    fields.update(changes)
    return DownsampleConfig(**fields)  # type: ignore[arg-type]


async def read_all(bus: Bus, topic: str) -> list[Record]:
    consumer = await bus.consumer([topic])
    try:
        ends = await consumer.end_offsets(consumer.assignment())
        out: list[Record] = []
        async with asyncio.timeout(30):
            while len(out) < sum(ends.values()):
                out += await consumer.getmany(timeout_ms=200)
        return out
    finally:
        await consumer.stop()


async def produce(bus: Bus, topic: str, items: list[tuple[bytes | None, bytes]]) -> None:
    producer = await bus.producer()
    for i in range(0, len(items), 200):
        await producer.send_many(topic, items[i : i + 200])
    await producer.stop()


async def until_idle(service: DownsampleService, task: asyncio.Task[None]) -> None:
    async with asyncio.timeout(60):
        while True:
            idle = asyncio.create_task(service.idle.wait())
            done, _ = await asyncio.wait({idle, task}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                idle.cancel()
                task.result()
                raise AssertionError("the service stopped")
            # Idle only counts once the records we sent have all been read.
            if service.counts.records >= service_expected(service):
                return
            service.idle.clear()


def service_expected(service: DownsampleService) -> int:
    return int(getattr(service, "expected_records", 0))


def frames_of(records: list[Record]) -> dict[tuple[str, int, int], Frame]:
    out: dict[tuple[str, int, int], Frame] = {}
    for record in records:
        frame = decode_frame(record.value)
        key = (frame.race, frame.car, frame.tick)
        if key in out:
            assert out[key] == frame, "a re-emitted frame differs"
        out[key] = frame
    return out


@pytest.fixture
async def bus(any_bus: Bus) -> AsyncIterator[Bus]:
    yield any_bus


def faulty_stream(seed: int) -> tuple[list[RawBatch], list[tuple[bytes | None, bytes]], int]:
    """Good batches, and the record stream with duplicates and corrupt records mixed in."""
    batches = list(synthetic_batches(cars=6, seconds=4, rate_hz=100, seed=seed, dropout_rate=0.02))
    rng = np.random.default_rng(seed)
    items: list[tuple[bytes | None, bytes]] = []
    corrupt = 0
    for b in batches:
        data = encode_raw(b)
        items.append((car_key(b.car), data))
        roll = rng.random()
        if roll < 0.05:
            items.append((car_key(b.car), data))  # duplicate
        elif roll < 0.10:
            items.append((car_key(b.car), data[: len(data) // 2]))  # truncated
            corrupt += 1
    return batches, items, corrupt


async def test_every_sample_is_accounted_for_and_frames_match_a_clean_run(bus: Bus) -> None:
    batches, items, corrupt = faulty_stream(11)
    cfg = config()
    await bus.ensure_topic(cfg.raw_topic, 4)
    await produce(bus, cfg.raw_topic, items)
    registry = Registry()
    service = DownsampleService(cfg, bus, registry)
    service.expected_records = len(items)  # type: ignore[attr-defined]
    task = asyncio.create_task(service.run())
    await until_idle(service, task)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    frames = frames_of(await read_all(bus, cfg.frames_topic))
    assert frames == frames_reference(batches)
    letters = [decode_dead_letter(r.value) for r in await read_all(bus, cfg.dlq_topic)]
    assert sorted({d.reason for d in letters}) == ["duplicate", "truncated"]
    assert sum(d.reason == "truncated" for d in letters) == corrupt
    raw = {(r.partition, r.offset): r for r in await read_all(bus, cfg.raw_topic)}
    for letter in letters:  # the original bytes, and where they came from
        source = raw[(letter.partition, letter.offset)]
        assert (letter.topic, letter.key, letter.value) == (cfg.raw_topic, source.key, source.value)
    samples = sum(b.values.shape[0] for b in batches)
    late = registry.counter("slipstream_late_samples_total", "").value()
    assert sum(f.samples for f in frames.values()) + late == samples
    assert registry.counter("slipstream_raw_samples_total", "").value() == samples
    assert registry.counter("slipstream_frames_total", "").value() == len(frames)
    assert registry.counter("slipstream_dlq_records_total", "").value(reason="truncated") == corrupt
    dups = sum(d.reason == "duplicate" for d in letters)
    assert registry.counter("slipstream_duplicates_total", "").value() == dups
    assert registry.gauge("slipstream_consumer_lag_records", "").value() == 0


async def test_restart_resumes_from_the_checkpoint_with_identical_frames(bus: Bus) -> None:
    batches, items, _ = faulty_stream(12)
    cfg = config()
    await bus.ensure_topic(cfg.raw_topic, 4)
    half = len(items) // 2
    await produce(bus, cfg.raw_topic, items[:half])
    first = DownsampleService(cfg, bus)
    first.expected_records = half  # type: ignore[attr-defined]
    task = asyncio.create_task(first.run())
    # Stop it while windows are still open (only the idle flush would close them).
    async with asyncio.timeout(30):
        while first.counts.records < half:
            await asyncio.wait({task}, timeout=0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    await produce(bus, cfg.raw_topic, items[half:])
    second = DownsampleService(cfg, bus)
    second.expected_records = len(items) - half  # type: ignore[attr-defined]
    task = asyncio.create_task(second.run())
    await until_idle(second, task)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert frames_of(await read_all(bus, cfg.frames_topic)) == frames_reference(batches)


async def test_cancel_is_prompt(bus: Bus) -> None:
    service = DownsampleService(config(), bus)
    task = asyncio.create_task(service.run())
    async with asyncio.timeout(10):
        await service.idle.wait()
    task.cancel()
    async with asyncio.timeout(2):
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()


async def collect_frames(
    bus: Bus, topic: str, want: int, tasks: list[asyncio.Task[None]]
) -> dict[tuple[str, int, int], Frame]:
    """Read ``topic`` until ``want`` distinct frames are in; repeats must be identical."""
    consumer = await bus.consumer([topic])
    frames: dict[tuple[str, int, int], Frame] = {}
    try:
        async with asyncio.timeout(90):
            while len(frames) < want:
                for task in tasks:
                    if task.done():
                        task.result()
                        raise AssertionError("a service stopped")
                for record in await consumer.getmany(timeout_ms=200):
                    frame = decode_frame(record.value)
                    key = (frame.race, frame.car, frame.tick)
                    assert frames.setdefault(key, frame) == frame, f"re-emitted {key} differs"
        return frames
    finally:
        await consumer.stop()


async def test_a_second_member_takes_over_partitions_with_identical_frames(bus: Bus) -> None:
    batches, items, _ = faulty_stream(13)
    want = frames_reference(batches)
    cfg = config()
    await bus.ensure_topic(cfg.raw_topic, 4)
    half = len(items) // 2
    await produce(bus, cfg.raw_topic, items[:half])
    first = DownsampleService(cfg, bus)
    tasks = [asyncio.create_task(first.run())]
    async with asyncio.timeout(60):  # the first member is well into the race
        while first.counts.records < half // 2:
            await asyncio.wait(tasks, timeout=0.01)
    second = DownsampleService(cfg, bus)
    tasks.append(asyncio.create_task(second.run()))
    await produce(bus, cfg.raw_topic, items[half:])
    try:
        frames = await collect_frames(bus, cfg.frames_topic, len(want), tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert frames == want
    assert first.counts.frames > 0 and second.counts.frames > 0


class Outage:
    """Makes the group member's broker queries (``end_offsets``) fail while ``down``."""

    def __init__(self, bus: Bus) -> None:
        self.down = True
        self.failed_at: list[float] = []
        self.answered_at: list[float] = []
        original = bus.consumer

        async def consumer(*args: Any, **kwargs: Any) -> Consumer:
            made = await original(*args, **kwargs)
            if kwargs.get("group_id") is None:  # e.g. the checkpoint reader
                return made
            answer = made.end_offsets

            async def end_offsets(tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
                if self.down:
                    self.failed_at.append(asyncio.get_running_loop().time())
                    raise BusError("broker unreachable (injected)")
                ends = await answer(tps)
                self.answered_at.append(asyncio.get_running_loop().time())
                return ends

            made.end_offsets = end_offsets  # type: ignore[method-assign]
            return made

        bus.consumer = consumer  # type: ignore[method-assign]


async def wait_until(check: Callable[[], bool], task: asyncio.Task[None]) -> None:
    """Let the service run until ``check()`` holds (bounded)."""
    async with asyncio.timeout(30):
        while not check():
            await asyncio.wait([task], timeout=0.01)
            if task.done():
                task.result()
                raise AssertionError("the service stopped")


async def race_cut_short(
    bus: Bus, seed: int
) -> tuple[DownsampleConfig, list[RawBatch], list[tuple[bytes | None, bytes]], int]:
    """A 2-car race of which only the records before ``cut`` (mid-window) are produced."""
    batches = list(synthetic_batches(cars=2, seconds=2, rate_hz=100, seed=seed))
    items: list[tuple[bytes | None, bytes]] = [(car_key(b.car), encode_raw(b)) for b in batches]
    cut = len(items) * 3 // 8  # in the middle of the second window
    cfg = config()
    await bus.ensure_topic(cfg.raw_topic, 4)
    await produce(bus, cfg.raw_topic, items[:cut])
    return cfg, batches, items, cut


def spans(times: list[float], seconds: float) -> bool:
    return len(times) >= 2 and times[-1] - times[0] >= seconds


async def test_silence_during_an_outage_does_not_close_windows(bus: Bus) -> None:
    """Silence during an outage, and until the producers are back, closes no window.

    The producer's next samples come only after the broker is back and after
    more than ``idle_flush_ms`` more: had either silence closed the half-filled
    window, they would be refused as late.
    """
    cfg, batches, items, cut = await race_cut_short(bus, seed=5)
    idle_s = cfg.idle_flush_ms / 1000
    outage = Outage(bus)
    service = DownsampleService(cfg, bus)
    task = asyncio.create_task(service.run())
    try:
        await wait_until(
            lambda: service.counts.records >= cut and spans(outage.failed_at, 2 * idle_s), task
        )
        outage.down = False
        await wait_until(lambda: spans(outage.answered_at, 2 * idle_s), task)
        await produce(bus, cfg.raw_topic, items[cut:])
        service.expected_records = len(items)  # type: ignore[attr-defined]
        await until_idle(service, task)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert await read_all(bus, cfg.dlq_topic) == []
    assert frames_of(await read_all(bus, cfg.frames_topic)) == frames_reference(batches)


async def test_a_race_whose_producer_never_returns_is_closed_after_the_grace(bus: Bus) -> None:
    cfg, _, items, cut = await race_cut_short(bus, seed=6)
    outage = Outage(bus)
    service = DownsampleService(cfg, bus)
    task = asyncio.create_task(service.run())
    try:
        await wait_until(lambda: spans(outage.failed_at, 2 * cfg.idle_flush_ms / 1000), task)
        outage.down = False
        service.expected_records = cut  # type: ignore[attr-defined]
        await until_idle(service, task)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert outage.answered_at[-1] - outage.answered_at[0] >= OUTAGE_GRACE_FACTOR * 0.3
    decoded = [decode_raw(value) for _, value in items[:cut]]
    assert frames_of(await read_all(bus, cfg.frames_topic)) == frames_reference(decoded)
