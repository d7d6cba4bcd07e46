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
from slipstream.bus.kafka import KafkaBus, KafkaSettings
from slipstream.bus.memory import MemoryBus
from slipstream.config import BusConfig

__all__ = [
    "Bus",
    "Consumer",
    "KafkaBus",
    "KafkaSettings",
    "MemoryBus",
    "OffsetReset",
    "Producer",
    "Record",
    "RecordPosition",
    "TopicPartition",
    "make_bus",
    "partition_for",
]


def make_bus(config: BusConfig) -> Bus:
    """The bus ``config`` asks for, not yet started.

    A :class:`KafkaBus` on ``config.kafka`` when it is set, else a
    :class:`MemoryBus` whose topics get ``config.partitions`` partitions.
    Either way call ``await bus.start()`` (or use ``async with``) before use.
    """
    if config.kafka is not None:
        return KafkaBus(config)
    return MemoryBus(default_partitions=config.partitions)
