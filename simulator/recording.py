"""The race recording file: a compact, exact copy of what the simulator sent.

Layout (version 1, little-endian)::

    b"SLIPREC1"                          8-byte magic
    frame*                               until the end of the file
    frame  = u32 length, then ``length`` bytes of zlib-compressed msgpack:
             an array of entries; the first frame holds only the header map
             {"format": 1, "catalogue": hash, "channels": 139, "writer": "..."}

    entry  = [0, t_ns, topic, key, value]          a record kept verbatim
           | [1, t_ns, key, race, car, seq, t0_ns, rate_hz, samples, channels,
              width, deltas, exceptions]           a raw batch, compacted

``t_ns`` is the race time at which the record was sent (replay paces on it).
A raw batch is compacted when it is a well-formed version-1 record of the
catalogue's width: its values are turned back into counts
``q = rint(value / resolution)``; ``deltas`` holds the differences of ``q``
along time (the first row against the last row of the same car's previous
compacted batch in the file), zigzag-encoded as unsigned integers of
``width`` bytes, channel-major; ``exceptions`` lists ``(u32 index, u32
float32 bits)`` pairs for values that ``float32(q * resolution)`` does not
give back bit for bit (NaN dropouts, anything unusual).  Everything else
(events, corrupted records) is kept verbatim.  Reading rebuilds each record
with :func:`slipstream.records.encode_raw`, which is deterministic, so a
replay is byte-identical to the original stream.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import msgpack
import numpy as np
from numpy.typing import NDArray

from simulator.errors import RecordingError
from slipstream.catalogue import CATALOGUE
from slipstream.config import RAW_TOPIC
from slipstream.records import RawBatch, RecordError, decode_raw, encode_raw

__all__ = ["MAGIC", "RecordReader", "RecordWriter", "RecordedRecord"]

MAGIC = b"SLIPREC1"
FORMAT = 1
_RES = CATALOGUE.resolution
_INV_RES = 1.0 / _RES
_FRAME_ENTRIES = 400
_WIDTHS = (1, 2, 4, 8)


@dataclass(frozen=True, slots=True)
class RecordedRecord:
    """One record of a recording: when it was sent, where, and its bytes."""

    t_ns: int
    topic: str
    key: bytes | None
    value: bytes


class RecordWriter:
    """Writes a recording; use as a context manager or call :meth:`close`.

    Attributes:
        raw_bytes: Total size of the record values written (the stream's size).
        records: Records written.
    """

    def __init__(self, path: str | Path, writer: str = "slipstream simulate") -> None:
        self.path = Path(path)
        self._file: BinaryIO = self.path.open("wb")
        self._file.write(MAGIC)
        header = {"format": FORMAT, "catalogue": CATALOGUE.hash, "channels": len(CATALOGUE)}
        self._frame([{**header, "writer": writer}])
        self._entries: list[list[Any]] = []
        self._last: dict[int, NDArray[np.int64]] = {}
        self.raw_bytes = 0
        self.records = 0

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def write(self, t_ns: int, topic: str, key: bytes | None, value: bytes) -> None:
        """Append one record sent at race time ``t_ns``."""
        self.raw_bytes += len(value)
        self.records += 1
        entry = self._compact(t_ns, key, value) if topic == RAW_TOPIC else None
        self._entries.append(entry or [0, t_ns, topic, key, value])
        if len(self._entries) >= _FRAME_ENTRIES:
            self._flush()

    def close(self) -> None:
        """Write what is buffered and close the file (idempotent)."""
        if self._file.closed:
            return
        self._flush()
        self._file.close()

    def _flush(self) -> None:
        if self._entries:
            self._frame(self._entries)
            self._entries = []

    def _frame(self, entries: list[Any]) -> None:
        body = zlib.compress(msgpack.packb(entries, use_bin_type=True), 1)
        self._file.write(struct.pack("<I", len(body)))
        self._file.write(body)

    def _compact(self, t_ns: int, key: bytes | None, value: bytes) -> list[Any] | None:
        try:
            batch = decode_raw(value)
        except RecordError:
            return None
        n, channels = batch.values.shape
        if channels != len(CATALOGUE) or n == 0 or encode_raw(batch) != value:
            return None
        values = batch.values
        v64 = values.astype(np.float64)
        finite = np.isfinite(v64)
        q = np.rint(np.where(finite, v64, 0.0) * _INV_RES)
        if np.abs(q).max() >= 2.0**52:
            return None
        rebuilt = (q * _RES).astype(np.float32)
        wrong = np.flatnonzero(rebuilt.view(np.uint32) != values.view(np.uint32))
        if wrong.size > values.size // 20:
            return None
        counts = q.astype(np.int64)
        previous = self._last.get(batch.car)
        first = previous if previous is not None else np.zeros(channels, dtype=np.int64)
        deltas = np.diff(counts, axis=0, prepend=first[None, :])
        zigzag = ((deltas << 1) ^ (deltas >> 63)).view(np.uint64)
        top = int(zigzag.max())
        width = next(w for w in _WIDTHS if top < 1 << (8 * w))
        self._last[batch.car] = counts[-1]
        exceptions = np.stack([wrong.astype(np.uint32), values.reshape(-1).view(np.uint32)[wrong]])
        return [
            1, t_ns, key, batch.race, batch.car, batch.seq, batch.t0_ns, batch.rate_hz, n,
            channels, width, zigzag.T.astype(f"<u{width}").tobytes(),
            exceptions.T.astype("<u4").tobytes(),
        ]  # fmt: skip


class RecordReader:
    """Reads a recording written by :class:`RecordWriter`.

    Raises:
        RecordingError: Not a recording, an unknown format, or a damaged file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._file: BinaryIO = self.path.open("rb")
        except OSError as exc:
            raise RecordingError(f"cannot open recording {self.path}: {exc.strerror}") from exc
        if self._file.read(len(MAGIC)) != MAGIC:
            self._file.close()
            raise RecordingError(f"{self.path} is not a Slipstream recording (bad magic)")
        header = next(self._frames(), None)
        if not header or not isinstance(header[0], dict) or header[0].get("format") != FORMAT:
            self._file.close()
            raise RecordingError(f"{self.path}: unknown recording format, expected {FORMAT}")
        self.header: dict[str, Any] = header[0]
        self._last: dict[int, NDArray[np.int64]] = {}

    def __enter__(self) -> RecordReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def _frames(self) -> Iterator[list[Any]]:
        while True:
            size_bytes = self._file.read(4)
            if not size_bytes:
                return
            if len(size_bytes) < 4:
                raise RecordingError(f"{self.path}: truncated frame header")
            (size,) = struct.unpack("<I", size_bytes)
            body = self._file.read(size)
            if len(body) < size:
                raise RecordingError(f"{self.path}: truncated frame")
            try:
                entries = msgpack.unpackb(zlib.decompress(body), raw=False)
            except (zlib.error, ValueError, msgpack.UnpackException) as exc:
                raise RecordingError(f"{self.path}: damaged frame: {exc}") from exc
            if not isinstance(entries, list):
                raise RecordingError(f"{self.path}: damaged frame")
            yield entries

    def __iter__(self) -> Iterator[RecordedRecord]:
        for entries in self._frames():
            for entry in entries:
                yield self._record(entry)

    def _record(self, entry: list[Any]) -> RecordedRecord:
        try:
            if entry[0] == 0:
                _, t_ns, topic, key, value = entry
                return RecordedRecord(t_ns, topic, key, value)
            _, t_ns, key, race, car, seq, t0, hz, n, channels, width, deltas, exc = entry
            zigzag = np.frombuffer(deltas, dtype=f"<u{width}").reshape(channels, n).T
            z = zigzag.astype(np.int64)
            counts = np.cumsum((z >> 1) ^ -(z & 1), axis=0)
            previous = self._last.get(car)
            if previous is not None:
                counts += previous
            self._last[car] = counts[-1]
            values = np.ascontiguousarray(counts * _RES[:channels], dtype=np.float32)
            fixes = np.frombuffer(exc, dtype="<u4").reshape(-1, 2)
            values.reshape(-1).view(np.uint32)[fixes[:, 0]] = fixes[:, 1]
            value = encode_raw(RawBatch(race, car, seq, t0, hz, values))
            return RecordedRecord(t_ns, RAW_TOPIC, key, value)
        except (ValueError, TypeError, IndexError) as exc:
            raise RecordingError(f"{self.path}: damaged entry: {exc}") from exc
