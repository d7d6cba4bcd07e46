"""The bus: Kafka's model of partitioned logs, in process or on aiokafka.

The contract (:mod:`slipstream.bus.base`) and the in-process bus
(:mod:`slipstream.bus.memory`) need no Kafka client: importing this package
does not load aiokafka.  :mod:`slipstream.bus.kafka` is imported when a
:class:`KafkaBus` is first asked for (``make_bus`` with ``--kafka``, or the
name ``KafkaBus``/``KafkaSettings`` taken from this package).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
from slipstream.config import BusConfig

if TYPE_CHECKING:
    from slipstream.bus.kafka import KafkaBus as KafkaBus
    from slipstream.bus.kafka import KafkaSettings as KafkaSettings

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

#: Names served from :mod:`slipstream.bus.kafka`, loaded on first use.
_KAFKA_NAMES = frozenset({"KafkaBus", "KafkaSettings"})


def __getattr__(name: str) -> Any:
    # On demand, not at the top: the embedded bus must not load aiokafka.
    if name in _KAFKA_NAMES:
        from slipstream.bus import kafka

        return getattr(kafka, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_bus(config: BusConfig) -> Bus:
    """The bus ``config`` asks for, not yet started.

    A :class:`KafkaBus` on ``config.kafka`` when it is set (aiokafka is loaded
    then), else a :class:`MemoryBus` whose topics get ``config.partitions``
    partitions.  Either way call ``await bus.start()`` (or use ``async with``)
    before use.
    """
    if config.kafka is not None:
        # On demand, not at the top: the embedded bus must not load aiokafka.
        from slipstream.bus.kafka import KafkaBus

        return KafkaBus(config)
    return MemoryBus(default_partitions=config.partitions)
