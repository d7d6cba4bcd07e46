"""Car-frames as table rows, and the files analysts read (JSON lines, CSV, Parquet).

A row is one car at one tick: ``race``, ``tick``, ``car`` and one column per
subscribed channel, in channel units (``slipstream channels``), None where the
car had no value.  A stream sends only the channel groups that changed at a
tick; :class:`RowBuilder` carries each car's other groups forward, so every
row holds every subscribed channel as the fan saw it at that tick.

pandas (``to_pandas``) and pyarrow (Parquet) are optional extras:
``pip install 'slipstream[analysis]'``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np
from numpy.typing import NDArray

from broadcast.decoder import FrameItem
from slipstream.catalogue import CATALOGUE, MISSING
from slipstream.errors import ConfigError

__all__ = [
    "FORMATS",
    "FrameBatch",
    "RowBuilder",
    "RowWriter",
    "channel_values",
    "open_writer",
]

#: Export formats: ``jsonl`` (one JSON object a line), ``csv``, ``parquet``.
FORMATS = ("jsonl", "csv", "parquet")
KEY_COLUMNS = ("race", "tick", "car")
Row = dict[str, Any]


def _digits(resolution: float) -> int:
    exponent = Decimal(repr(float(resolution))).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


_CHANNELS = list(CATALOGUE)
_INDEX = {c.name: i for i, c in enumerate(_CHANNELS)}
_DIGITS = [_digits(c.resolution) for c in _CHANNELS]


def channel_names(groups: Sequence[str] | None = None) -> list[str]:
    """Channel names of ``groups`` (None: every group), in catalogue order."""
    wanted = {g.name for g in CATALOGUE.resolve_groups(list(groups) if groups else None)}
    return [c.name for c in CATALOGUE if c.group in wanted]


def channel_values(q: NDArray[np.int32], names: Sequence[str]) -> dict[str, float | None]:
    """Channel-unit values of a frame's quantised counts ``q`` (shape (channels,))."""
    out: dict[str, float | None] = {}
    for name in names:
        i = _INDEX[name]
        count = int(q[i])
        out[name] = None if count == MISSING else round(count * _CHANNELS[i].resolution, _DIGITS[i])
    return out


class RowBuilder:
    """Turns frame items into full rows, carrying each car's unchanged groups forward.

    Args:
        channels: The columns after race, tick and car (subscribed channels).
    """

    def __init__(self, channels: Sequence[str]) -> None:
        self.channels = list(channels)
        self._held: dict[tuple[str, int], dict[str, float | None]] = {}

    @property
    def columns(self) -> list[str]:
        """Every column, in order."""
        return [*KEY_COLUMNS, *self.channels]

    def row(self, item: FrameItem) -> Row:
        """The row of ``item``: its values over the car's last known ones."""
        held = self._held.setdefault((item.race, item.car), dict.fromkeys(self.channels))
        for name, value in item.values.items():
            if name in held:
                held[name] = value
        return {"race": item.race, "tick": item.tick, "car": item.car, **held}


def units(channels: Sequence[str]) -> dict[str, str]:
    """Channel name -> unit."""
    by_name = {c.name: c.unit for c in CATALOGUE}
    return {name: by_name[name] for name in channels}


