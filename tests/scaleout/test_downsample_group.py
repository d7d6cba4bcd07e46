"""Downsamplers as one consumer group: one is killed (-9) and one added mid-race.

The frames topic must end up holding every frame of the race exactly as one
uninterrupted downsampler makes them: re-emitted frames (the price of
at-least-once reading after a kill) are identical, so de-duplicating by
(race, car, tick) leaves the complete, correct output.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from downsample.synthetic import synthetic_batches
from slipstream.bus import Bus
from slipstream.testing import unique_name
from slipstream.testing.broker import TansuBroker
from tests.downsample.reference import frames_reference
from tests.downsample.test_crash import FrameReader, stream
from tests.scaleout.helpers import ROOT, env_int, stop

pytestmark = pytest.mark.kafka

#: Above the longest rebalance pause (session timeout 6 s of the KafkaBus defaults):
#: a member that hears nothing during a rebalance must not take the silence for the
#: end of the race and close half-filled windows (docs/deploy.md, consumer groups).
IDLE_FLUSH_MS = 8000


def start(bootstrap: str, names: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable, "-m", "slipstream", "--log-level", "warning", "downsample",
            "--kafka", bootstrap, "--partitions", "4", "--group-id", names["group"],
            "--raw-topic", names["raw"], "--frames-topic", names["frames"],
            "--dlq-topic", names["dlq"], "--idle-flush-ms", str(IDLE_FLUSH_MS),
            "--commit-interval-ms", "200",
        ],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


async def test_group_of_downsamplers_loses_a_member_and_gains_one_mid_race(
    kafka_broker: TansuBroker, kafka_bus: Bus
) -> None:
    names = {k: unique_name(f"group.{k}") for k in ("group", "raw", "frames", "dlq")}
    for topic in ("raw", "frames", "dlq"):
        await kafka_bus.ensure_topic(names[topic], 4)
    seconds = env_int("DOWNSAMPLE_SECONDS", 12)
    batches = list(
        synthetic_batches(cars=8, seconds=seconds, rate_hz=100, seed=21, dropout_rate=0.02)
    )
    items = stream(batches, 21)
    want = frames_reference(batches)
    producer = await kafka_bus.producer()
    thirds = [0, len(items) // 3, 2 * len(items) // 3, len(items)]

    async def feed(part: int) -> None:
        for i in range(thirds[part], thirds[part + 1], 200):
            await producer.send_many(names["raw"], items[i : min(i + 200, thirds[part + 1])])

    reader = FrameReader(kafka_bus, names["frames"])
    first, second = start(kafka_broker.bootstrap, names), start(kafka_broker.bootstrap, names)
    third = None
    try:
        await feed(0)
        # Mid-race: the group has made frames of the first third.
        await reader.until(len(want) // 6, second, timeout_s=60)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        killed_with = len(reader.frames)
        await feed(1)
        third = start(kafka_broker.bootstrap, names)
        await feed(2)
        await reader.until(len(want), second, timeout_s=120)
        assert third.poll() is None, third.stderr.read() if third.stderr else ""
    finally:
        stop([p for p in (first, second, third) if p is not None], timeout_s=20)
    assert first.returncode == -signal.SIGKILL
    for process in (second, third):
        assert process is not None
        err = process.stderr.read().decode() if process.stderr else ""
        assert process.returncode == 0, err
    print(
        f"{len(want)} frames; {killed_with} out when one member was killed; "
        f"{reader.repeats} re-emitted (identical) after the rebalances"
    )
    assert killed_with < len(want)
    assert reader.frames == want
