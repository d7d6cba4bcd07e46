"""``slipstream bench pipeline``: raw -> 2 Hz throughput, in channel-values per second.

Real time for a field is ``cars x channels x rate_hz`` channel-values per
second; the figure reported is how many times that one core sustains:

* ``kernel``: the pure core in process (decode, validate, de-duplicate,
  window, reduce, quantise, encode frames), no bus;
* ``kafka``: the whole service against a broker (records pre-loaded into a
  fresh raw topic, then timed from start until every record is processed
  and its frames are acknowledged).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import sys
import time
from collections import defaultdict
from typing import Any

from downsample.config import DownsampleConfig
from downsample.service import DownsampleService
from downsample.synthetic import synthetic_batches
from downsample.windows import PartitionWindows
from slipstream.bus import make_bus
from slipstream.bus.base import Record, partition_for
from slipstream.catalogue import CATALOGUE
from slipstream.config import DEFAULT_PARTITIONS, BusConfig
from slipstream.errors import ConfigError
from slipstream.kafka_settings import KafkaClientSettings, add_kafka_arguments
from slipstream.records import car_key, encode_frame, encode_raw
from slipstream.testing import unique_name
from slipstream.testing.broker import TansuBroker

__all__ = ["add_bench_arguments", "bench_kafka", "bench_kernel", "cmd_bench"]


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``slipstream bench pipeline``."""
    parser.add_argument("--cars", type=int, default=40, help="cars in the field (default 40)")
    parser.add_argument("--rate", type=int, default=120, help="samples/s per car (default 120)")
    parser.add_argument(
        "--seconds", type=float, default=30.0, help="race time to process (default 30)"
    )
    parser.add_argument(
        "--batch-ms", type=int, default=100, help="race time per raw record (default 100)"
    )
    parser.add_argument(
        "--partitions", type=int, default=DEFAULT_PARTITIONS,
        help=f"raw partitions (default {DEFAULT_PARTITIONS})",
    )  # fmt: skip
    # With --kafka: also measure through this broker.
    add_kafka_arguments(parser)
    parser.add_argument(
        "--tansu", action="store_true", help="also measure through a throw-away Tansu broker"
    )
    parser.add_argument("--profile", action="store_true", help="print where the kernel's time goes")
    parser.add_argument("--json", metavar="FILE", help="write the figures as JSON to FILE")


def _records(args: argparse.Namespace) -> list[Record]:
    records: list[Record] = []
    counts: dict[int, int] = defaultdict(int)
    for batch in synthetic_batches(
        cars=args.cars, rate_hz=args.rate, seconds=args.seconds, batch_ms=args.batch_ms,
        dropout_rate=0.01,
    ):  # fmt: skip
        key = car_key(batch.car)
        partition = partition_for(key, args.partitions)
        records.append(
            Record("slipstream.raw", partition, counts[partition], key, encode_raw(batch), 0)
        )
        counts[partition] += 1
    return records


def _real_time_values(args: argparse.Namespace) -> float:
    return float(args.cars * len(CATALOGUE) * args.rate)


