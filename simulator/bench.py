"""``slipstream bench simulator``: simulator throughput on one core.

Three figures, each as car-samples/s, channel-values/s and multiple of real
time for the field (CARS cars x RATE Hz x the catalogue):

* ``kernel``: :meth:`simulator.kernel.Simulation.next_chunk` alone (race
  physics, sensor model, noise, quantisation);
* ``kernel+encode``: plus one msgpack record per car and batch (what the
  service does before the bus);
* ``kafka``: :class:`simulator.service.SimulatorService` at ``--speed 0``
  producing into a Kafka broker (``--kafka`` or a throw-away Tansu with
  ``--tansu``), acknowledged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from typing import Any

from simulator.config import SimulatorConfig
from simulator.kernel import Simulation
from simulator.service import SimulatorService
from slipstream.bus import make_bus
from slipstream.catalogue import CATALOGUE
from slipstream.config import BusConfig
from slipstream.kafka_settings import KafkaClientSettings, add_kafka_arguments
from slipstream.records import RawBatch, encode_raw
from slipstream.testing.broker import TansuBroker

__all__ = ["add_bench_arguments", "cmd_bench", "measure_kernel"]


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``slipstream bench simulator``."""
    parser.add_argument("--cars", type=int, default=40, help="field size (default 40)")
    parser.add_argument("--rate", type=int, default=120, help="samples/s per car (default 120)")
    parser.add_argument(
        "--seconds", type=float, default=120.0, help="race seconds to simulate (default 120)"
    )
    parser.add_argument("--track", default="daytona", help="track (default daytona)")
    parser.add_argument(
        "--batch-ms", type=int, default=100, help="record interval per car (default 100)"
    )
    add_kafka_arguments(parser)  # with --kafka: also measure through this broker
    parser.add_argument(
        "--tansu", action="store_true", help="also measure through a throw-away Tansu broker"
    )
    parser.add_argument("--json", metavar="FILE", help="write the figures as JSON to FILE")


def _figures(
    config: SimulatorConfig, seconds: float, wall_s: float, cpu_s: float
) -> dict[str, float]:
    """Rates per second of CPU time of this process (one core: the figures stay
    meaningful on a shared machine); ``wall_s`` is reported beside them."""
    samples = config.cars * config.rate_hz * seconds
    return {
        "race_s": seconds,
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "car_samples_per_s": samples / cpu_s,
        "channel_values_per_s": samples * len(CATALOGUE) / cpu_s,
        "real_time_multiple": seconds / cpu_s,
        "real_time_multiple_wall": seconds / wall_s,
    }


def measure_kernel(config: SimulatorConfig, encode: bool = False) -> dict[str, float]:
    """Run the kernel over ``config.duration_s`` and return its figures."""
    sim = Simulation(config)
    numbers = [int(c) for c in sim.numbers]
    n = sim.samples_per_batch
    covered = 0.0
    start = time.perf_counter()
    cpu = time.process_time()
    while (chunk := sim.next_chunk()) is not None:
        if encode:
            for b, t0 in enumerate(chunk.batch_t0_ns):
                for i, car in enumerate(numbers):
                    values = chunk.values[i, b * n : (b + 1) * n]
                    encode_raw(
                        RawBatch(sim.race, car, chunk.first_batch + b, t0, config.rate_hz, values)
                    )
        covered = chunk.end_ns / 1e9
    wall = time.perf_counter() - start
    return _figures(config, covered, wall, time.process_time() - cpu)


async def _measure_kafka(config: SimulatorConfig, bus_config: BusConfig) -> dict[str, float]:
    bus = make_bus(bus_config)
    await bus.start()
    try:
        start = time.perf_counter()
        cpu = time.process_time()
        summary = await SimulatorService(config, bus).run()
        wall = time.perf_counter() - start
        cpu_s = time.process_time() - cpu
    finally:
        await bus.stop()
    figures = _figures(config, config.duration_s or summary.race_time_s, wall, cpu_s)
    figures["records"] = summary.records
    return figures


def _print(name: str, figures: dict[str, float]) -> None:
    sys.stdout.write(
        f"{name:14s} {figures['car_samples_per_s'] / 1e6:8.2f} M car-samples/s  "
        f"{figures['channel_values_per_s'] / 1e6:8.1f} M channel-values/s  "
        f"{figures['real_time_multiple']:7.1f}x real time per CPU second "
        f"({figures['real_time_multiple_wall']:.1f}x by the wall clock)\n"
    )


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark and print (and optionally save) the figures."""
    config = SimulatorConfig(
        cars=args.cars,
        rate_hz=args.rate,
        speed=0,
        track=args.track,
        duration_s=args.seconds,
        batch_ms=args.batch_ms,
    )
    real_time = config.cars * config.rate_hz * len(CATALOGUE)
    sys.stdout.write(
        f"simulator: {config.cars} cars x {config.rate_hz} Hz x {len(CATALOGUE)} channels = "
        f"{real_time / 1e3:.0f}k channel-values/s in real time; {args.seconds:.0f} s of "
        f"{config.track}\n"
    )
    results: dict[str, Any] = {
        "config": {"cars": config.cars, "rate_hz": config.rate_hz, "track": config.track,
                   "seconds": args.seconds, "channels": len(CATALOGUE),
                   "physics_hz": config.physics_hz, "batch_ms": config.batch_ms},
        "machine": {"python": platform.python_version(), "machine": platform.machine()},
    }  # fmt: skip
    results["kernel"] = measure_kernel(config)
    _print("kernel", results["kernel"])
    results["kernel+encode"] = measure_kernel(config, encode=True)
    _print("kernel+encode", results["kernel+encode"])
    if args.kafka or args.tansu:
        if args.tansu:
            with TansuBroker() as broker:
                results["kafka"] = asyncio.run(
                    _measure_kafka(config, BusConfig(kafka=broker.bootstrap))
                )
        else:
            client = KafkaClientSettings.from_args(args)
            bus_config = BusConfig(kafka=args.kafka, kafka_client=client)
            results["kafka"] = asyncio.run(_measure_kafka(config, bus_config))
        _print("kafka", results["kafka"])
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)
            out.write("\n")
    return 0
