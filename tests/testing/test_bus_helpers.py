"""drain() and settle() on the in-process bus: they fail loudly instead of hanging."""

from __future__ import annotations

import pytest

from slipstream.bus import MemoryBus, TopicPartition
from slipstream.testing.bus import drain, settle


async def test_drain_reads_exactly_count_or_fails() -> None:
    async with MemoryBus() as bus:
        await bus.ensure_topic("t", 1)
        producer = await bus.producer()
        await producer.send_many("t", [(None, b"a"), (None, b"b"), (None, b"c")])
        consumer = await bus.consumer(["t"])
        assert [r.value for r in await drain(consumer, 2 + 1)] == [b"a", b"b", b"c"]
        with pytest.raises(TimeoutError):
            await drain(consumer, 1, timeout_s=0.2)
        await consumer.seek_to_beginning()
        with pytest.raises(AssertionError, match="expected 2 records, read 3"):
            await drain(consumer, 2)


async def test_settle_splits_or_fails() -> None:
    async with MemoryBus() as bus:
        await bus.ensure_topic("t", 2)
        every = {TopicPartition("t", 0), TopicPartition("t", 1)}
        members = [await bus.consumer(["t"], group_id="g") for _ in range(2)]
        first, second = await settle(members, every)
        assert first | second == every and not first & second
        with pytest.raises(TimeoutError):
            await settle(members, every | {TopicPartition("t", 2)}, timeout_s=0.3)
        producer = await bus.producer()
        await producer.send("t", b"x")
        with pytest.raises(AssertionError, match="read records"):
            await settle(members, every | {TopicPartition("t", 2)})
