"""The in-process bus keeps a bounded log per partition, like Kafka's retention.bytes."""

from __future__ import annotations

from slipstream.bus import MemoryBus, TopicPartition


async def test_old_records_are_dropped_and_offsets_keep_counting() -> None:
    bus = MemoryBus(default_partitions=1, retention_bytes=1000)
    producer = await bus.producer()
    for i in range(100):
        position = await producer.send("t", bytes([i]) * 100)
        assert position.offset == i
    tp = TopicPartition("t", 0)
    consumer = await bus.consumer(["t"])
    ends = await consumer.end_offsets([tp])
    assert ends[tp] == 100
    records = await consumer.getmany(timeout_ms=0)
    # About retention_bytes are kept, the newest ones, offsets unchanged.
    assert 5 <= len(records) <= 11
    assert [r.offset for r in records] == list(range(100 - len(records), 100))
    assert all(r.value == bytes([r.offset]) * 100 for r in records)
    await bus.stop()


async def test_a_consumer_behind_the_log_start_continues_from_it() -> None:
    bus = MemoryBus(default_partitions=1, retention_bytes=500)
    producer = await bus.producer()
    consumer = await bus.consumer(["t"], group_id="g")
    await producer.send("t", b"x" * 100)
    first = await consumer.getmany(timeout_ms=0)
    assert [r.offset for r in first] == [0]
    for _ in range(20):
        await producer.send("t", b"y" * 100)
    later = await consumer.getmany(timeout_ms=0)
    assert later and later[0].offset > 1
    assert [r.offset for r in later] == list(range(later[0].offset, 21))
    await bus.stop()
