"""The bus contract, run on both buses: MemoryBus and KafkaBus on a real Tansu broker.

Records, partitions, offsets, seeking; consumer groups are in test_contract_groups.py.
Every test gets a started bus from the ``any_bus`` fixture (tests/conftest.py) and
fresh topic and group names, so the tests share one broker without interfering.
Waiting is always on the event itself (a record arriving, an assignment settling),
bounded by a deadline; never a sleep.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Sequence

import pytest

from slipstream.bus import Bus, Record, RecordPosition, TopicPartition, partition_for
from slipstream.errors import BusError
from slipstream.testing.bus import DEFAULT_TIMEOUT_S, drain

Names = Callable[..., str]


def by_partition(records: Sequence[Record]) -> dict[int, list[Record]]:
    out: dict[int, list[Record]] = defaultdict(list)
    for record in records:
        out[record.partition].append(record)
    return dict(out)


def keys(count: int) -> list[bytes]:
    return [b"car-%d" % i for i in range(count)]


async def test_keyed_records_land_in_kafka_partition(any_bus: Bus, unique_topic: Names) -> None:
    topic = unique_topic("keys")
    await any_bus.ensure_topic(topic, 4)
    producer = await any_bus.producer()
    for key in keys(24):
        position = await producer.send(topic, b"v", key=key)
        assert position.partition == partition_for(key, 4)
    consumer = await any_bus.consumer([topic])
    for record in await drain(consumer, 24):
        assert record.key is not None
        assert record.partition == partition_for(record.key, 4)


@pytest.mark.parametrize(
    ("key", "java_murmur2"),
    [  # The vectors of Apache Kafka's UtilsTest.testMurmur2 (signed Java ints).
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_partition_for_is_kafkas_default_partitioner(key: bytes, java_murmur2: int) -> None:
    # Kafka: Utils.toPositive(murmur2(key)) % partitions.
    positive = java_murmur2 & 0x7FFFFFFF
    assert partition_for(key, 2**31) == positive
    for partitions in (1, 3, 8, 12):
        assert partition_for(key, partitions) == positive % partitions


async def test_offsets_dense_ordered_and_send_returns_stored_position(
    any_bus: Bus, unique_topic: Names
) -> None:
    topic = unique_topic("offsets")
    await any_bus.ensure_topic(topic, 3)
    producer = await any_bus.producer()
    items = [(key, b"value-%d" % i) for i, key in enumerate(keys(7) * 5)]
    positions = await producer.send_many(topic, items[:20])
    positions += [await producer.send(topic, value, key=key) for key, value in items[20:]]

    per_partition: dict[int, list[int]] = defaultdict(list)
    for position in positions:
        assert position.topic == topic
        per_partition[position.partition].append(position.offset)
    for offsets in per_partition.values():
        assert offsets == list(range(len(offsets)))

    consumer = await any_bus.consumer([topic])
    records = await drain(consumer, len(items))
    stored = {(r.partition, r.offset): (r.key, r.value) for r in records}
    assert stored == {
        (p.partition, p.offset): item for p, item in zip(positions, items, strict=True)
    }
    for partition, got in by_partition(records).items():
        assert [r.offset for r in got] == list(range(len(got)))
        sent = [
            item[1] for p, item in zip(positions, items, strict=True) if p.partition == partition
        ]
        assert [r.value for r in got] == sent
    assert all(r.timestamp_ms > 0 for r in records)


async def test_explicit_partition_and_keyless(any_bus: Bus, unique_topic: Names) -> None:
    topic = unique_topic("explicit")
    await any_bus.ensure_topic(topic, 3)
    producer = await any_bus.producer()
    assert await producer.send(topic, b"a", key=b"car-1", partition=2) == RecordPosition(
        topic, 2, 0
    )
    assert await producer.send(topic, b"b") == RecordPosition(topic, 0, 0)
    with pytest.raises(BusError, match="partition 3"):
        await producer.send(topic, b"c", partition=3)
    with pytest.raises(BusError):
        await producer.send(topic, b"c", key=b"car-1", partition=-1)


async def test_getmany_times_out_empty_then_wakes_on_a_record(
    any_bus: Bus, unique_topic: Names
) -> None:
    topic = unique_topic("wake")
    await any_bus.ensure_topic(topic, 2)
    consumer = await any_bus.consumer([topic])
    assert await consumer.getmany(timeout_ms=200) == []

    producer = await any_bus.producer()
    await producer.send(topic, b"first", key=b"car-1")
    assert [r.value for r in await drain(consumer, 1)] == [b"first"]
    assert await consumer.getmany(timeout_ms=200) == []

    # A getmany that would wait a minute returns as soon as a record arrives.
    waiting = asyncio.create_task(consumer.getmany(timeout_ms=60_000))
    await asyncio.sleep(0)  # let it start waiting (a yield, not a delay)
    await producer.send(topic, b"second", key=b"car-2")
    records = await asyncio.wait_for(waiting, DEFAULT_TIMEOUT_S)
    assert [r.value for r in records] == [b"second"]


async def test_max_records(any_bus: Bus, unique_topic: Names) -> None:
    topic = unique_topic("max")
    await any_bus.ensure_topic(topic, 1)
    producer = await any_bus.producer()
    await producer.send_many(topic, [(None, b"%d" % i) for i in range(10)])
    consumer = await any_bus.consumer([topic])
    seen: list[int] = []
    async with asyncio.timeout(DEFAULT_TIMEOUT_S):
        while len(seen) < 10:
            batch = await consumer.getmany(timeout_ms=500, max_records=3)
            assert len(batch) <= 3
            seen += [r.offset for r in batch]
    assert seen == list(range(10))


async def test_seek_position_and_end_offsets(any_bus: Bus, unique_topic: Names) -> None:
    topic = unique_topic("seek")
    await any_bus.ensure_topic(topic, 2)
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    producer = await any_bus.producer()
    await producer.send_many(topic, [(None, b"%d" % i) for i in range(5)])  # keyless: partition 0
    consumer = await any_bus.consumer([topic])
    assert await consumer.end_offsets([tp0, tp1]) == {tp0: 5, tp1: 0}
    assert await consumer.position(tp0) == 0

    await drain(consumer, 5)
    assert await consumer.position(tp0) == 5
    assert await consumer.position(tp1) == 0

    consumer.seek(tp0, 3)
    assert await consumer.position(tp0) == 3
    assert [r.offset for r in await drain(consumer, 2)] == [3, 4]

    await consumer.seek_to_beginning([tp0])
    assert await consumer.position(tp0) == 0
    assert [r.offset for r in await drain(consumer, 5)] == [0, 1, 2, 3, 4]

    await consumer.seek_to_beginning()
    assert [r.offset for r in await drain(consumer, 5)] == [0, 1, 2, 3, 4]

    await producer.send(topic, b"x", partition=1)
    assert await consumer.end_offsets([tp0, tp1]) == {tp0: 5, tp1: 1}
    with pytest.raises(BusError, match="no partition 9"):
        await consumer.end_offsets([TopicPartition(topic, 9)])


async def test_seek_and_position_of_unassigned_partition_fail(
    any_bus: Bus, unique_topic: Names
) -> None:
    topic = unique_topic("unassigned")
    await any_bus.ensure_topic(topic, 2)
    consumer = await any_bus.consumer([topic])
    stranger = TopicPartition(topic, 5)
    with pytest.raises(BusError, match="not assigned"):
        consumer.seek(stranger, 0)
    with pytest.raises(BusError, match="not assigned"):
        await consumer.position(stranger)
    with pytest.raises(ValueError):
        consumer.seek(TopicPartition(topic, 0), -1)


async def test_earliest_and_latest_for_a_new_consumer(any_bus: Bus, unique_topic: Names) -> None:
    topic = unique_topic("reset")
    await any_bus.ensure_topic(topic, 2)
    producer = await any_bus.producer()
    await producer.send_many(topic, [(key, b"old") for key in keys(6)])
    earliest = await any_bus.consumer([topic], auto_offset_reset="earliest")
    latest = await any_bus.consumer([topic], auto_offset_reset="latest")
    # Positions are resolved lazily; asking for them pins "latest" to now.
    ends = await latest.end_offsets(latest.assignment())
    for tp in latest.assignment():
        assert await latest.position(tp) == ends[tp]
        assert await earliest.position(tp) == 0

    await producer.send(topic, b"new", key=b"car-1")
    assert [r.value for r in await drain(latest, 1)] == [b"new"]
    assert await latest.getmany(timeout_ms=200) == []
    assert sorted(r.value for r in await drain(earliest, 7)) == [b"new"] + [b"old"] * 6


async def test_consumer_without_group_sees_every_partition(
    any_bus: Bus, unique_topic: Names
) -> None:
    first, second = unique_topic("all"), unique_topic("all")
    await any_bus.ensure_topic(first, 3)
    await any_bus.ensure_topic(second, 2)
    consumer = await any_bus.consumer([first, second])
    expected = {TopicPartition(first, p) for p in range(3)}
    expected |= {TopicPartition(second, p) for p in range(2)}
    assert consumer.assignment() == expected
    assert await consumer.committed(TopicPartition(first, 0)) is None
    with pytest.raises(BusError, match="group"):
        await consumer.commit({TopicPartition(first, 0): 1})


async def test_ensure_topic_is_idempotent_and_partitions(any_bus: Bus, unique_topic: Names) -> None:
    topic = unique_topic("ensure")
    await any_bus.ensure_topic(topic, 5)
    await any_bus.ensure_topic(topic, 5)
    await any_bus.ensure_topic(topic, 2)  # exists: keeps its 5 partitions
    assert await any_bus.partitions(topic) == 5
    with pytest.raises(ValueError):
        await any_bus.ensure_topic(unique_topic("ensure"), 0)


@pytest.mark.parametrize("name", ["", ".", "..", "bad name", "raw/1", "é", "x" * 250])
async def test_topic_names_follow_kafkas_rule(any_bus: Bus, name: str) -> None:
    # Tansu would accept these; Apache Kafka would not, so neither bus does.
    with pytest.raises(ValueError, match="invalid topic name"):
        await any_bus.ensure_topic(name, 1)
    producer = await any_bus.producer()
    with pytest.raises(ValueError, match="invalid topic name"):
        await producer.send(name, b"v")
    with pytest.raises(ValueError, match="invalid topic name"):
        await any_bus.consumer([name])


async def test_arguments_are_checked(any_bus: Bus, unique_topic: Names) -> None:
    topic = unique_topic("args")
    with pytest.raises(ValueError):
        await any_bus.consumer([])
    with pytest.raises(ValueError):
        await any_bus.consumer([topic], auto_offset_reset="newest")  # type: ignore[arg-type]
    consumer = await any_bus.consumer([topic])
    with pytest.raises(ValueError):
        await consumer.getmany(timeout_ms=10, max_records=0)


async def test_stopped_consumer(any_bus: Bus, unique_topic: Names) -> None:
    topic, group = unique_topic("stopped"), unique_topic("group")
    await any_bus.ensure_topic(topic, 1)
    tp = TopicPartition(topic, 0)
    for consumer in (
        await any_bus.consumer([topic]),
        await any_bus.consumer([topic], group_id=group),
    ):
        await consumer.stop()
        await consumer.stop()  # twice is fine
        assert consumer.assignment() == set()
        with pytest.raises(BusError, match="stopped"):
            await consumer.getmany(timeout_ms=10)
        with pytest.raises(BusError, match="stopped"):
            consumer.seek(tp, 0)
        with pytest.raises(BusError, match="stopped"):
            await consumer.position(tp)


async def test_stop_closes_clients(any_bus: Bus, unique_topic: Names) -> None:
    topic = unique_topic("stop")
    producer = await any_bus.producer()
    consumer = await any_bus.consumer([topic])
    await any_bus.stop()
    with pytest.raises(BusError):
        await producer.send(topic, b"late")
    with pytest.raises(BusError):
        await consumer.getmany(timeout_ms=10)


async def test_concurrent_sends_get_unique_dense_offsets(any_bus: Bus, unique_topic: Names) -> None:
    topic = unique_topic("concurrent")
    await any_bus.ensure_topic(topic, 2)
    producer = await any_bus.producer()
    positions = await asyncio.gather(
        *(producer.send(topic, b"%d" % i, key=b"car-%d" % (i % 5)) for i in range(60)),
        *(producer.send_many(topic, [(b"car-9", b"m%d" % i)] * 3) for i in range(5)),
    )
    flat = [p for item in positions for p in (item if isinstance(item, list) else [item])]
    per_partition: dict[int, list[int]] = defaultdict(list)
    for position in flat:
        per_partition[position.partition].append(position.offset)
    for offsets in per_partition.values():
        assert sorted(offsets) == list(range(len(offsets)))
    consumer = await any_bus.consumer([topic])
    stored = {(r.partition, r.offset): r.value for r in await drain(consumer, 75)}
    for i, position in enumerate(flat[:60]):
        assert stored[(position.partition, position.offset)] == b"%d" % i


async def test_values_and_keys_travel_byte_exact(any_bus: Bus, unique_topic: Names) -> None:
    topic = unique_topic("bytes")
    await any_bus.ensure_topic(topic, 1)
    producer = await any_bus.producer()
    big = bytes(range(256)) * 1024  # 256 KiB, larger than any raw batch
    items: list[tuple[bytes | None, bytes]] = [
        (None, b""),
        (b"", b"\x00"),
        (b"\xff\x00key", big),
        (b"44", b"\x80\x81"),
    ]
    for key, value in items:
        await producer.send(topic, value, key=key, partition=0)
    consumer = await any_bus.consumer([topic])
    assert [(r.key, r.value) for r in await drain(consumer, 4)] == items
