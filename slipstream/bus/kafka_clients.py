"""Producer and consumer of :class:`slipstream.bus.kafka.KafkaBus`.

Thin wrappers over aiokafka's clients that speak the bus contract
(:mod:`slipstream.bus.base`) and turn aiokafka errors into
:class:`~slipstream.errors.BusError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import (
    CommitFailedError,
    ConsumerStoppedError,
    IllegalOperation,
    IllegalStateError,
    KafkaError,
)
from aiokafka.structs import TopicPartition as KafkaTopicPartition

from slipstream.bus.base import Record, RecordPosition, TopicPartition
from slipstream.errors import BusError

if TYPE_CHECKING:
    from slipstream.bus.kafka import KafkaBus

__all__ = ["KafkaConsumer", "KafkaProducer", "bus_error"]


def bus_error(what: str, exc: BaseException) -> BusError:
    """A :class:`BusError` saying what failed and why."""
    reason = str(exc) or type(exc).__name__
    if not reason.startswith(type(exc).__name__):
        reason = f"{type(exc).__name__}: {reason}"
    error = BusError(f"{what} failed: {reason}")
    error.retriable = bool(getattr(exc, "retriable", False))
    return error


def _kafka_tp(tp: TopicPartition) -> KafkaTopicPartition:
    return KafkaTopicPartition(tp.topic, tp.partition)


def _name(tp: TopicPartition) -> str:
    return f"{tp.topic}[{tp.partition}]"


class KafkaProducer:
    """Producer of a :class:`~slipstream.bus.kafka.KafkaBus`: ``send`` waits for the acks."""

    def __init__(self, bus: KafkaBus, producer: AIOKafkaProducer) -> None:
        self._bus = bus
        self._producer = producer
        self._closed = False

    async def _enqueue(
        self, topic: str, value: bytes, key: bytes | None, partition: int | None
    ) -> Any:
        """Append one record to aiokafka's batch; returns the future of its ack."""
        if self._closed:
            raise BusError("producer is stopped")
        partition = await self._bus.partition_of(topic, key, partition)
        try:
            return await self._producer.send(topic, value, key=key, partition=partition)
        except KafkaError as exc:
            raise bus_error(f"sending to {topic}[{partition}]", exc) from exc

    @staticmethod
    async def _acked(topic: str, future: Any) -> RecordPosition:
        try:
            metadata = await future
        except KafkaError as exc:
            raise bus_error(f"sending to {topic}", exc) from exc
        return RecordPosition(metadata.topic, metadata.partition, metadata.offset)

    async def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        partition: int | None = None,
    ) -> RecordPosition:
        """Store one record; returns its position once the broker acknowledged it."""
        return await self._acked(topic, await self._enqueue(topic, value, key, partition))

    async def send_many(
        self, topic: str, items: Sequence[tuple[bytes | None, bytes]]
    ) -> list[RecordPosition]:
        """Store ``(key, value)`` pairs, pipelined; returns their positions in order."""
        futures = [await self._enqueue(topic, value, key, None) for key, value in items]
        return [await self._acked(topic, future) for future in futures]

    async def stop(self) -> None:
        """Flush pending records and close."""
        if self._closed:
            return
        self._closed = True
        self._bus.forget(self)
        await self._producer.stop()


