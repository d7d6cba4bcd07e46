"""The race recording format: a compact, exact copy of what the simulator sent (pure codec).

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

:class:`RecordingEncoder` turns records into the file's bytes and
:class:`RecordingDecoder` bytes back into records; neither touches a file
(:mod:`simulator.recording_file` reads and writes them).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
from numpy.typing import NDArray

from simulator.errors import RecordingError
from slipstream.catalogue import CATALOGUE
from slipstream.config import RAW_TOPIC
from slipstream.records import RawBatch, RecordError, decode_raw, encode_raw

__all__ = ["FORMAT", "MAGIC", "RecordedRecord", "RecordingDecoder", "RecordingEncoder"]

MAGIC = b"SLIPREC1"
FORMAT = 1
_RES = CATALOGUE.resolution
_INV_RES = 1.0 / _RES
_FRAME_ENTRIES = 400
_WIDTHS = (1, 2, 4, 8)
_LENGTH = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class RecordedRecord:
    """One record of a recording: when it was sent, where, and its bytes."""

    t_ns: int
    topic: str
    key: bytes | None
    value: bytes


class RecordingEncoder:
    """Records in, the recording's bytes out.

    Args:
        writer: Who wrote the recording (kept in the header).

    Attributes:
        raw_bytes: Total size of the record values added (the stream's size).
        records: Records added.
    """

    def __init__(self, writer: str = "slipstream simulate") -> None:
        self._writer = writer
        self._entries: list[list[Any]] = []
        self._last: dict[int, NDArray[np.int64]] = {}
        self.raw_bytes = 0
        self.records = 0

    def start(self) -> bytes:
        """The bytes that open the recording: the magic and the header frame."""
        header = {"format": FORMAT, "catalogue": CATALOGUE.hash, "channels": len(CATALOGUE)}
        return MAGIC + _frame([{**header, "writer": self._writer}])

    def add(self, t_ns: int, topic: str, key: bytes | None, value: bytes) -> bytes:
        """Add one record sent at race time ``t_ns``; returns a frame when one is full, else b""."""
        self.raw_bytes += len(value)
        self.records += 1
        entry = self._compact(t_ns, key, value) if topic == RAW_TOPIC else None
        self._entries.append(entry or [0, t_ns, topic, key, value])
        return self.flush() if len(self._entries) >= _FRAME_ENTRIES else b""

    def flush(self) -> bytes:
        """Returns and clears the frame of the records added since the last one (b"" if none)."""
        if not self._entries:
            return b""
        data = _frame(self._entries)
        self._entries = []
        return data

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


class RecordingDecoder:
    """The recording's bytes in, records out.

    Args:
        name: What is decoded (a path), for error messages.

    Feed it the bytes in order with :meth:`feed` and call :meth:`end` at the
    end of the input; :attr:`header` is set once the header frame is read.

    Raises:
        RecordingError: Not a recording, an unknown format, or damaged bytes.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.header: dict[str, Any] | None = None
        self._buffer = bytearray()
        self._magic_seen = False
        self._last: dict[int, NDArray[np.int64]] = {}

    def feed(self, data: bytes) -> list[RecordedRecord]:
        """Decode what ``data`` completes; returns the records it held."""
        self._buffer += data
        if not self._magic_seen:
            if len(self._buffer) < len(MAGIC):
                return []
            if self._buffer[: len(MAGIC)] != MAGIC:
                raise RecordingError(f"{self.name} is not a Slipstream recording (bad magic)")
            del self._buffer[: len(MAGIC)]
            self._magic_seen = True
        records: list[RecordedRecord] = []
        while len(self._buffer) >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(self._buffer)
            if len(self._buffer) < _LENGTH.size + size:
                break
            body = bytes(self._buffer[_LENGTH.size : _LENGTH.size + size])
            del self._buffer[: _LENGTH.size + size]
            entries = self._entries(body)
            if self.header is None:
                self._read_header(entries)
                continue
            records.extend(self._record(entry) for entry in entries)
        return records

    def end(self) -> None:
        """The input ended.

        Raises:
            RecordingError: It ended inside the magic, the header or a frame.
        """
        if not self._magic_seen:
            raise RecordingError(f"{self.name} is not a Slipstream recording (bad magic)")
        if self.header is None:
            raise RecordingError(f"{self.name}: unknown recording format, expected {FORMAT}")
        if 0 < len(self._buffer) < _LENGTH.size:
            raise RecordingError(f"{self.name}: truncated frame header")
        if self._buffer:
            raise RecordingError(f"{self.name}: truncated frame")

    def _entries(self, body: bytes) -> list[Any]:
        try:
            entries = msgpack.unpackb(zlib.decompress(body), raw=False)
        except (zlib.error, ValueError, msgpack.UnpackException) as exc:
            raise RecordingError(f"{self.name}: damaged frame: {exc}") from exc
        if not isinstance(entries, list):
            raise RecordingError(f"{self.name}: damaged frame")
        return entries

    def _read_header(self, entries: list[Any]) -> None:
        if not entries or not isinstance(entries[0], dict) or entries[0].get("format") != FORMAT:
            raise RecordingError(f"{self.name}: unknown recording format, expected {FORMAT}")
        self.header = entries[0]

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
            raise RecordingError(f"{self.name}: damaged entry: {exc}") from exc


def _frame(entries: list[Any]) -> bytes:
    body = zlib.compress(msgpack.packb(entries, use_bin_type=True), 1)
    return _LENGTH.pack(len(body)) + body
