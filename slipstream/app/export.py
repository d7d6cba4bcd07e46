"""``slipstream export RECORDING``: a recorded race as analysts' rows, without a node.

The recording's raw telemetry goes through the same validation and 2 Hz
event-time windows as a live race (the downsampler's pure core), and each car
frame becomes a row: race, tick, car and a column per channel in channel
units, as ``slipstream subscribe --format`` writes them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from downsample.windows import PartitionWindows
from simulator.errors import RecordingError
from simulator.recording_file import RecordReader
from slipstream.bus.base import Record
from slipstream.client.cli import _int_list, _str_list
from slipstream.client.table import FORMATS, Row, channel_names, channel_values, open_writer
from slipstream.config import RAW_TOPIC
from slipstream.errors import ConfigError
from slipstream.records import Frame

__all__ = ["recording_rows", "register"]

_CHUNK = 2000  # records handed to the windows at a time


def _frames(path: str) -> Iterator[Frame]:
    windows = PartitionWindows(RAW_TOPIC, 0)
    chunk: list[Record] = []
    offset = 0
    with RecordReader(path) as reader:
        for rec in reader:
            if rec.topic != RAW_TOPIC:
                continue  # events are not car-frames
            chunk.append(Record(RAW_TOPIC, 0, offset, rec.key, rec.value, rec.t_ns // 1_000_000))
            offset += 1
            if len(chunk) >= _CHUNK:
                frames, _dead = windows.process(chunk)
                chunk.clear()
                yield from frames
    frames, _dead = windows.process(chunk)
    yield from frames
    yield from windows.flush_all()


def recording_rows(
    path: str, cars: Sequence[int] | None = None, groups: Sequence[str] | None = None
) -> Iterator[Row]:
    """Rows of a recording's 2 Hz car-frames, in the order the windows close.

    Raises:
        RecordingError: The file is not a readable recording.
    """
    names = channel_names(groups)
    wanted = set(cars) if cars else None
    for frame in _frames(path):
        if wanted is None or frame.car in wanted:
            values = channel_values(frame.q, names)
            yield {"race": frame.race, "tick": frame.tick, "car": frame.car, **values}


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add ``slipstream export``."""

    cmd = commands.add_parser(
        "export",
        help="turn a recorded race into rows (JSON lines, CSV, Parquet), without a node",
        description="Read a recording made by `slipstream simulate --record`, reduce it to "
        "2 Hz frames as the pipeline does, and write one row per car-frame: race, tick, car "
        "and every channel of the chosen groups as a column, in channel units (see "
        "`slipstream channels`). Parquet needs pyarrow: pip install 'slipstream[analysis]'.",
    )
    cmd.add_argument("recording", metavar="RECORDING", help="a recording file")
    cmd.add_argument("--format", choices=FORMATS, default="parquet", help="default parquet")
    cmd.add_argument("--out", metavar="FILE", help="output file (default: RECORDING.FORMAT)")
    cmd.add_argument("--cars", type=_int_list, metavar="N,N", help="only these cars")
    cmd.add_argument("--groups", type=_str_list, metavar="G,G", help="only these groups")
    cmd.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    out = args.out or f"{args.recording}.{args.format}"
    try:
        names = channel_names(args.groups)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    writer = open_writer(args.format, out, names)
    count = 0
    try:
        for row in recording_rows(args.recording, args.cars, args.groups):
            writer.write(row)
            count += 1
    except (OSError, RecordingError) as exc:
        raise ConfigError(f"cannot read {args.recording}: {exc}") from None
    finally:
        writer.close()
    if out != "-":
        sys.stderr.write(f"export: {count} rows, {len(names)} channels -> {out}\n")
    return 0
