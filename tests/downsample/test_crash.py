"""kill -9 a real ``slipstream downsample`` process mid-race, restart it, compare the frames."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from downsample.synthetic import synthetic_batches
from slipstream.bus import Bus
from slipstream.records import Frame, RawBatch, car_key, decode_frame, encode_raw
from slipstream.testing import unique_name
from slipstream.testing.broker import TansuBroker
from tests.downsample.reference import frames_reference

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]


def start(bootstrap: str, names: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable, "-m", "slipstream", "--log-level", "warning", "downsample",
            "--kafka", bootstrap, "--partitions", "4", "--group-id", names["group"],
            "--raw-topic", names["raw"], "--frames-topic", names["frames"],
            "--dlq-topic", names["dlq"], "--idle-flush-ms", "1500", "--commit-interval-ms", "200",
        ],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


class FrameReader:
    """Reads the frames topic as it grows; keeps every frame and checks repeats are identical."""

    def __init__(self, bus: Bus, topic: str) -> None:
        self.bus = bus
        self.topic = topic
        self.frames: dict[tuple[str, int, int], Frame] = {}
        self.repeats = 0

    async def until(self, count: int, process: subprocess.Popen[bytes], timeout_s: float) -> None:
        consumer = await self.bus.consumer([self.topic])
        try:
            async with asyncio.timeout(timeout_s):
                while len(self.frames) < count:
                    assert process.poll() is None, process.stderr.read() if process.stderr else ""
                    for record in await consumer.getmany(timeout_ms=200):
                        frame = decode_frame(record.value)
                        key = (frame.race, frame.car, frame.tick)
                        if key in self.frames:
                            self.repeats += 1
                            assert self.frames[key] == frame, f"re-emitted {key} differs"
                        self.frames[key] = frame
        finally:
            await consumer.stop()


def stream(batches: list[RawBatch], seed: int) -> list[tuple[bytes | None, bytes]]:
    """The batches, re-ordered within ~300 ms, with duplicates and corrupt records."""
    rng = np.random.default_rng(seed)
    order = np.argsort(np.arange(len(batches)) + rng.integers(0, 20, len(batches)), kind="stable")
    items: list[tuple[bytes | None, bytes]] = []
    for i in order:
        b = batches[int(i)]
        data = encode_raw(b)
        items.append((car_key(b.car), data))
        roll = rng.random()
        if roll < 0.03:
            items.append((car_key(b.car), data))
        elif roll < 0.06:
            items.append((car_key(b.car), data[:-9]))
    return items


async def test_kill_9_mid_race_then_restart_gives_the_uninterrupted_frames(
    kafka_broker: TansuBroker, kafka_bus: Bus
) -> None:
    names = {k: unique_name(f"crash.{k}") for k in ("group", "raw", "frames", "dlq")}
    for topic in ("raw", "frames", "dlq"):
        await kafka_bus.ensure_topic(names[topic], 4)
    batches = list(synthetic_batches(cars=8, seconds=12, rate_hz=100, seed=21, dropout_rate=0.02))
    items = stream(batches, 21)
    want = frames_reference(batches)
    producer = await kafka_bus.producer()
    half = len(items) // 2
    for i in range(0, half, 200):
        await producer.send_many(names["raw"], items[i : min(i + 200, half)])

    reader = FrameReader(kafka_bus, names["frames"])
    first = start(kafka_broker.bootstrap, names)
    try:
        # Mid-race: a good part of the first half's frames are out, a checkpoint (and so
        # a commit) has been made, and the last windows are still open.
        await reader.until(len(want) // 4, first, timeout_s=60)
        await kafka_bus.ensure_topic(f"slipstream.checkpoints.{names['group']}", 4)
        checkpoints = await kafka_bus.consumer([f"slipstream.checkpoints.{names['group']}"])
        try:
            async with asyncio.timeout(30):
                while not await checkpoints.getmany(timeout_ms=100):
                    assert first.poll() is None
        finally:
            await checkpoints.stop()
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    assert first.returncode == -signal.SIGKILL
    before_restart = len(reader.frames)

    for i in range(half, len(items), 200):
        await producer.send_many(names["raw"], items[i : i + 200])
    second = start(kafka_broker.bootstrap, names)
    try:
        await reader.until(len(want), second, timeout_s=120)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(20)
    err = second.stderr.read().decode() if second.stderr else ""
    assert second.returncode == 0, err
    print(f"frames before kill {before_restart}, re-emitted after restart {reader.repeats}")
    assert before_restart < len(want)
    assert reader.frames == want
