"""``slipstream subscribe``: follow a node as a fan, print or export what arrives."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from dataclasses import dataclass
from typing import Any

from broadcast.decoder import EventItem, FrameItem, NoticeItem, StateItem
from broadcast.protocol import ProtocolError, parse_cursor
from slipstream.client.connection import Client
from slipstream.client.table import FORMATS, RowBuilder, RowWriter, channel_names, open_writer
from slipstream.errors import ConfigError, SlipstreamError
from slipstream.options import Option, Options, text

__all__ = ["SUBSCRIBE_OPTIONS", "register"]


@dataclass(frozen=True, slots=True)
class SubscribeAccess:
    """How ``slipstream subscribe`` proves its access.

    Attributes:
        token: Access token from ``slipstream token``; None when the node needs none.
    """

    token: str | None = None


#: The node judges the token (its refusal, with the reason, ends the command).
SUBSCRIBE_OPTIONS = Options(
    SubscribeAccess,
    [
        Option(
            "token", "--token", "access token (see `slipstream token`)",
            parse=text, env="TOKEN", default_text="none",
        ),
    ],
)  # fmt: skip


class Refused(SlipstreamError):
    """The node refused the token or the subscription."""


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
    """Add ``slipstream subscribe``."""
    sub = commands.add_parser(
        "subscribe",
        help="print a node's live telemetry as JSON lines, or export it (CSV, Parquet)",
        description="Subscribe to a broadcast node and print one line per car-frame "
        '({"race", "tick", "car", "values": {channel: value}}, values in channel units) and '
        'one {"event": ...} line per race event; connection state goes to stderr. With '
        "--format, write one row per car-frame instead: race, tick, car and every subscribed "
        "channel as a column. A refusal by the node (bad, missing or expired token, a "
        "subscription out of scope) exits with status 2 and the node's reason.",
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
    sub.add_argument(
        "--format",
        choices=FORMATS,
        help="write one row per car-frame (race, tick, car, a column per subscribed channel "
        "in channel units) as JSON lines, CSV or Parquet (Parquet needs pyarrow: "
        "pip install 'slipstream[analysis]')",
    )
    sub.add_argument(
        "--out", metavar="FILE", help="with --format: write to FILE (default: stdout; not Parquet)"
    )
    sub.set_defaults(func=_cmd_subscribe)


def _cmd_subscribe(args: argparse.Namespace) -> int:
    if args.count is not None and args.count < 1:
        raise ConfigError("--count must be at least 1")
    if args.out is not None and args.format is None:
        raise ConfigError("--out needs --format jsonl, csv or parquet")
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
        # The columns of an export; without --format the node judges the groups.
        channels = channel_names(args.groups) if args.format else []
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    writer = open_writer(args.format, args.out, channels) if args.format else None
    try:
        with contextlib.suppress(KeyboardInterrupt):
            return asyncio.run(_subscribe(client, args.count, args.json, writer, channels))
        return 130
    finally:
        if writer is not None:
            writer.close()


async def _subscribe(
    client: Client,
    count: int | None,
    as_json: bool,
    writer: RowWriter | None = None,
    channels: list[str] | None = None,
) -> int:
    printed = 0
    out = sys.stdout
    rows = RowBuilder(channels or [])
    async with client:
        async for item in client:
            if isinstance(item, FrameItem):
                if writer is not None:
                    writer.write(rows.row(item))
                elif as_json:
                    out.write(json.dumps(item.to_json(), separators=(",", ":")) + "\n")
                else:
                    shown = ", ".join(f"{k}={v}" for k, v in list(item.values.items())[:4])
                    out.write(f"{item.race} tick {item.tick} car {item.car}: {shown} ...\n")
                printed += 1
                if count is not None and printed >= count:
                    out.flush()
                    return 0
            elif isinstance(item, EventItem):
                if writer is not None:
                    continue  # rows are car-frames
                if as_json:
                    out.write(json.dumps(item.to_json(), separators=(",", ":")) + "\n")
                else:
                    out.write(
                        f"{item.race} tick {item.tick} event {item.kind} {item.cars} {item.data}\n"
                    )
            elif isinstance(item, NoticeItem):
                sys.stderr.write(f"notice {item.code}: {item.message}\n")
            elif isinstance(item, StateItem):
                if item.refused:
                    raise Refused(f"the node refused: {item.detail}")
                detail = f" ({item.detail})" if item.detail else ""
                sys.stderr.write(f"{item.state} via {item.transport}{detail}\n")
            if writer is None:
                out.flush()
    return 0
