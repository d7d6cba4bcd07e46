"""Commands of the simulator stage: ``slipstream simulate``, ``replay`` and ``bench simulator``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable
from typing import Any, TypeVar

from simulator.bench import add_bench_arguments, cmd_bench
from simulator.config import SimulatorConfig, add_simulator_arguments
from simulator.recording_file import RecordWriter
from simulator.replay import ReplayService
from simulator.service import SimulatorService
from simulator.summary import RaceSummary
from slipstream.bus import make_bus
from slipstream.config import BusConfig, add_bus_arguments
from slipstream.errors import ConfigError

__all__ = ["register", "register_bench", "run_until_signal"]

T = TypeVar("T")


def run_until_signal(main: Awaitable[T]) -> T:
    """Run ``main`` on a new event loop; SIGTERM and SIGINT cancel it.

    ``main`` may catch the cancellation to finish cleanly and return a result.
    """
    signals = (signal.SIGTERM, signal.SIGINT)

    async def runner() -> T:
        task = asyncio.ensure_future(main)
        loop = asyncio.get_running_loop()
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, task.cancel)
        try:
            return await task
        finally:
            for sig in signals:
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)

    return asyncio.run(runner())


async def _run_service(service: SimulatorService) -> RaceSummary:
    """Run to the end; on a stop signal, the summary of what was sent so far."""
    try:
        return await service.run()
    except asyncio.CancelledError:
        return service.summary_so_far()


async def _simulate(config: SimulatorConfig, args: argparse.Namespace) -> RaceSummary:
    recorder = RecordWriter(args.record) if args.record else None
    try:
        if args.kafka is None and recorder is not None:
            return await _run_service(SimulatorService(config, None, recorder=recorder))
        bus_config = BusConfig.from_args(args)
        bus = make_bus(bus_config)
        await bus.start()
        try:
            service = SimulatorService(
                config, bus, recorder=recorder, partitions=bus_config.partitions
            )
            return await _run_service(service)
        finally:
            await bus.stop()
    finally:
        if recorder is not None:
            recorder.close()
            size = recorder.path.stat().st_size
            ratio = recorder.raw_bytes / max(size, 1)
            sys.stdout.write(
                f"recorded {recorder.records} records ({recorder.raw_bytes} bytes of msgpack) "
                f"to {args.record}: {size} bytes, {ratio:.1f}x smaller\n"
            )


def _cmd_simulate(args: argparse.Namespace) -> int:
    if args.record and args.kafka is None and args.sim_speed is None:
        # Recording without a bus runs as fast as it can unless --speed says otherwise.
        args.sim_speed = 0.0
    config = SimulatorConfig.from_args(args)
    summary = run_until_signal(_simulate(config, args))
    sys.stdout.write(summary.format() + "\n")
    return 0


async def _replay(args: argparse.Namespace) -> RaceSummary:
    bus_config = BusConfig.from_args(args)
    bus = make_bus(bus_config)
    await bus.start()
    try:
        service = ReplayService(args.file, bus, args.speed, partitions=bus_config.partitions)
        try:
            return await service.run()
        except asyncio.CancelledError:  # a stop signal: report what was sent
            return service.summary_so_far()
    finally:
        await bus.stop()


def _cmd_replay(args: argparse.Namespace) -> int:
    if not args.speed >= 0:
        raise ConfigError(f"--speed must be 0 (flat out) or a positive multiple, got {args.speed}")
    summary = run_until_signal(_replay(args))
    sys.stdout.write(summary.format() + "\n")
    return 0


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add ``simulate`` and ``replay``."""
    simulate = commands.add_parser(
        "simulate",
        help="simulate a race into Kafka (or the in-process bus) and/or a recording",
        description="Simulate a full-field race and produce raw telemetry batches to "
        "slipstream.raw (key = car number) and race events to slipstream.events.  With "
        "--record FILE and no --kafka, write a recording without any bus, as fast as "
        "possible unless --speed is given.  Prints a summary of the race at the end.",
    )
    add_bus_arguments(simulate)
    add_simulator_arguments(simulate)
    simulate.add_argument(
        "--record", metavar="FILE", help="also write the stream to a compact recording FILE"
    )
    simulate.set_defaults(func=_cmd_simulate)

    replay = commands.add_parser(
        "replay",
        help="play a recording into Kafka (or the in-process bus), byte-identical",
        description="Send every record of a recording made by `slipstream simulate --record` "
        "to its topic with its key, byte for byte, paced by its race time.",
    )
    replay.add_argument("file", metavar="FILE", help="recording to play")
    add_bus_arguments(replay)
    replay.add_argument(
        "--speed", type=float, default=1.0, metavar="X",
        help="multiple of real time; 0 = as fast as possible (default 1)",
    )  # fmt: skip
    replay.set_defaults(func=_cmd_replay)


def register_bench(benches: argparse._SubParsersAction[Any]) -> None:
    """Add ``slipstream bench simulator``."""

    parser = benches.add_parser(
        "simulator",
        help="simulator throughput: kernel alone and through Kafka",
        description="Car-samples/s, channel-values/s and multiple of real time of the "
        "simulator on one core: the kernel alone, kernel + record encoding, and (with "
        "--kafka or --tansu) the service producing into a broker.",
    )
    add_bench_arguments(parser)
    parser.set_defaults(func=cmd_bench)
