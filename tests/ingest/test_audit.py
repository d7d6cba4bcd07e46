"""``slipstream ingest``: the audit core, and the command against the real broker."""

from __future__ import annotations

import asyncio
import json

import msgpack
import pytest

from downsample.synthetic import synthetic_batches
from ingest.audit import Audit
from ingest.dlq import decode_dead_letter
from slipstream.app.cli import main
from slipstream.bus import Bus
from slipstream.bus.base import Record
from slipstream.records import car_key, encode_raw
from slipstream.testing import unique_name
from slipstream.testing.broker import TansuBroker


def bad_records() -> list[tuple[bytes | None, bytes]]:
    batches = list(synthetic_batches(cars=3, seconds=1, rate_hz=50, seed=2))
    good = [(car_key(b.car), encode_raw(b)) for b in batches]
    obj = msgpack.unpackb(good[0][1])
    wrong_len = batches[1]
    return [
        *good,
        good[4],  # duplicate
        (b"1", msgpack.packb({**obj, "v": 2})),  # unknown version
        (b"1", good[0][1][:-3]),  # truncated msgpack
        (b"177", encode_raw(type(batches[0])("race-1", 177, 0, 0, 50, batches[0].values))),
        (b"9", good[0][1]),  # keyed for another car than it holds
        (b"2", encode_raw(type(wrong_len)("race-1", 2, 99, 0, 50, wrong_len.values[:, :-2]))),
    ]


def test_audit_counts_each_reason() -> None:
    audit = Audit()
    for offset, (key, value) in enumerate(bad_records()):
        audit.feed(Record("t", 0, offset, key, value, 0))
    report = audit.report
    assert report.rejected == {
        "duplicate": 1, "bad_version": 1, "truncated": 1, "unknown_car": 1, "bad_channels": 1,
        "bad_key": 1,
    }  # fmt: skip
    assert report.accepted == 3 * 10
    assert report.samples == 3 * 50
    assert report.cars == {1: 10, 2: 10, 3: 10}


@pytest.mark.kafka
async def test_ingest_command_audits_and_dead_letters(
    kafka_broker: TansuBroker, kafka_bus: Bus, capsys: pytest.CaptureFixture[str]
) -> None:
    topic, dlq = unique_name("audit.raw"), unique_name("audit.dlq")
    await kafka_bus.ensure_topic(topic, 2)
    await kafka_bus.ensure_topic(dlq, 2)
    producer = await kafka_bus.producer()
    await producer.send_many(topic, bad_records())
    args = ["ingest", "--kafka", kafka_broker.bootstrap, "--topic", topic, "--json"]
    code = await asyncio.to_thread(main, [*args, "--dead-letter", "--dlq-topic", dlq])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["accepted"] == 30 and sum(report["rejected"].values()) == 6
    consumer = await kafka_bus.consumer([dlq])
    letters = []
    async with asyncio.timeout(20):
        while len(letters) < 6:
            letters += [decode_dead_letter(r.value) for r in await consumer.getmany(timeout_ms=200)]
    assert sorted(d.reason for d in letters) == sorted(report["rejected"])
    assert all(d.topic == topic and d.value for d in letters)
    code = await asyncio.to_thread(main, [*args, "--strict"])
    assert code == 1
