"""The bus contract: topics, partitions by key, offsets, consumer groups, seek.

Two implementations honour it (and one contract test suite checks both):
:class:`slipstream.bus.memory.MemoryBus`, in process, for ``slipstream run``
and unit tests; and :class:`slipstream.bus.kafka.KafkaBus` on aiokafka.

Semantics follow Kafka's:

* A topic has a fixed number of partitions; a record with a key goes to
  partition ``murmur2(key) & 0x7fffffff % partitions`` (Kafka's default
  partitioner, :mod:`slipstream.bus.partitioner`), so both buses put a car in
  the same partition.
* Offsets count from 0 per partition; a record's offset never changes.
* ``send`` returns once the record is stored (acknowledged): what comes
  back is its position.
* A consumer either joins a group (partitions are shared among the group's
  members and rebalanced as members come and go; positions start at the
  group's committed offsets) or has no group and is assigned every partition
  of its topics.  With no committed offset it starts at the beginning
  (``auto_offset_reset="earliest"``) or at the end (``"latest"``).
* ``commit`` stores, per partition, the offset of the *next* record to read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol, runtime_checkable

from slipstream.bus.partitioner import partition_for

__all__ = [
    "Bus",
    "Consumer",
    "OffsetReset",
    "Producer",
    "Record",
    "RecordPosition",
    "TopicPartition",
    "partition_for",
]

OffsetReset = Literal["earliest", "latest"]


class TopicPartition(NamedTuple):
    """A partition of a topic."""

    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class RecordPosition:
    """Where a sent record was stored."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Record:
    """A record read from the bus.

    Attributes:
        timestamp_ms: Broker or producer timestamp, milliseconds since the epoch.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int


@runtime_checkable
class Producer(Protocol):
    """Writes records; ``send`` returns when the bus has stored the record."""

    async def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        partition: int | None = None,
    ) -> RecordPosition:
        """Store one record.  Without ``partition`` the key decides (see module doc)."""
        ...

    async def send_many(
        self, topic: str, items: Sequence[tuple[bytes | None, bytes]]
    ) -> list[RecordPosition]:
        """Store ``(key, value)`` pairs, pipelined; returns once all are stored, in order."""
        ...

    async def stop(self) -> None:
        """Flush and close."""
        ...


@runtime_checkable
class Consumer(Protocol):
    """Reads records from the partitions assigned to it."""

    async def getmany(self, timeout_ms: int = 1000, max_records: int | None = None) -> list[Record]:
        """Records after the current positions, waiting up to ``timeout_ms`` for one.

        Returns an empty list on timeout.  Records of one partition come in
        offset order.
        """
        ...

    def assignment(self) -> set[TopicPartition]:
        """Partitions currently assigned to this consumer."""
        ...

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Make ``offset`` the next record read from ``tp``."""
        ...

    async def seek_to_beginning(self, tps: Iterable[TopicPartition] = ()) -> None:
        """Rewind the given partitions (all assigned ones if none) to their first record."""
        ...

    async def position(self, tp: TopicPartition) -> int:
        """Offset of the next record to read from ``tp``."""
        ...

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Store the group's next offsets (needs a group)."""
        ...

    async def committed(self, tp: TopicPartition) -> int | None:
        """The group's stored next offset for ``tp``, or None."""
        ...

    async def end_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Offset one past the last stored record of each partition."""
        ...

    async def stop(self) -> None:
        """Leave the group and close."""
        ...


@runtime_checkable
class Bus(Protocol):
    """A log of partitioned topics: the contract both buses implement."""

    name: str

    async def start(self) -> None:
        """Connect; raises :class:`~slipstream.errors.BusUnreachableError` on failure."""
        ...

    async def stop(self) -> None:
        """Close every producer and consumer made by this bus."""
        ...

    async def ensure_topic(self, topic: str, partitions: int) -> None:
        """Create ``topic`` with ``partitions`` partitions unless it exists."""
        ...

    async def partitions(self, topic: str) -> int:
        """Number of partitions of an existing topic."""
        ...

    async def producer(self) -> Producer:
        """A started producer."""
        ...

    async def consumer(
        self,
        topics: Sequence[str],
        *,
        group_id: str | None = None,
        auto_offset_reset: OffsetReset = "earliest",
    ) -> Consumer:
        """A started consumer of ``topics`` (see module doc for groups)."""
        ...
