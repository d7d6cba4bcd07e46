"""The bus contract for consumer groups, on both buses (see test_contract.py).

Kafka's group protocol is asynchronous: members join and rebalance inside
``getmany``; ``settle`` polls them until the partitions are split, before any
record is produced, so every test is deterministic on both buses.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Sequence

import pytest

from slipstream.bus import Bus, Record, TopicPartition
from slipstream.errors import BusError
from slipstream.testing.bus import DEFAULT_TIMEOUT_S, drain, settle

Names = Callable[..., str]


def by_partition(records: Sequence[Record]) -> dict[int, list[Record]]:
    out: dict[int, list[Record]] = defaultdict(list)
    for record in records:
        out[record.partition].append(record)
    return dict(out)


def keys(count: int) -> list[bytes]:
    return [b"car-%d" % i for i in range(count)]


async def test_two_members_split_partitions_and_see_each_record_once(
    any_bus: Bus, unique_topic: Names
) -> None:
    topic, group = unique_topic("split"), unique_topic("group")
    await any_bus.ensure_topic(topic, 4)
    members = [await any_bus.consumer([topic], group_id=group) for _ in range(2)]
    every = {TopicPartition(topic, p) for p in range(4)}
    assignments = await settle(members, every)

    producer = await any_bus.producer()
    positions = await producer.send_many(topic, [(key, b"v") for key in keys(40)])
    counts = [
        sum(1 for p in positions if TopicPartition(topic, p.partition) in a) for a in assignments
    ]
    got = await asyncio.gather(*(drain(m, n) for m, n in zip(members, counts, strict=True)))
    for member_records, assignment in zip(got, assignments, strict=True):
        assert {TopicPartition(r.topic, r.partition) for r in member_records} <= assignment
    seen = [(r.partition, r.offset) for records in got for r in records]
    assert sorted(seen) == sorted((p.partition, p.offset) for p in positions)
    assert not any(await asyncio.gather(*(m.getmany(timeout_ms=200) for m in members)))


async def test_survivor_takes_over_from_committed_offsets(
    any_bus: Bus, unique_topic: Names
) -> None:
    topic, group = unique_topic("takeover"), unique_topic("group")
    await any_bus.ensure_topic(topic, 4)
    stays, leaves = [await any_bus.consumer([topic], group_id=group) for _ in range(2)]
    every = {TopicPartition(topic, p) for p in range(4)}
    kept, lost = await settle([stays, leaves], every)

    producer = await any_bus.producer()
    # Ten records in every partition.
    await producer.send_many(topic, [(None, b"old") for _ in range(10)])
    for partition in range(1, 4):
        for _ in range(10):
            await producer.send(topic, b"old", partition=partition)

    await drain(stays, 10 * len(kept))
    await stays.commit({tp: 10 for tp in kept})
    # The leaving member reads everything but commits only up to offset 4.
    await drain(leaves, 10 * len(lost))
    await leaves.commit({tp: 4 for tp in lost})
    for tp in lost:
        assert await stays.committed(tp) == 4
    await leaves.stop()

    # The survivor takes over: it reads what the leaver had not committed
    # (offsets 4..9 of each inherited partition) and nothing committed.
    inherited = by_partition(await drain(stays, 6 * len(lost)))
    assert stays.assignment() == every
    assert {TopicPartition(topic, p) for p in inherited} == lost
    for offsets in inherited.values():
        assert [r.offset for r in offsets] == list(range(4, 10))

    for partition in range(4):
        await producer.send(topic, b"new", partition=partition)
    fresh = await drain(stays, 4)
    assert sorted((r.partition, r.offset, r.value) for r in fresh) == [
        (p, 10, b"new") for p in range(4)
    ]
    assert await stays.getmany(timeout_ms=200) == []


async def test_rebalance_restarts_kept_partitions_from_committed(
    any_bus: Bus, unique_topic: Names
) -> None:
    # Kafka's rebalance resets every position of a member to the committed
    # offsets: records read but not committed are read again (at least once).
    topic, group = unique_topic("rebalance"), unique_topic("group")
    await any_bus.ensure_topic(topic, 2)
    every = {TopicPartition(topic, p) for p in range(2)}
    first = await any_bus.consumer([topic], group_id=group)
    await settle([first], every)
    producer = await any_bus.producer()
    for partition in (0, 1):
        for _ in range(5):
            await producer.send(topic, b"v", partition=partition)
    await drain(first, 10)
    await first.commit({TopicPartition(topic, 0): 3})

    second = await any_bus.consumer([topic], group_id=group)
    seen: list[tuple[int, int]] = []
    async with asyncio.timeout(DEFAULT_TIMEOUT_S):
        # Until the two members split the partitions and every record from
        # the committed offsets (p0: 3, p1: none) on is read again.
        while len(seen) < 2 + 5 or not (first.assignment() and second.assignment()):
            batches = await asyncio.gather(*(c.getmany(timeout_ms=200) for c in (first, second)))
            seen += [(r.partition, r.offset) for batch in batches for r in batch]
    assert sorted(seen) == [(0, 3), (0, 4)] + [(1, offset) for offset in range(5)]
    assert first.assignment() | second.assignment() == every


async def test_new_member_resumes_at_committed_offsets(any_bus: Bus, unique_topic: Names) -> None:
    topic, group = unique_topic("resume"), unique_topic("group")
    await any_bus.ensure_topic(topic, 2)
    producer = await any_bus.producer()
    await producer.send_many(topic, [(None, b"%d" % i) for i in range(6)])
    for i in range(6):
        await producer.send(topic, b"%d" % i, partition=1)

    first = await any_bus.consumer([topic], group_id=group)
    await drain(first, 12)
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    assert await first.committed(tp0) is None
    await first.commit({tp0: 4, tp1: 2})
    assert await first.committed(tp0) == 4
    await first.stop()

    second = await any_bus.consumer([topic], group_id=group, auto_offset_reset="latest")
    got = by_partition(await drain(second, 2 + 4))
    assert [r.offset for r in got[0]] == [4, 5]
    assert [r.offset for r in got[1]] == [2, 3, 4, 5]
    assert await second.committed(tp1) == 2


async def test_commit_of_unassigned_partition_fails(any_bus: Bus, unique_topic: Names) -> None:
    topic, group = unique_topic("commit"), unique_topic("group")
    await any_bus.ensure_topic(topic, 1)
    member = await any_bus.consumer([topic], group_id=group)
    await settle([member], {TopicPartition(topic, 0)})
    with pytest.raises(BusError, match="not assigned"):
        await member.commit({TopicPartition(unique_topic("other"), 0): 1})


async def test_consumer_of_two_topics_reads_both(any_bus: Bus, unique_topic: Names) -> None:
    frames, events, group = unique_topic("frames"), unique_topic("events"), unique_topic("g")
    await any_bus.ensure_topic(frames, 2)
    await any_bus.ensure_topic(events, 1)
    producer = await any_bus.producer()
    await producer.send_many(frames, [(key, b"frame") for key in keys(6)])
    await producer.send(events, b"event", key=b"race-1")
    plain = await any_bus.consumer([frames, events])
    member = await any_bus.consumer([frames, events], group_id=group)
    for consumer in (plain, member):
        records = await drain(consumer, 7)
        assert (
            sorted((r.topic, r.value) for r in records)
            == [(events, b"event")] + [(frames, b"frame")] * 6
        )


async def test_group_member_with_latest_starts_at_the_end(
    any_bus: Bus, unique_topic: Names
) -> None:
    topic, group = unique_topic("latest"), unique_topic("group")
    await any_bus.ensure_topic(topic, 2)
    producer = await any_bus.producer()
    await producer.send_many(topic, [(key, b"old") for key in keys(6)])
    member = await any_bus.consumer([topic], group_id=group, auto_offset_reset="latest")
    await settle([member], {TopicPartition(topic, p) for p in range(2)})
    ends = await member.end_offsets(member.assignment())
    for tp in member.assignment():
        assert await member.position(tp) == ends[tp]
        assert await member.committed(tp) is None
    await producer.send(topic, b"new", key=b"car-3")
    assert [r.value for r in await drain(member, 1)] == [b"new"]
