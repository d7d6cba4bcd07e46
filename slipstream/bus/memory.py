"""In-process bus with Kafka's topic, partition, offset and group semantics.

It backs ``slipstream run`` (no broker needed) and the unit tests.  All of it
lives on one event loop; nothing is persisted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from slipstream.bus.base import (
    OffsetReset,
    Record,
    RecordPosition,
    TopicPartition,
    partition_for,
)
from slipstream.bus.names import check_topic_name
from slipstream.errors import BusError

__all__ = ["MemoryBus"]


class _Partition:
    """One partition's log; the oldest records go once it holds too many bytes."""

    __slots__ = ("bytes", "records", "start")

    def __init__(self) -> None:
        self.records: list[Record] = []
        #: Offset of ``records[0]`` (Kafka's log start offset).
        self.start = 0
        self.bytes = 0

    @property
    def end(self) -> int:
        """Offset the next record will get."""
        return self.start + len(self.records)

    def append(self, record: Record, retention_bytes: int) -> None:
        self.records.append(record)
        self.bytes += len(record.value) + len(record.key or b"")
        if self.bytes > retention_bytes * 1.1 and len(self.records) > 1:
            # Trim in one go, down to the limit, so appends stay O(1) amortised.
            dropped = 0
            while self.bytes > retention_bytes and dropped < len(self.records) - 1:
                old = self.records[dropped]
                self.bytes -= len(old.value) + len(old.key or b"")
                dropped += 1
            del self.records[:dropped]
            self.start += dropped

    def read(self, position: int, stop: int) -> list[Record]:
        """Records with offsets in [position, stop), position >= start."""
        return self.records[position - self.start : stop - self.start]


@dataclass
class _Group:
    members: list[MemoryConsumer] = field(default_factory=list)
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    generation: int = 0


class MemoryBus:
    """A bus that keeps recent records in memory.

    Like a Kafka topic with ``retention.bytes``, each partition keeps its newest
    records up to ``retention_bytes`` of keys and values; older ones are dropped
    and a consumer positioned before the log start continues from it.

    Args:
        default_partitions: Partitions of a topic that is first used without
            :meth:`ensure_topic`.
        retention_bytes: Bytes each partition keeps (default 32 MiB).
    """

    name = "memory"

    def __init__(self, default_partitions: int = 8, retention_bytes: int = 32 * 2**20) -> None:
        if retention_bytes <= 0:
            raise ValueError("retention_bytes must be positive")
        self.default_partitions = default_partitions
        self.retention_bytes = retention_bytes
        self._logs: dict[str, list[_Partition]] = {}
        self._groups: dict[str, _Group] = {}
        self._changed = asyncio.Condition()
        self._clients: list[MemoryProducer | MemoryConsumer] = []
        self._member_ids = itertools.count()

    async def start(self) -> None:
        """Nothing to connect to."""

    async def stop(self) -> None:
        """Stop every producer and consumer made by this bus."""
        for client in list(self._clients):
            await client.stop()

    async def __aenter__(self) -> MemoryBus:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def ensure_topic(self, topic: str, partitions: int) -> None:
        """Create ``topic`` unless it exists."""
        check_topic_name(topic)
        if partitions <= 0:
            raise ValueError("a topic needs at least one partition")
        self._logs.setdefault(topic, [_Partition() for _ in range(partitions)])

    async def partitions(self, topic: str) -> int:
        """Partitions of ``topic``."""
        return len(self._log(topic))

    def _log(self, topic: str) -> list[_Partition]:
        log = self._logs.get(topic)
        if log is None:
            check_topic_name(topic)
            log = self._logs[topic] = [_Partition() for _ in range(self.default_partitions)]
        return log

    async def producer(self) -> MemoryProducer:
        """A producer on this bus."""
        producer = MemoryProducer(self)
        self._clients.append(producer)
        return producer

    async def consumer(
        self,
        topics: Sequence[str],
        *,
        group_id: str | None = None,
        auto_offset_reset: OffsetReset = "earliest",
    ) -> MemoryConsumer:
        """A consumer of ``topics``, in ``group_id`` if given."""
        if auto_offset_reset not in ("earliest", "latest"):
            raise ValueError(f"unknown auto_offset_reset {auto_offset_reset!r}")
        if not topics:
            raise ValueError("a consumer needs at least one topic")
        for topic in topics:
            check_topic_name(topic)
        consumer = MemoryConsumer(self, list(topics), group_id, auto_offset_reset)
        self._clients.append(consumer)
        if group_id is not None:
            group = self._groups.setdefault(group_id, _Group())
            group.members.append(consumer)
            group.generation += 1
        return consumer

    # -- internals used by the clients ---------------------------------------

    async def _append(
        self, topic: str, partition: int | None, key: bytes | None, value: bytes
    ) -> RecordPosition:
        log = self._log(topic)
        if partition is None:
            partition = partition_for(key, len(log)) if key is not None else 0
        if not 0 <= partition < len(log):
            raise BusError(f"topic {topic} has no partition {partition}")
        part = log[partition]
        offset = part.end
        record = Record(topic, partition, offset, key, value, int(time.time() * 1000))
        part.append(record, self.retention_bytes)
        async with self._changed:
            self._changed.notify_all()
        return RecordPosition(topic, partition, offset)

    def _assigned(self, consumer: MemoryConsumer) -> list[TopicPartition]:
        every = [TopicPartition(t, p) for t in consumer.topics for p in range(len(self._log(t)))]
        if consumer.group_id is None:
            return every
        members = self._groups[consumer.group_id].members
        index = members.index(consumer)
        # Round-robin assignment over the sorted partitions, like Kafka's.
        return [tp for i, tp in enumerate(every) if i % len(members) == index]

    def _leave(self, consumer: MemoryConsumer) -> None:
        if consumer in self._clients:
            self._clients.remove(consumer)
        if consumer.group_id is not None:
            group = self._groups[consumer.group_id]
            if consumer in group.members:
                group.members.remove(consumer)
                group.generation += 1


