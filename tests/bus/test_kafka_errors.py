"""KafkaBus failures: unreachable brokers, bad arguments, misuse; and make_bus."""

from __future__ import annotations

import asyncio
import gc
import socket
import time
import warnings
from collections.abc import Callable, Iterator

import pytest

from slipstream.bus import Bus, KafkaBus, KafkaSettings, MemoryBus, TopicPartition, make_bus
from slipstream.config import BusConfig
from slipstream.errors import BusError, BusUnreachableError
from slipstream.testing.broker import TansuBroker, free_port

Names = Callable[..., str]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts TCP connections and never says a word."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


async def assert_clean_failure(bus: KafkaBus, address: str) -> float:
    """Start ``bus``, expect BusUnreachableError naming ``address``; return seconds taken."""
    started = time.perf_counter()
    with pytest.raises(BusUnreachableError) as caught:
        await bus.start()
    elapsed = time.perf_counter() - started
    assert address in str(caught.value)
    assert caught.value.retriable
    # Everything aiokafka opened is closed again: no task left behind, no
    # "Unclosed AIOKafka..." warning when the objects are collected.
    current = asyncio.current_task()
    await asyncio.sleep(0)
    assert [t for t in asyncio.all_tasks() if t is not current and not t.done()] == []
    with warnings.catch_warnings(record=True) as caught_warnings:
        warnings.simplefilter("always")
        gc.collect()
    assert [str(w.message) for w in caught_warnings] == []
    await bus.stop()  # harmless after a failed start
    return elapsed


async def test_closed_port_is_unreachable_quickly() -> None:
    address = f"127.0.0.1:{free_port()}"
    elapsed = await assert_clean_failure(KafkaBus(BusConfig(kafka=address)), address)
    print(f"\nunreachable closed port {address}: BusUnreachableError after {elapsed:.3f} s")


async def test_unresolvable_host_is_unreachable() -> None:
    address = "no-such-host.invalid:9092"
    bus = KafkaBus(BusConfig(kafka=address, connect_timeout_s=5.0))
    elapsed = await assert_clean_failure(bus, address)
    print(f"\nunresolvable {address}: BusUnreachableError after {elapsed:.3f} s")


async def test_silent_server_times_out_at_connect_timeout(silent_port: int) -> None:
    address = f"127.0.0.1:{silent_port}"
    bus = KafkaBus(BusConfig(kafka=address, connect_timeout_s=1.0))
    elapsed = await assert_clean_failure(bus, address)
    print(f"\nsilent server {address}: BusUnreachableError after {elapsed:.3f} s")


@pytest.mark.kafka
async def test_wrong_partition_names_topic_and_range(kafka_bus: Bus, unique_topic: Names) -> None:
    topic = unique_topic("wrong")
    await kafka_bus.ensure_topic(topic, 2)
    producer = await kafka_bus.producer()
    with pytest.raises(BusError, match=rf"topic {topic} has partitions 0\.\.1; .*partition 7"):
        await producer.send(topic, b"v", partition=7)
    # The producer still works afterwards.
    position = await producer.send(topic, b"v", partition=1)
    assert (position.partition, position.offset) == (1, 0)


@pytest.mark.kafka
async def test_new_topic_gets_configured_partitions(
    kafka_broker: TansuBroker, unique_topic: Names
) -> None:
    async with KafkaBus(BusConfig(kafka=kafka_broker.bootstrap, partitions=3)) as bus:
        topic = unique_topic("auto")
        producer = await bus.producer()
        await producer.send(topic, b"v", key=b"car-1")
        assert await bus.partitions(topic) == 3


