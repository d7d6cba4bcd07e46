"""Commands of the downsample stage: ``slipstream downsample`` and ``slipstream bench pipeline``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from typing import Any

from downsample.bench import add_bench_arguments, cmd_bench
from downsample.config import DownsampleConfig, add_downsample_arguments
from downsample.service import DownsampleService
from slipstream.bus import make_bus
from slipstream.config import BusConfig, add_bus_arguments

__all__ = ["register", "register_bench", "serve"]

logger = logging.getLogger(__name__)


async def serve(config: DownsampleConfig, bus_config: BusConfig) -> None:
    """Run a :class:`~downsample.service.DownsampleService` until SIGTERM/SIGINT."""

    bus = make_bus(bus_config)
    await bus.start()
    try:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        if task is not None:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await DownsampleService(config, bus).run()
        logger.info("downsampler stopped")
    finally:
        await bus.stop()


def _cmd_downsample(args: argparse.Namespace) -> int:
    config = DownsampleConfig.from_args(args)
    asyncio.run(serve(config, BusConfig.from_args(args)))
    return 0


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add ``slipstream downsample``."""
    parser = commands.add_parser(
        "downsample",
        help="validate raw telemetry and reduce it to 2 Hz frames (consumer group)",
        description="Consume slipstream.raw as a member of a consumer group; decode, validate "
        "and de-duplicate each record (refused records go to slipstream.dlq with a reason); "
        "reduce samples to 500 ms event-time windows by each channel's rule and write one "
        "frame per car and tick to slipstream.frames.  Start several to share the partitions; "
        "a restarted member resumes from its last checkpoint and re-emits identical frames.  "
        "See docs/pipeline.md.",
    )
    add_bus_arguments(parser, required=True)
    add_downsample_arguments(parser)
    parser.set_defaults(func=_cmd_downsample)


def register_bench(benches: argparse._SubParsersAction[Any]) -> None:
    """Add ``slipstream bench pipeline``."""

    parser = benches.add_parser(
        "pipeline",
        help="raw -> 2 Hz throughput on one core, kernel-only and through Kafka",
        description="Measure channel-values per second through validation and downsampling, "
        "as a multiple of real time for CARS cars x the catalogue x RATE Hz: first the pure "
        "core in process, then (with --kafka or --tansu) the service through a broker.",
    )
    add_bench_arguments(parser)
    parser.set_defaults(func=cmd_bench)
