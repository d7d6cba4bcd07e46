"""The broadcast stage's command, ``slipstream broadcast`` (``subscribe``: slipstream.client)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys
from dataclasses import dataclass
from typing import Any

from broadcast.config import BROADCAST_OPTIONS, BroadcastConfig, add_broadcast_arguments
from broadcast.server import BroadcastServer
from broadcast.workers import run_workers
from slipstream.bus import make_bus
from slipstream.config import BusConfig, add_bus_arguments
from slipstream.errors import ConfigError
from slipstream.gate import Gate, add_gate_arguments
from slipstream.loop import run as run_loop
from slipstream.options import Option, Options, integer

__all__ = ["NODE_PROCESS_OPTIONS", "register"]


@dataclass(frozen=True, slots=True)
class NodeProcesses:
    """How many processes serve one node's port.

    Attributes:
        workers: Node processes sharing the port (SO_REUSEPORT), one per core.
    """

    workers: int = 1


NODE_PROCESS_OPTIONS = Options(
    NodeProcesses,
    [
        Option(
            "workers", "--workers",
            "run N node processes sharing the port (SO_REUSEPORT), one per core; /metrics "
            "and /ops show the whole node (docs/deploy.md)",
            parse=integer(minimum=1), env="WORKERS", metavar="N",
        ),
    ],
)  # fmt: skip


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add this stage's commands."""
    node = commands.add_parser(
        "broadcast",
        help="run a broadcast node on the Kafka bus",
        description="Serve fans (WebSocket /ws, long-poll /v1/poll, /metrics, /healthz, "
        "/v1/channels, /) from the frames and events topics of a Kafka bus. Every node "
        "reads every partition, so nodes can be added behind a load balancer.",
    )
    add_bus_arguments(node, required=True)
    add_broadcast_arguments(node)
    add_gate_arguments(node)  # --no-auth and the limits (docs/security.md)
    BROADCAST_OPTIONS.add_arguments(node, ("frames_topic", "events_topic"))
    NODE_PROCESS_OPTIONS.add_arguments(node)
    node.set_defaults(func=_cmd_broadcast)


def _cmd_broadcast(args: argparse.Namespace) -> int:
    bus_config = BusConfig.from_args(args)
    if bus_config.kafka is None:
        raise ConfigError(
            "a standalone node needs --kafka HOST:PORT (use `slipstream run` in process)"
        )
    config = BroadcastConfig.from_args(args)
    gate = Gate.from_args(args)
    if gate.limits is not None:
        config = dataclasses.replace(config, max_message_bytes=gate.limits.max_message_bytes)
    sys.stderr.write(gate.describe() + "\n")
    if args.workers != 1:
        return run_workers(
            bus_config, config, args.workers, gate=gate,
            log_level=args.log_level, log_format=args.log_format,
        )  # fmt: skip
    return run_loop(_serve(make_bus(bus_config), config, gate), config.event_loop)


async def _serve(bus: Any, config: BroadcastConfig, gate: Gate | None = None) -> int:

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await bus.start()
    try:
        async with BroadcastServer(config, bus, gate=gate):
            await stop.wait()
    finally:
        await bus.stop()
    return 0