def bench_kernel(args: argparse.Namespace, records: list[Record]) -> dict[str, Any]:
    """Run the pure core over ``records``; returns the figures."""
    windows = {p: PartitionWindows("slipstream.raw", p) for p in range(args.partitions)}
    by_partition: dict[int, list[Record]] = defaultdict(list)
    for record in records:
        by_partition[record.partition].append(record)
    chunk = 2000
    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        profiler.enable()
    start = time.perf_counter()
    cpu_start = time.process_time()
    frames = 0
    # Interleave partitions chunk by chunk, as a consumer's polls would.
    longest = max(len(v) for v in by_partition.values())
    for i in range(0, longest, chunk // args.partitions):
        for partition, part in by_partition.items():
            out, _ = windows[partition].process(part[i : i + chunk // args.partitions])
            frames += len([encode_frame(f) for f in out])
    for w in windows.values():
        frames += len([encode_frame(f) for f in w.flush_all()])
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    if profiler is not None:
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(15)
        sys.stdout.write(text.getvalue())
    values = args.cars * len(CATALOGUE) * int(args.seconds * args.rate)
    return _figures(args, "kernel", values, elapsed, cpu, len(records), frames)


def _figures(
    args: argparse.Namespace,
    mode: str,
    values: float,
    elapsed_s: float,
    cpu_s: float,
    records: int,
    frames: int,
) -> dict[str, Any]:
    real = _real_time_values(args)
    return {
        "mode": mode,
        "seconds_s": elapsed_s,
        "cpu_seconds_s": cpu_s,
        "records": records,
        "frames": frames,
        "channel_values_per_s": values / elapsed_s,
        "real_time_multiple": values / elapsed_s / real,
        # CPU time of this process only: what one core sustains when it is not shared.
        "real_time_multiple_cpu": values / cpu_s / real,
    }


async def bench_kafka(
    args: argparse.Namespace, records: list[Record], bootstrap: str
) -> dict[str, Any]:
    """Pre-load ``records`` into a fresh topic, then time the service through the broker."""

    client = None if args.tansu else KafkaClientSettings.from_args(args)
    bus = make_bus(BusConfig(kafka=bootstrap, partitions=args.partitions, kafka_client=client))
    await bus.start()
    try:
        raw = unique_name("bench.raw")
        await bus.ensure_topic(raw, args.partitions)
        producer = await bus.producer()
        by_partition: dict[int, list[tuple[bytes | None, bytes]]] = defaultdict(list)
        for record in records:
            by_partition[record.partition].append((record.key, record.value))
        for items in by_partition.values():
            for i in range(0, len(items), 500):
                await producer.send_many(raw, items[i : i + 500])
        config = DownsampleConfig(
            group_id=unique_name("bench.group"),
            raw_topic=raw,
            frames_topic=unique_name("bench.frames"),
            dlq_topic=unique_name("bench.dlq"),
            partitions=args.partitions,
            idle_flush_ms=500,
            poll_ms=100,
        )
        service = DownsampleService(config, bus)
        task = asyncio.create_task(service.run())
        # Time from the first records read (group join and fetch start-up excluded).
        while service.counts.records == 0:
            if task.done():
                task.result()
            await asyncio.sleep(0.005)  # a benchmark's progress probe, not a test wait
        start = time.perf_counter()
        cpu_start = time.process_time()
        first = service.counts.records
        while service.counts.records < len(records):
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        await bus.stop()
    share = (len(records) - first) / len(records)
    values = args.cars * len(CATALOGUE) * int(args.seconds * args.rate) * share
    return _figures(args, "kafka", values, elapsed, cpu, len(records), service.counts.frames)


def cmd_bench(args: argparse.Namespace) -> int:
    """``slipstream bench pipeline``."""
    if args.cars <= 0 or args.rate <= 0 or args.seconds <= 0 or args.partitions <= 0:
        raise ConfigError("--cars, --rate, --seconds and --partitions must be positive")
    records = _records(args)
    results = [bench_kernel(args, records)]
    bootstrap = args.kafka
    broker = None
    if args.tansu and bootstrap:
        raise ConfigError("--tansu starts its own broker: drop --kafka (or SLIPSTREAM_KAFKA)")
    if args.tansu:
        broker = TansuBroker()
        broker.start()
        bootstrap = broker.bootstrap
    try:
        if bootstrap:
            results.append(asyncio.run(bench_kafka(args, records, bootstrap)))
    finally:
        if broker is not None:
            broker.stop()
    sys.stdout.write(
        f"raw -> 2 Hz, {args.cars} cars x {len(CATALOGUE)} channels x {args.rate} Hz "
        f"= {_real_time_values(args):,.0f} channel-values/s real time; {args.seconds:g} s race\n"
    )
    for r in results:
        sys.stdout.write(
            f"  {r['mode']:<7} {r['channel_values_per_s']:>14,.0f} values/s "
            f"{r['real_time_multiple']:>7.1f}x real time "
            f"({r['real_time_multiple_cpu']:.1f}x per CPU-second of this process; "
            f"{r['seconds_s']:.2f} s, "
            f"{r['records']} records, {r['frames']} frames)\n"
        )
    if args.json:
        with open(args.json, "w") as out:
            json.dump(
                {"cars": args.cars, "rate_hz": args.rate, "seconds": args.seconds,
                 "channels": len(CATALOGUE), "results": results},
                out, indent=2,
            )  # fmt: skip
            out.write("\n")
    return 0