@dataclass(frozen=True, slots=True)
class FrameBatch:
    """A batch of frame items, e.g. ``SyncClient.frames(200)``.

    Attributes:
        frames: The items, in arrival order.
        channels: Columns after race, tick and car (None: the channels the items hold).
    """

    frames: tuple[FrameItem, ...]
    channels: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.frames)

    def __iter__(self) -> Iterator[FrameItem]:
        return iter(self.frames)

    def rows(self) -> list[Row]:
        """One full row per frame (see :class:`RowBuilder`)."""
        channels = self.channels
        if channels is None:
            seen = {name for item in self.frames for name in item.values}
            channels = tuple(c.name for c in CATALOGUE if c.name in seen)
        builder = RowBuilder(channels)
        return [builder.row(item) for item in self.frames]

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame``: race, tick, car, then a float column per channel.

        ``df.attrs["units"]`` maps each channel to its unit.

        Raises:
            ImportError: pandas is not installed (``pip install 'slipstream[analysis]'``).
        """
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError(
                "to_pandas() needs pandas: pip install 'slipstream[analysis]'"
            ) from exc
        rows = self.rows()
        channels = [c for c in (rows[0] if rows else {}) if c not in KEY_COLUMNS]
        frame = pd.DataFrame(rows, columns=[*KEY_COLUMNS, *channels])
        frame[channels] = frame[channels].astype("float64")
        frame.attrs["units"] = units(channels)
        return frame


class RowWriter(Protocol):
    """Writes rows to a file."""

    def write(self, row: Row) -> None:
        """Write one row."""

    def close(self) -> None:
        """Flush and close the file."""


class _JsonLines:
    def __init__(self, out: IO[str], own: bool) -> None:
        self._out, self._own = out, own

    def write(self, row: Row) -> None:
        self._out.write(json.dumps(row, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self._out.flush()
        if self._own:
            self._out.close()


class _Csv:
    def __init__(self, out: IO[str], own: bool, columns: Sequence[str]) -> None:
        self._out, self._own = out, own
        self._writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
        self._writer.writeheader()

    def write(self, row: Row) -> None:
        self._writer.writerow(row)

    def close(self) -> None:
        self._out.flush()
        if self._own:
            self._out.close()


class _Parquet:
    """Parquet through pyarrow, in row groups of ``batch_rows``; units in field metadata."""

    def __init__(self, path: Path, channels: Sequence[str], batch_rows: int = 4096) -> None:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise ConfigError(
                "--format parquet needs pyarrow: pip install 'slipstream[analysis]'"
            ) from exc
        self._pa = pa
        unit = units(channels)
        fields = [
            pa.field("race", pa.string()),
            pa.field("tick", pa.int64()),
            pa.field("car", pa.int32()),
            *(pa.field(n, pa.float64(), metadata={"unit": unit[n]}) for n in channels),
        ]
        self._schema = pa.schema(fields, metadata={"units": json.dumps(unit)})
        self._writer = pq.ParquetWriter(str(path), self._schema)
        self._rows: list[Row] = []
        self._batch_rows = batch_rows

    def write(self, row: Row) -> None:
        self._rows.append(row)
        if len(self._rows) >= self._batch_rows:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            table = self._pa.Table.from_pylist(self._rows, schema=self._schema)
            self._writer.write_table(table)
            self._rows = []

    def close(self) -> None:
        self._flush()
        self._writer.close()


def open_writer(fmt: str, out: str | Path | None, channels: Sequence[str]) -> RowWriter:
    """A writer of rows with ``channels`` as columns after race, tick and car.

    Args:
        fmt: ``jsonl``, ``csv`` or ``parquet``.
        out: File path; None or ``-`` writes to stdout (not for Parquet).

    Raises:
        ConfigError: Unknown format, Parquet to stdout, or pyarrow missing.
    """
    import sys

    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    to_stdout = out is None or str(out) == "-"
    if fmt == "parquet":
        if to_stdout:
            raise ConfigError("--format parquet needs --out FILE")
        return _Parquet(Path(str(out)), channels)
    stream: IO[str] = (
        sys.stdout if to_stdout else open(str(out), "w", encoding="utf-8", newline="")  # noqa: SIM115
    )
    if fmt == "csv":
        return _Csv(stream, not to_stdout, [*KEY_COLUMNS, *channels])
    return _JsonLines(stream, not to_stdout)


def write_rows(rows: Iterable[Row], writer: RowWriter) -> int:
    """Write ``rows`` and close ``writer``; the number written."""
    count = 0
    try:
        for row in rows:
            writer.write(row)
            count += 1
    finally:
        writer.close()
    return count