async def test_bus_not_started() -> None:
    bus = KafkaBus(BusConfig(kafka="127.0.0.1:9"))
    with pytest.raises(BusError, match="not started"):
        await bus.ensure_topic("t", 1)
    with pytest.raises(BusError, match="not started"):
        await bus.producer()


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="heartbeat"):
        KafkaSettings(session_timeout_ms=1000, heartbeat_interval_ms=1000)
    with pytest.raises(ValueError, match="acks"):
        KafkaSettings(acks="some")
    with pytest.raises(ValueError, match="request_timeout_ms must exceed"):
        KafkaSettings(request_timeout_ms=5000)  # a JoinGroup may be held 6 s
    with pytest.raises(ValueError, match="replication_factor"):
        KafkaSettings(replication_factor=0)
    with pytest.raises(ValueError, match="fetch_max_wait_ms"):
        KafkaSettings(fetch_max_wait_ms=0)
    with pytest.raises(ValueError, match="kafka"):
        KafkaBus(BusConfig())


def test_make_bus_picks_the_bus() -> None:
    memory = make_bus(BusConfig(partitions=3))
    assert isinstance(memory, MemoryBus) and memory.default_partitions == 3
    kafka = make_bus(BusConfig(kafka="127.0.0.1:9092"))
    assert isinstance(kafka, KafkaBus) and kafka.bootstrap == "127.0.0.1:9092"
    assert isinstance(memory, Bus) and isinstance(kafka, Bus)


@pytest.mark.kafka
async def test_stop_closes_everything(kafka_broker: TansuBroker, unique_topic: Names) -> None:
    topic = unique_topic("close")
    bus = KafkaBus(BusConfig(kafka=kafka_broker.bootstrap, partitions=2))
    await bus.start()
    producer = await bus.producer()
    await producer.send(topic, b"v", key=b"car-1")
    plain = await bus.consumer([topic])
    member = await bus.consumer([topic], group_id=unique_topic("group"))
    assert len(await plain.getmany(timeout_ms=5000)) == 1
    assert len(await member.getmany(timeout_ms=5000)) == 1
    await bus.stop()
    current = asyncio.current_task()
    await asyncio.sleep(0)
    assert [t for t in asyncio.all_tasks() if t is not current and not t.done()] == []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del producer, plain, member, bus
        gc.collect()
    assert [str(w.message) for w in caught] == []


@pytest.mark.kafka
async def test_broker_gone_fails_calls_within_request_timeout(unique_topic: Names) -> None:
    settings = KafkaSettings(
        session_timeout_ms=3000,
        rebalance_timeout_ms=3000,
        request_timeout_ms=3500,
        delivery_timeout_ms=3500,
    )
    topic, group = unique_topic("gone"), unique_topic("group")
    with TansuBroker() as broker:  # its own broker: this test kills it
        address = broker.bootstrap
        bus = KafkaBus(BusConfig(kafka=address, partitions=1), settings)
        await bus.start()
        producer = await bus.producer()
        await producer.send(topic, b"v")
        member = await bus.consumer([topic], group_id=group)
        assert len(await member.getmany(timeout_ms=5000)) == 1
        broker.stop()

    loop_errors: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, ctx: loop_errors.append(ctx))
    # send and send_many both fail with a BusError, and nothing is left for the
    # loop's exception handler (no stray task or future errors).
    sends = [
        producer.send(topic, b"lost"),
        producer.send_many(topic, [(None, b"lost"), (None, b"lost")]),
    ]
    outcomes = await asyncio.gather(*sends, return_exceptions=True)
    for outcome in outcomes:
        assert isinstance(outcome, BusError) and f"sending to {topic}" in str(outcome)
    with pytest.raises(BusError, match="commit") as caught:
        await member.commit({TopicPartition(topic, 0): 1})
    assert caught.value.retriable
    with pytest.raises(BusUnreachableError, match=address):
        await bus.consumer([topic])
    await bus.stop()
    current = asyncio.current_task()
    assert [t for t in asyncio.all_tasks() if t is not current and not t.done()] == []
    with warnings.catch_warnings(record=True) as caught_warnings:
        warnings.simplefilter("always")
        del producer, member, bus, sends, outcomes
        gc.collect()
    assert [str(w.message) for w in caught_warnings] == []
    assert loop_errors == []