class MemoryProducer:
    """Producer of a :class:`MemoryBus`."""

    def __init__(self, bus: MemoryBus) -> None:
        self._bus = bus
        self._closed = False

    async def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        partition: int | None = None,
    ) -> RecordPosition:
        """Append one record."""
        if self._closed:
            raise BusError("producer is stopped")
        return await self._bus._append(topic, partition, key, value)

    async def send_many(
        self, topic: str, items: Sequence[tuple[bytes | None, bytes]]
    ) -> list[RecordPosition]:
        """Append records in order."""
        return [await self.send(topic, value, key=key) for key, value in items]

    async def stop(self) -> None:
        """Close the producer."""
        self._closed = True
        if self in self._bus._clients:
            self._bus._clients.remove(self)


class MemoryConsumer:
    """Consumer of a :class:`MemoryBus`."""

    def __init__(
        self,
        bus: MemoryBus,
        topics: list[str],
        group_id: str | None,
        auto_offset_reset: OffsetReset,
    ) -> None:
        self._bus = bus
        self.topics = topics
        self.group_id = group_id
        self._reset = auto_offset_reset
        self._positions: dict[TopicPartition, int] = {}
        self._generation = -1
        self._closed = False

    def _sync_assignment(self) -> None:
        # Reassign when the group changed, or (without a group) when topics grew.
        if self.group_id is not None:
            key = self._bus._groups[self.group_id].generation
        else:
            key = sum(len(self._bus._log(t)) for t in self.topics)
        if key == self._generation:
            return
        self._generation = key
        assigned = self._bus._assigned(self)
        positions: dict[TopicPartition, int] = {}
        for tp in assigned:
            # Like Kafka's eager rebalance: a group member restarts every
            # partition, kept or new, from the committed offsets.
            if tp in self._positions and self.group_id is None:
                positions[tp] = self._positions[tp]
                continue
            committed = None
            if self.group_id is not None:
                committed = self._bus._groups[self.group_id].committed.get(tp)
            if committed is not None:
                positions[tp] = committed
            elif self._reset == "earliest":
                positions[tp] = 0
            else:
                positions[tp] = self._bus._log(tp.topic)[tp.partition].end
        self._positions = positions

    def _take(self, max_records: int | None) -> list[Record]:
        out: list[Record] = []
        for tp, position in self._positions.items():
            part = self._bus._log(tp.topic)[tp.partition]
            # Records before the log start are gone (retention): go on from it.
            position = max(position, part.start)
            if position >= part.end:
                continue
            stop = part.end
            if max_records is not None:
                stop = min(stop, position + max_records - len(out))
            out.extend(part.read(position, stop))
            self._positions[tp] = stop
            if max_records is not None and len(out) >= max_records:
                break
        return out

    async def getmany(self, timeout_ms: int = 1000, max_records: int | None = None) -> list[Record]:
        """Records after the current positions, waiting up to ``timeout_ms``."""
        if self._closed:
            raise BusError("consumer is stopped")
        if max_records is not None and max_records <= 0:
            raise ValueError("max_records must be positive")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        condition = self._bus._changed
        while True:
            self._sync_assignment()
            records = self._take(max_records)
            remaining = deadline - loop.time()
            if records or remaining <= 0 or self._closed:
                return records
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow
            # a cancellation that arrives as the wait completes.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining), condition:
                    await condition.wait()

    def assignment(self) -> set[TopicPartition]:
        """Partitions currently assigned (none once stopped)."""
        if self._closed:
            return set()
        self._sync_assignment()
        return set(self._positions)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Set the next offset read from ``tp``."""
        if self._closed:
            raise BusError("consumer is stopped")
        self._sync_assignment()
        if tp not in self._positions:
            raise BusError(f"{tp.topic}[{tp.partition}] is not assigned to this consumer")
        if offset < 0:
            raise ValueError("offset must be >= 0")
        self._positions[tp] = offset

    async def seek_to_beginning(self, tps: Iterable[TopicPartition] = ()) -> None:
        """Rewind partitions to offset 0."""
        for tp in list(tps) or list(self.assignment()):
            self.seek(tp, 0)

    async def position(self, tp: TopicPartition) -> int:
        """Next offset read from ``tp``."""
        if self._closed:
            raise BusError("consumer is stopped")
        self._sync_assignment()
        if tp not in self._positions:
            raise BusError(f"{tp.topic}[{tp.partition}] is not assigned to this consumer")
        return self._positions[tp]

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Store the group's next offsets."""
        if self.group_id is None:
            raise BusError("commit needs a consumer group")
        if self._closed:
            raise BusError("consumer is stopped")
        # Like Kafka: only a member that owns a partition may commit it.
        self._sync_assignment()
        for tp in offsets:
            if tp not in self._positions:
                raise BusError(
                    f"commit refused, partition {tp.topic}[{tp.partition}] "
                    "is not assigned to this member"
                )
        self._bus._groups[self.group_id].committed.update(offsets)

    async def committed(self, tp: TopicPartition) -> int | None:
        """The group's stored next offset for ``tp``."""
        if self.group_id is None:
            return None
        return self._bus._groups[self.group_id].committed.get(tp)

    async def end_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """One past the last offset of each partition."""
        ends: dict[TopicPartition, int] = {}
        for tp in tps:
            log = self._bus._log(tp.topic)
            if not 0 <= tp.partition < len(log):
                raise BusError(
                    f"topic {tp.topic} has partitions 0..{len(log) - 1}; "
                    f"there is no partition {tp.partition}"
                )
            ends[tp] = log[tp.partition].end
        return ends

    async def stop(self) -> None:
        """Leave the group."""
        if not self._closed:
            self._closed = True
            self._bus._leave(self)
