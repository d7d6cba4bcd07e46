"""``slipstream run``: every stage of the pipeline in one process.

By default the stages talk through the in-process bus (nothing to install);
with ``--kafka HOST:PORT`` they talk through Kafka, exactly as separate
``slipstream simulate|downsample|broadcast`` processes would.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from broadcast.config import BroadcastConfig, add_broadcast_arguments
from broadcast.server import BroadcastServer
from downsample.config import DownsampleConfig, add_downsample_arguments
from downsample.service import DownsampleService
from simulator.config import SimulatorConfig, add_simulator_arguments
from simulator.replay import ReplayService
from simulator.service import SimulatorService
from slipstream.app.cluster import run_cluster
from slipstream.bus import make_bus
from slipstream.config import BusConfig, add_bus_arguments
from slipstream.errors import ConfigError
from slipstream.gate import Gate, add_gate_arguments
from slipstream.loop import run as run_loop
from slipstream.metrics import Registry

__all__ = ["register", "run_pipeline"]

log = logging.getLogger(__name__)

#: How long a clean shutdown may take before the process gives up waiting.
SHUTDOWN_TIMEOUT_S = 4.0


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add the ``run`` command."""
    parser = commands.add_parser(
        "run",
        help="run every stage (simulator, ingest/downsample, broadcast) in one process",
        description="Run the whole pipeline in one process: a simulated race (or a recorded "
        "one with --replay) -> ingest -> 2 Hz downsample -> WebSocket and long-poll fan-out. "
        "Uses the in-process bus unless --kafka is given. Stops cleanly on Ctrl-C or SIGTERM.",
    )
    add_bus_arguments(parser)
    add_broadcast_arguments(parser)
    add_simulator_arguments(parser)
    add_downsample_arguments(parser)
    add_gate_arguments(parser)  # --no-auth and the limits (docs/security.md)
    parser.add_argument(
        "--replay",
        metavar="FILE",
        type=Path,
        help="serve a race recorded with `slipstream simulate --record FILE` instead of "
        "simulating one",
    )
    parser.add_argument(
        "--nodes",
        type=int,
        metavar="N",
        default=1,
        help="with --kafka and N > 1: a local multi-process deployment instead of one process: "
        "N broadcast nodes and N downsamplers behind nginx on --port; a child that dies is "
        "restarted (docs/deploy.md)",
    )
    parser.set_defaults(func=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    if args.nodes < 1:
        raise ConfigError("--nodes must be at least 1")
    if args.nodes > 1:
        return run_cluster(args)
    bus_config = BusConfig.from_args(args)
    simulator_config = SimulatorConfig.from_args(args)
    downsample_config = DownsampleConfig.from_args(args)
    broadcast_config = BroadcastConfig.from_args(args)
    gate = Gate.from_args(args)
    if gate.limits is not None:
        max_bytes = gate.limits.max_message_bytes
        broadcast_config = dataclasses.replace(broadcast_config, max_message_bytes=max_bytes)
    replay: Path | None = args.replay
    if replay is not None and not replay.is_file():
        raise ConfigError(f"--replay {replay}: no such file")
    return run_loop(
        run_pipeline(
            bus_config, simulator_config, downsample_config, broadcast_config, replay, gate
        ),
        broadcast_config.event_loop,
    )


async def run_pipeline(
    bus_config: BusConfig,
    simulator_config: SimulatorConfig,
    downsample_config: DownsampleConfig,
    broadcast_config: BroadcastConfig,
    replay: Path | None = None,
    gate: Gate | None = None,
) -> int:
    """Run every stage until SIGINT/SIGTERM; returns the exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    registry = Registry()
    bus = make_bus(bus_config)
    await bus.start()
    try:
        server = BroadcastServer(broadcast_config, bus, registry, gate)
        await server.start()
        try:
            _print_banner(server.url, bus_config)
            sys.stdout.write((gate or Gate()).describe() + "\n")  # and how to switch it
            sys.stdout.flush()
            downsampler = DownsampleService(downsample_config, bus, registry)
            if replay is not None:
                source: SimulatorService | ReplayService = ReplayService(
                    replay, bus, speed=simulator_config.speed, registry=registry
                )
            else:
                source = SimulatorService(simulator_config, bus, registry)
            tasks = [
                asyncio.create_task(downsampler.run(), name="downsample"),
                asyncio.create_task(_run_source(source), name="source"),
            ]
            stopper = asyncio.create_task(stop.wait(), name="stop")
            done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
            failed = [t for t in done if t is not stopper and t.exception() is not None]
            for task in [*tasks, stopper]:
                task.cancel()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SHUTDOWN_TIMEOUT_S):
                    await asyncio.gather(*tasks, stopper, return_exceptions=True)
            if failed:
                exc = failed[0].exception()
                assert exc is not None
                raise exc
        finally:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SHUTDOWN_TIMEOUT_S / 2):
                    await server.stop()
    finally:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SHUTDOWN_TIMEOUT_S / 2):
                await bus.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    sys.stderr.write("slipstream run: stopped\n")
    return 0


async def _run_source(source: SimulatorService | ReplayService) -> None:
    """Run the race source; once the race is over, keep serving its final state."""
    result = await source.run()
    summary = getattr(result, "format", None)
    if callable(summary):
        sys.stderr.write(summary() + "\n")
    log.info("race over; still serving its final state until stopped")
    await asyncio.Event().wait()


def _print_banner(url: str, bus_config: BusConfig) -> None:
    ws_url = url.replace("http://", "ws://", 1).rstrip("/") + "/ws"
    bus = f"Kafka at {bus_config.kafka}" if bus_config.kafka else "the in-process bus"
    lines = [
        f"slipstream run: serving on {url} ({bus})",
        f"  dashboard   {url}",
        f"  operations  {url.rstrip('/')}/ops",
        f"  websocket   {ws_url}",
        f"  long-poll   {url.rstrip('/')}/v1/poll",
        f"  channels    {url.rstrip('/')}/v1/channels",
        f"  metrics     {url.rstrip('/')}/metrics",
        f"  health      {url.rstrip('/')}/healthz",
        f"  try:        slipstream subscribe {ws_url} --count 20 --json",
        "Press Ctrl-C to stop.",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
