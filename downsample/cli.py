"""Commands of the downsample stage: ``slipstream downsample`` and ``slipstream bench pipeline``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass
from typing import Any

from downsample.bench import add_bench_arguments, cmd_bench
from downsample.config import DownsampleConfig, add_downsample_arguments
from downsample.service import DownsampleService
from slipstream.bus import make_bus
from slipstream.config import BusConfig, add_bus_arguments
from slipstream.metrics import Registry
from slipstream.metrics_server import MetricsServer
from slipstream.options import Option, Options, integer, text

__all__ = ["METRICS_OPTIONS", "register", "register_bench", "serve"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MetricsEndpoint:
    """Where a downsampler serves ``/metrics``.

    Attributes:
        port: Port of ``/metrics``; None serves none.
        host: Address of that port.
    """

    port: int | None = None
    host: str = "127.0.0.1"


METRICS_OPTIONS = Options(
    MetricsEndpoint,
    [
        Option(
            "port", "--metrics-port",
            "serve Prometheus /metrics on this port (deploy/prometheus scrapes it, "
            "docs/deploy.md)",
            parse=integer(1, 65535), env="METRICS_PORT", metavar="PORT", default_text="none",
        ),
        Option("host", "--metrics-host", "address of --metrics-port", parse=text,
               env="METRICS_HOST"),
    ],
)  # fmt: skip


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

    registry = Registry()
    bus = make_bus(bus_config)
    # The service declares its metrics when built: serve /metrics only after that, so
    # a first scrape already has every series the alert rules name.
    service = DownsampleService(config, bus, registry)
    server = MetricsServer(registry, *metrics) if metrics is not None else None
    if server is not None:
        await server.start()
        logger.info("metrics at http://%s:%d/metrics", server.host, server.port)
    try:
        await bus.start()
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        if task is not None:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await service.run()
        logger.info("downsampler stopped")
    finally:
        await bus.stop()
        if server is not None:
            await server.stop()


def _cmd_downsample(args: argparse.Namespace) -> int:
    config = DownsampleConfig.from_args(args)
    endpoint = METRICS_OPTIONS.build(args)
    metrics = (endpoint.host, endpoint.port) if endpoint.port is not None else None
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
    METRICS_OPTIONS.add_arguments(parser)
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
