"""Commands of the broadcast stage: ``slipstream broadcast`` and ``slipstream subscribe``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import re
import signal
import sys
from dataclasses import dataclass
from typing import Any

from broadcast.client import Client, ClientError
from broadcast.config import BROADCAST_OPTIONS, BroadcastConfig, add_broadcast_arguments
from broadcast.decoder import EventItem, FrameItem, NoticeItem, StateItem
from broadcast.protocol import ProtocolError, parse_cursor
from broadcast.server import BroadcastServer
from broadcast.workers import run_workers
from slipstream.bus import make_bus
from slipstream.config import BusConfig, add_bus_arguments
from slipstream.errors import ConfigError
from slipstream.gate import Gate, add_gate_arguments
from slipstream.loop import run as run_loop
from slipstream.options import Option, Options, integer

__all__ = ["NODE_PROCESS_OPTIONS", "SUBSCRIBE_OPTIONS", "register"]

_TOKEN = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class NodeProcesses:
    """How many processes serve one node's port.

    Attributes:
        workers: Node processes sharing the port (SO_REUSEPORT), one per core.
    """

    workers: int = 1


@dataclass(frozen=True, slots=True)
class SubscribeAccess:
    """How ``slipstream subscribe`` proves its access.

    Attributes:
        token: Access token from ``slipstream token``; None when the node needs none.
    """

    token: str | None = None


def _token(raw: str) -> str:
    if not _TOKEN.fullmatch(raw.strip()):
        raise ValueError("expected a token from `slipstream token` (three dot-separated parts)")
    return raw.strip()


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

SUBSCRIBE_OPTIONS = Options(
    SubscribeAccess,
    [
        Option(
            "token", "--token", "access token (see `slipstream token`)",
            parse=_token, env="TOKEN", default_text="none",
        ),
    ],
)  # fmt: skip


def _int_list(text: str) -> list[int]:
    try:
        cars = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected car numbers like 24,48, got {text!r}") from None
    if not cars:
        raise argparse.ArgumentTypeError("give at least one car number")
    return cars


def _str_list(text: str) -> list[str]:
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        raise argparse.ArgumentTypeError("give at least one name")
    return items


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

    sub = commands.add_parser(
        "subscribe",
        help="print a node's live telemetry as JSON lines",
        description="Subscribe to a broadcast node and print one line per car-frame "
        '({"race", "tick", "car", "values": {channel: value}}, values in channel units) and '
        'one {"event": ...} line per race event; connection state goes to stderr.',
    )
    sub.add_argument(
        "url", metavar="URL", help="node URL, e.g. http://127.0.0.1:8000 or ws://127.0.0.1:8000/ws"
    )
    sub.add_argument(
        "--cars", type=_int_list, metavar="N,N", help="car numbers (default: every car)"
    )
    sub.add_argument(
        "--groups",
        type=_str_list,
        metavar="G,G",
        help="channel groups, e.g. tyres,engine (default: every group; see `slipstream channels`)",
    )
    sub.add_argument("--codec", help="sparse, vcdiff or full (default: the node's default)")
    sub.add_argument(
        "--transport",
        choices=["auto", "ws", "sse", "poll"],
        default="auto",
        help="WebSocket, sse (HTTP streaming), long-poll, or auto: WebSocket, falling back "
        "to sse then long-poll as each is refused, climbing back when it works (default)",
    )
    sub.add_argument(
        "--from",
        dest="cursor",
        metavar="RACE:TICK",
        help="start after this cursor (replayed from the node's window, "
        "or a keyframe and a notice when that is past)",
    )
    sub.add_argument("--count", type=int, metavar="N", help="stop after N car-frames")
    SUBSCRIBE_OPTIONS.add_arguments(sub)
    sub.add_argument(
        "--json", action="store_true", help="print JSON lines (default: a short summary)"
    )
    sub.set_defaults(func=_cmd_subscribe)


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


def _cmd_subscribe(args: argparse.Namespace) -> int:
    if args.count is not None and args.count < 1:
        raise ConfigError("--count must be at least 1")
    try:
        cursor = parse_cursor(args.cursor) if args.cursor else None
    except ProtocolError as exc:
        raise ConfigError(f"--from: {exc.message}") from None
    try:
        client = Client(
            args.url,
            cars=args.cars,
            groups=args.groups,
            codec=args.codec,
            transport=args.transport,
            cursor=cursor,
            token=args.token,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_subscribe(client, args.count, args.json))
    return 130


async def _subscribe(client: Client, count: int | None, as_json: bool) -> int:
    printed = 0
    out = sys.stdout
    try:
        async for item in client:
            if isinstance(item, FrameItem):
                if as_json:
                    out.write(json.dumps(item.to_json(), separators=(",", ":")) + "\n")
                else:
                    shown = ", ".join(f"{k}={v}" for k, v in list(item.values.items())[:4])
                    out.write(f"{item.race} tick {item.tick} car {item.car}: {shown} ...\n")
                printed += 1
                if count is not None and printed >= count:
                    out.flush()
                    await client.close()
                    return 0
            elif isinstance(item, EventItem):
                if as_json:
                    out.write(json.dumps(item.to_json(), separators=(",", ":")) + "\n")
                else:
                    out.write(
                        f"{item.race} tick {item.tick} event {item.kind} {item.cars} {item.data}\n"
                    )
            elif isinstance(item, NoticeItem):
                sys.stderr.write(f"notice {item.code}: {item.message}\n")
            elif isinstance(item, StateItem):
                detail = f" ({item.detail})" if item.detail else ""
                sys.stderr.write(f"{item.state} via {item.transport}{detail}\n")
            out.flush()
    except ClientError as exc:
        raise ConfigError(f"the node refused: {exc}") from None
    return 0