class KafkaConsumer:
    """Consumer of a :class:`~slipstream.bus.kafka.KafkaBus`; commits are explicit."""

    def __init__(self, bus: KafkaBus, consumer: AIOKafkaConsumer, group_id: str | None) -> None:
        self._bus = bus
        self._consumer = consumer
        self.group_id = group_id
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise BusError("consumer is stopped")

    async def getmany(self, timeout_ms: int = 1000, max_records: int | None = None) -> list[Record]:
        """Records after the current positions, waiting up to ``timeout_ms`` for one."""
        self._check_open()
        if max_records is not None and max_records <= 0:
            raise ValueError("max_records must be positive")
        try:
            batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        except (KafkaError, ConsumerStoppedError) as exc:
            raise bus_error("fetching records", exc) from exc
        return [
            Record(r.topic, r.partition, r.offset, r.key, r.value or b"", r.timestamp)
            for batch in batches.values()
            for r in batch
        ]

    def assignment(self) -> set[TopicPartition]:
        """Partitions currently assigned (empty while a group is rebalancing)."""
        if self._closed:
            return set()
        return {TopicPartition(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Make ``offset`` the next record read from ``tp``."""
        self._check_open()
        if offset < 0:
            raise ValueError("offset must be >= 0")
        try:
            self._consumer.seek(_kafka_tp(tp), offset)
        except IllegalStateError as exc:
            raise BusError(f"{_name(tp)} is not assigned to this consumer") from exc

    async def seek_to_beginning(self, tps: Iterable[TopicPartition] = ()) -> None:
        """Rewind the given partitions (all assigned ones if none) to their first record."""
        self._check_open()
        chosen = [_kafka_tp(tp) for tp in tps]
        try:
            await self._consumer.seek_to_beginning(*chosen)
        except IllegalStateError as exc:
            raise BusError(f"seek_to_beginning: {exc}") from exc
        except KafkaError as exc:
            raise bus_error("seek_to_beginning", exc) from exc

    async def position(self, tp: TopicPartition) -> int:
        """Offset of the next record to read from ``tp``."""
        self._check_open()
        try:
            position: int = await self._consumer.position(_kafka_tp(tp))
        except IllegalStateError as exc:
            raise BusError(f"{_name(tp)} is not assigned to this consumer") from exc
        except KafkaError as exc:
            raise bus_error(f"position of {_name(tp)}", exc) from exc
        return position

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Store the group's next offsets.

        Raises:
            BusError: No group, a partition is not assigned to this member
                (any more), or the group rebalanced meanwhile.
        """
        self._check_open()
        if self.group_id is None:
            raise BusError("commit needs a consumer group")
        if not offsets:
            return
        try:
            await self._consumer.commit({_kafka_tp(tp): offset for tp, offset in offsets.items()})
        except IllegalStateError as exc:
            raise BusError(f"commit refused, partition not assigned to this member: {exc}") from exc
        except CommitFailedError as exc:
            raise BusError("commit failed: the group rebalanced; re-read from committed") from exc
        except KafkaError as exc:
            raise bus_error("commit", exc) from exc

    async def committed(self, tp: TopicPartition) -> int | None:
        """The group's stored next offset for ``tp``, or None (also without a group)."""
        self._check_open()
        if self.group_id is None:
            return None
        try:
            offset: int | None = await self._consumer.committed(_kafka_tp(tp))
        except IllegalOperation:
            return None
        except KafkaError as exc:
            raise bus_error(f"reading the committed offset of {_name(tp)}", exc) from exc
        return offset

    async def end_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Offset one past the last stored record of each partition."""
        self._check_open()
        chosen = [_kafka_tp(tp) for tp in tps]
        if not chosen:
            return {}
        try:
            ends = await self._consumer.end_offsets(chosen)
        except KafkaError as exc:
            raise bus_error("end_offsets", exc) from exc
        return {TopicPartition(tp.topic, tp.partition): offset for tp, offset in ends.items()}

    async def stop(self) -> None:
        """Leave the group and close."""
        if self._closed:
            return
        self._closed = True
        self._bus.forget(self)
        # Tansu numbers a group's first generation 0, and aiokafka only sends
        # LeaveGroup for generation > 0: without this the group would wait a
        # whole session timeout for the member to expire before rebalancing.
        coordinator = getattr(self._consumer, "_coordinator", None)
        generation = getattr(coordinator, "generation", -1)
        member_id = getattr(coordinator, "member_id", "")
        node_id = getattr(coordinator, "coordinator_id", None)
        await self._consumer.stop()
        if self.group_id is not None and generation == 0 and member_id and node_id is not None:
            await self._bus.leave_group(self.group_id, member_id, node_id)
