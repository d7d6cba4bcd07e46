"""The bus: Kafka's model of partitioned logs, in process or on aiokafka."""

from __future__ import annotations

from slipstream.bus.base import (
    Bus,
    Consumer,
    OffsetReset,
    Producer,
    Record,
    RecordPosition,
    TopicPartition,
    partition_for,
)
from slipstream.bus.memory import MemoryBus

__all__ = [
    "Bus",
    "Consumer",
    "MemoryBus",
    "OffsetReset",
    "Producer",
    "Record",
    "RecordPosition",
    "TopicPartition",
    "partition_for",
]
