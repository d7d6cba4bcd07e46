"""Producer and consumer of :class:`slipstream.bus.kafka.KafkaBus`.

Thin wrappers over aiokafka's clients that speak the bus contract
(:mod:`slipstream.bus.base`) and turn aiokafka errors into
:class:`~slipstream.errors.BusError`.  They see their bus only through
:class:`ClientOwner`, so this module does not import the bus that imports it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import (
    CommitFailedError,
    ConsumerStoppedError,
    IllegalStateError,
    KafkaError,
)
from aiokafka.structs import TopicPartition as KafkaTopicPartition

from slipstream.bus.base import Record, RecordPosition, TopicPartition
from slipstream.errors import BusError

__all__ = ["ClientOwner", "KafkaConsumer", "KafkaProducer", "bus_error"]

_T = TypeVar("_T")


class _Timeouts(Protocol):
    @property
    def request_timeout_ms(self) -> int: ...


class ClientOwner(Protocol):
    """What a client needs of the bus that made it (a :class:`~slipstream.bus.kafka.KafkaBus`)."""

    @property
    def bootstrap(self) -> str:
        """The bootstrap ``HOST:PORT``, for error messages."""
        ...

    @property
    def settings(self) -> _Timeouts:
        """Client settings; ``request_timeout_ms`` bounds a request."""
        ...

    async def partition_of(self, topic: str, key: bytes | None, partition: int | None) -> int:
        """The partition a record goes to; checks that the topic and partition exist."""
        ...

    async def leave_group(self, group_id: str, member_id: str, node_id: int) -> None:
        """Send LeaveGroup for a member (best effort)."""
        ...

    def forget(self, client: KafkaProducer | KafkaConsumer) -> None:
        """Called by a client when it stops."""
        ...


def bus_error(what: str, exc: BaseException) -> BusError:
    """A :class:`BusError` saying what failed and why."""
    reason = str(exc) or type(exc).__name__
    if not reason.startswith(type(exc).__name__):
        reason = f"{type(exc).__name__}: {reason}"
    error = BusError(f"{what} failed: {reason}")
    error.retriable = bool(getattr(exc, "retriable", False))
    return error


def _kafka_tp(tp: TopicPartition) -> KafkaTopicPartition:
    topic, partition = tp  # also a plain (topic, partition) tuple
    return KafkaTopicPartition(topic, partition)


def _name(tp: TopicPartition) -> str:
    return f"{tp.topic}[{tp.partition}]"


class KafkaProducer:
    """Producer of a :class:`~slipstream.bus.kafka.KafkaBus`: ``send`` waits for the acks."""

    def __init__(self, bus: ClientOwner, producer: AIOKafkaProducer) -> None:
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
        """Store ``(key, value)`` pairs, pipelined; returns their positions in order.

        Raises:
            BusError: A record was not stored (others may have been).
        """
        futures: list[Any] = []
        try:
            for key, value in items:
                futures.append(await self._enqueue(topic, value, key, None))
        finally:
            # Wait for every ack even after a failure, so that no future is
            # left with an exception nobody retrieves.
            outcomes = await asyncio.gather(*futures, return_exceptions=True)
        positions: list[RecordPosition] = []
        for outcome in outcomes:
            if isinstance(outcome, KafkaError):
                raise bus_error(f"sending to {topic}", outcome) from outcome
            if isinstance(outcome, BaseException):
                raise outcome
            positions.append(RecordPosition(outcome.topic, outcome.partition, outcome.offset))
        return positions

    async def stop(self) -> None:
        """Flush pending records and close."""
        if self._closed:
            return
        self._closed = True
        self._bus.forget(self)
        await self._producer.stop()


class KafkaConsumer:
    """Consumer of a :class:`~slipstream.bus.kafka.KafkaBus`; commits are explicit."""

    def __init__(self, bus: ClientOwner, consumer: AIOKafkaConsumer, group_id: str | None) -> None:
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

    async def _call(self, what: str, awaitable: Awaitable[_T]) -> _T:
        """Await an aiokafka call, bounded by the request timeout, errors mapped.

        aiokafka retries some calls (commit, position, committed) for as long
        as the broker is away; here they fail after ``request_timeout_ms``.
        """
        timeout_s = self._bus.settings.request_timeout_ms / 1000
        try:
            async with asyncio.timeout(timeout_s):
                return await awaitable
        except TimeoutError:
            error = BusError(
                f"{what} got no answer from {self._bus.bootstrap} within {timeout_s:g} s"
            )
            error.retriable = True
            raise error from None
        except IllegalStateError as exc:
            raise BusError(f"{what} refused, not assigned to this consumer: {exc}") from exc
        except CommitFailedError as exc:
            raise BusError(
                f"{what} failed: the group rebalanced meanwhile; "
                "the partitions restart from the last committed offsets"
            ) from exc
        except KafkaError as exc:
            raise bus_error(what, exc) from exc

    async def seek_to_beginning(self, tps: Iterable[TopicPartition] = ()) -> None:
        """Rewind the given partitions (all assigned ones if none) to their first record."""
        self._check_open()
        chosen = [_kafka_tp(tp) for tp in tps]
        await self._call("seek_to_beginning", self._consumer.seek_to_beginning(*chosen))

    async def position(self, tp: TopicPartition) -> int:
        """Offset of the next record to read from ``tp``."""
        self._check_open()
        if _kafka_tp(tp) not in self._consumer.assignment():
            raise BusError(f"{_name(tp)} is not assigned to this consumer")
        position: int = await self._call(
            f"position of {_name(tp)}", self._consumer.position(_kafka_tp(tp))
        )
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
        chosen = {_kafka_tp(tp): offset for tp, offset in offsets.items()}
        await self._call("commit", self._consumer.commit(chosen))

    async def committed(self, tp: TopicPartition) -> int | None:
        """The group's stored next offset for ``tp``, or None (also without a group)."""
        self._check_open()
        if self.group_id is None:
            return None
        offset: int | None = await self._call(
            f"reading the committed offset of {_name(tp)}", self._consumer.committed(_kafka_tp(tp))
        )
        return offset

    async def end_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Offset one past the last stored record of each partition."""
        self._check_open()
        chosen = [_kafka_tp(tp) for tp in tps]
        if not chosen:
            return {}
        for tp in chosen:
            # aiokafka would wait for a partition that does not exist.
            await self._bus.partition_of(tp.topic, None, tp.partition)
        ends = await self._call("end_offsets", self._consumer.end_offsets(chosen))
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
        try:
            await self._consumer.stop()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            # aiokafka 0.14 re-raises the cancellation of a fetch task that was
            # backing off after a broker error, and skips the rest of its
            # close; finish it.
            await self._finish_close()
        if self.group_id is not None and generation == 0 and member_id and node_id is not None:
            await self._bus.leave_group(self.group_id, member_id, node_id)

    async def _finish_close(self) -> None:
        fetcher = getattr(self._consumer, "_fetcher", None)
        pending = list(getattr(fetcher, "_pending_tasks", ()))
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self._consumer._client.close()
