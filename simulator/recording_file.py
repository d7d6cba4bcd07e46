"""Recording files: :mod:`simulator.recording`'s codec on a file.

:class:`RecordWriter` writes what the simulator sends to a file as it goes;
:class:`RecordReader` reads one back, record by record, in bounded memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from simulator.errors import RecordingError
from simulator.recording import RecordedRecord, RecordingDecoder, RecordingEncoder

__all__ = ["RecordReader", "RecordWriter"]

#: Bytes read from the file at a time.
_CHUNK_BYTES = 1 << 16


class RecordWriter:
    """Writes a recording; use as a context manager or call :meth:`close`.

    Args:
        path: The file to create (replaced if it exists).
        writer: Who writes it (kept in the header).
    """

    def __init__(self, path: str | Path, writer: str = "slipstream simulate") -> None:
        self.path = Path(path)
        self._encoder = RecordingEncoder(writer)
        self._file: BinaryIO = self.path.open("wb")
        self._file.write(self._encoder.start())

    @property
    def raw_bytes(self) -> int:
        """Total size of the record values written (the stream's size)."""
        return self._encoder.raw_bytes

    @property
    def records(self) -> int:
        """Records written."""
        return self._encoder.records

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def write(self, t_ns: int, topic: str, key: bytes | None, value: bytes) -> None:
        """Append one record sent at race time ``t_ns``."""
        frame = self._encoder.add(t_ns, topic, key, value)
        if frame:
            self._file.write(frame)

    def close(self) -> None:
        """Write what is buffered and close the file (idempotent)."""
        if self._file.closed:
            return
        self._file.write(self._encoder.flush())
        self._file.close()


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
        self._decoder = RecordingDecoder(str(self.path))
        self._pending: list[RecordedRecord] = []
        self._ended = False
        try:
            while self._decoder.header is None and not self._ended:
                self._read()
        except RecordingError:
            self._file.close()
            raise
        assert self._decoder.header is not None  # _read() raised otherwise
        self.header: dict[str, Any] = self._decoder.header

    def __enter__(self) -> RecordReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __iter__(self) -> Iterator[RecordedRecord]:
        while True:
            pending, self._pending = self._pending, []
            yield from pending
            if self._ended:
                return
            self._read()

    def _read(self) -> None:
        data = self._file.read(_CHUNK_BYTES)
        if not data:
            self._ended = True
            self._decoder.end()
            return
        self._pending.extend(self._decoder.feed(data))
