"""Fixtures shared by every test package.

Buses:

* ``kafka_broker`` (session): one started :class:`~slipstream.testing.broker.TansuBroker`
  for the whole test session; ``kafka_broker.bootstrap`` is its ``HOST:PORT``
  (pass it as ``--kafka`` to a subprocess).  Started only by tests that ask for it.
* ``kafka_config``: a :class:`~slipstream.config.BusConfig` pointing at that broker.
* ``any_bus``: a started bus, once per kind: ``memory`` (:class:`MemoryBus`) and
  ``kafka`` (:class:`KafkaBus` on the session broker; marked ``kafka``).  Stopped,
  with every producer and consumer it made, after the test.  ``any_bus.name`` says
  which.  Topics are shared by every test on the session broker: take fresh names
  from ``unique_topic()`` (or :func:`slipstream.testing.unique_name`).
* ``kafka_bus``: like ``any_bus`` but Kafka only.

To wait for records or for a group to settle, use ``drain`` and ``settle`` from
:mod:`slipstream.testing.bus`.

Select one kind with ``-k memory`` / ``-k kafka`` or ``-m "not kafka"``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import pytest_asyncio

from slipstream.bus import Bus, make_bus
from slipstream.config import BusConfig
from slipstream.testing import unique_name
from slipstream.testing.broker import TansuBroker

BUS_KINDS = [
    pytest.param("memory", id="memory"),
    pytest.param("kafka", marks=pytest.mark.kafka, id="kafka"),
]


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[TansuBroker]:
    """A Tansu broker on a free loopback port for the whole session."""
    with TansuBroker() as broker:
        yield broker


@pytest.fixture
def fresh_kafka_broker() -> Iterator[TansuBroker]:
    """A Tansu broker of this test's own.

    For tests that run whole commands on Slipstream's default topic and group
    names: on the session broker they would meet an earlier test's race (same
    race id, committed offsets, frames) and see its records as duplicates.
    """
    with TansuBroker() as broker:
        yield broker


@pytest.fixture
def kafka_config(kafka_broker: TansuBroker) -> BusConfig:
    """Bus settings for the session broker (default partitions)."""
    return BusConfig(kafka=kafka_broker.bootstrap)


@pytest.fixture
def unique_topic() -> Callable[..., str]:
    """A factory of fresh topic (or group) names: ``unique_topic("raw")``."""
    return unique_name


@pytest_asyncio.fixture(params=BUS_KINDS)
async def any_bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    """A started bus of each kind (see module doc)."""
    if request.param == "kafka":
        broker: TansuBroker = request.getfixturevalue("kafka_broker")
        config = BusConfig(kafka=broker.bootstrap)
    else:
        config = BusConfig()
    bus = make_bus(config)
    await bus.start()
    try:
        yield bus
    finally:
        await bus.stop()


@pytest_asyncio.fixture
async def kafka_bus(kafka_config: BusConfig) -> AsyncIterator[Bus]:
    """A started :class:`~slipstream.bus.kafka.KafkaBus` on the session broker."""
    bus = make_bus(kafka_config)
    await bus.start()
    try:
        yield bus
    finally:
        await bus.stop()
