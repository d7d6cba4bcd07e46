"""Commands of the downsample stage: ``slipstream downsample`` and ``slipstream bench pipeline``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from typing import Any

from downsample.config import DownsampleConfig, add_downsample_arguments
from slipstream.config import BusConfig, add_bus_arguments, env

__all__ = ["register", "register_bench", "serve"]

logger = logging.getLogger(__name__)


async def serve(
    config: DownsampleConfig,
    bus_config: BusConfig,
    metrics: tuple[str, int] | None = None,
) -> None:
    """Run a :class:`~downsample.service.DownsampleService` until SIGTERM/SIGINT.

    Args:
        config: The service's settings.
        bus_config: The bus.
        metrics: ``(host, port)`` to serve ``/metrics`` on, or None.
    """
    from downsample.service import DownsampleService
    from slipstream.bus import make_bus
    from slipstream.metrics import Registry
    from slipstream.metrics_server import MetricsServer

    registry = Registry()
    server = MetricsServer(registry, *metrics) if metrics is not None else None
    if server is not None:
        await server.start()
        logger.info("metrics at http://%s:%d/metrics", server.host, server.port)
    bus = make_bus(bus_config)
    try:
        await bus.start()
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        if task is not None:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await DownsampleService(config, bus, registry).run()
        logger.info("downsampler stopped")
    finally:
        await bus.stop()
        if server is not None:
            await server.stop()


def _cmd_downsample(args: argparse.Namespace) -> int:
    config = DownsampleConfig.from_args(args)
    metrics = (args.metrics_host, args.metrics_port) if args.metrics_port is not None else None
    asyncio.run(serve(config, BusConfig.from_args(args), metrics))
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
    port = env("METRICS_PORT")
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        default=int(port) if port else None,
        help="serve Prometheus /metrics on this port (env SLIPSTREAM_METRICS_PORT; default: "
        "none; deploy/prometheus scrapes it, docs/deploy.md)",
    )
    parser.add_argument(
        "--metrics-host",
        default=env("METRICS_HOST", "127.0.0.1"),
        help="address of --metrics-port (env SLIPSTREAM_METRICS_HOST; default 127.0.0.1)",
    )
    parser.set_defaults(func=_cmd_downsample)


def register_bench(benches: argparse._SubParsersAction[Any]) -> None:
    """Add ``slipstream bench pipeline``."""
    from downsample.bench import add_bench_arguments, cmd_bench

    parser = benches.add_parser(
        "pipeline",
        help="raw -> 2 Hz throughput on one core, kernel-only and through Kafka",
        description="Measure channel-values per second through validation and downsampling, "
        "as a multiple of real time for CARS cars x the catalogue x RATE Hz: first the pure "
        "core in process, then (with --kafka or --tansu) the service through a broker.",
    )
    add_bench_arguments(parser)
    parser.set_defaults(func=cmd_bench)
