"""A whole Kafka pipeline of real processes for the fault tests, and the truth on its topics.

:func:`kafka_pipeline` starts a Tansu broker of its own (optionally behind a
:class:`~slipstream.testing.faults.FaultProxy` that the broker advertises), then
``slipstream broadcast`` node(s), ``slipstream downsample`` and ``slipstream
simulate`` as separate processes; everything is stopped on the way out, also on
failure.  :func:`frames_truth` reads the frames topic back: every ``(race, car,
tick)`` once (repeats must be identical) as the digest a fan computes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from ingest.dlq import decode_dead_letter
from slipstream.bus import make_bus
from slipstream.bus.base import TopicPartition
from slipstream.catalogue import CATALOGUE
from slipstream.config import DLQ_TOPIC, FRAMES_TOPIC, RAW_TOPIC, BusConfig
from slipstream.records import RawBatch, decode_frame, decode_raw
from slipstream.testing.broker import TansuBroker, free_port
from slipstream.testing.faults import Service
from tests.faults.scale import scale
from tests.support.fans import digest
from tests.support.fleet import FanFleet
from tests.support.proxy import FaultProxy

PARTITIONS = 4
GROUPS = (1, 4)  # engine, tyres


@dataclass
class Pipeline:
    bootstrap: str
    node_ports: list[int]
    nodes: list[Service]
    downsample: Service
    simulate: Service
    proxy: FaultProxy | None = None
    services: list[Service] = field(default_factory=list)

    def node_args(self, port: int, tick_wait_s: float, name: str) -> list[str]:
        return [
            "broadcast", "--kafka", self.bootstrap, "--partitions", str(PARTITIONS),
            "--port", str(port), "--tick-wait", str(tick_wait_s), "--server-id", name,
            "--ping-interval", "5",
        ]  # fmt: skip

    def start_downsample(self) -> None:
        self.downsample.start()

    def errors(self) -> dict[str, list[str]]:
        """ERROR lines per service (empty lists when all is well)."""
        return {s.name: s.error_lines() for s in self.services if s.error_lines()}


@contextlib.asynccontextmanager
async def kafka_pipeline(
    *,
    nodes: int = 1,
    proxied: bool = False,
    tick_wait_s: float = 1.0,
    race_s: float = 600.0,
    speed: float | None = None,
    rate_hz: int | None = None,
) -> AsyncIterator[Pipeline]:
    """Broker, ``nodes`` broadcast nodes, downsample and a simulated race (see module doc)."""
    s = scale()
    proxy: FaultProxy | None = None
    async with contextlib.AsyncExitStack() as stack:
        proxy_port = free_port() if proxied else None
        broker = TansuBroker(advertised_port=proxy_port)
        broker.start()
        stack.callback(broker.stop)
        if proxy_port is not None:
            proxy = FaultProxy(broker.port, port=proxy_port)
            await stack.enter_async_context(proxy)
        bootstrap = broker.bootstrap
        bus_args = ["--kafka", bootstrap, "--partitions", str(PARTITIONS)]
        downsample = Service(
            ["downsample", *bus_args, "--commit-interval-ms", "200", "--idle-flush-ms", "1500"],
            "downsample",
        )
        simulate = Service(
            [
                "simulate", *bus_args, "--cars", str(s.cars), "--rate", str(rate_hz or s.rate_hz),
                "--speed", str(speed or s.speed), "--seed", "11", "--duration", str(race_s),
            ],
            "simulate",
        )  # fmt: skip
        pipeline = Pipeline(bootstrap, [], [], downsample, simulate, proxy)
        for i in range(nodes):
            port = free_port()
            node = Service(pipeline.node_args(port, tick_wait_s, f"node-{i}"), f"node-{i}")
            pipeline.node_ports.append(port)
            pipeline.nodes.append(node)
        pipeline.services = [*pipeline.nodes, downsample, simulate]
        for service in pipeline.services:
            stack.callback(service.close)
        for node in pipeline.nodes:
            node.start()
        downsample.start()
        for node, port in zip(pipeline.nodes, pipeline.node_ports, strict=True):
            await node.wait_http(port)
        simulate.start()
        yield pipeline


async def field_cars(port: int, timeout_s: float = 60.0) -> tuple[int, ...]:
    """Car numbers the node at ``port`` serves, once its first tick is out."""
    async with FanFleet([("127.0.0.1", port)], 1, None, GROUPS) as probe:
        await probe.open(timeout_s)
        await probe.wait_all(probe.latest_tick() + 2, 1, timeout_s)
        return tuple(sorted({car for (_, car, _) in probe.observations.values}))


async def read_topic(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[bytes]:
    """Every record value of ``topic`` stored now, partition by partition."""
    bus = make_bus(BusConfig(kafka=bootstrap))
    await bus.start()
    try:
        consumer = await bus.consumer([topic])
        try:
            count = await bus.partitions(topic)
            tps = [TopicPartition(topic, p) for p in range(count)]
            ends = await consumer.end_offsets(tps)
            values: list[bytes] = []
            async with asyncio.timeout(timeout_s):
                while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                    values.extend(r.value for r in await consumer.getmany(timeout_ms=500))
            return values
        finally:
            await consumer.stop()
    finally:
        await bus.stop()


async def frames_truth(bootstrap: str) -> tuple[dict[tuple[str, int, int], int], int]:
    """``(race, car, tick) -> digest`` of the frames topic, and how many records were repeats.

    Raises:
        AssertionError: A repeated frame differs from the first.
    """
    truth: dict[tuple[str, int, int], int] = {}
    repeats = 0
    for value in await read_topic(bootstrap, FRAMES_TOPIC):
        frame = decode_frame(value)
        key = (frame.race, frame.car, frame.tick)
        d = digest([frame.q[CATALOGUE.groups[g].start : CATALOGUE.groups[g].stop] for g in GROUPS])
        if key in truth:
            repeats += 1
            assert truth[key] == d, f"frame {key} re-emitted with other values"
        truth[key] = d
    return truth, repeats


async def raw_batches(bootstrap: str) -> tuple[list[RawBatch], int]:
    """Every raw batch on the raw topic once, and how many records were repeats.

    A producer that lost an ack to a broken connection sends the record again:
    the raw topic may hold a batch twice (ingest drops the repeat by its
    sequence number).

    Raises:
        AssertionError: Two records of one (race, car, seq) differ.
    """
    batches: dict[tuple[str, int, int], tuple[bytes, RawBatch]] = {}
    repeats = 0
    for value in await read_topic(bootstrap, RAW_TOPIC):
        batch = decode_raw(value)
        key = (batch.race, batch.car, batch.seq)
        if key in batches:
            repeats += 1
            assert batches[key][0] == value, f"raw batch {key} sent twice with other contents"
            continue
        batches[key] = (value, batch)
    return [b for _, b in batches.values()], repeats


async def dead_letters(bootstrap: str, details: list[str] | None = None) -> dict[str, int]:
    """Records on the dead-letter topic, by reason (a clean race has only ``duplicate``
    ones: a raw record a producer sent again after losing its ack).

    Every letter but a duplicate is also described in ``details``, when given.
    """
    reasons: dict[str, int] = {}
    for value in await read_topic(bootstrap, DLQ_TOPIC):
        letter = decode_dead_letter(value)
        reasons[letter.reason] = reasons.get(letter.reason, 0) + 1
        if details is not None and letter.reason != "duplicate":
            details.append(
                f"{letter.reason} p{letter.partition}@{letter.offset} car {letter.car} "
                f"seq {letter.seq}: {letter.detail}"
            )
    return reasons
