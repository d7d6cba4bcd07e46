"""Checks of RFC 3284 (VCDIFF) deltas made before a decoder runs them.

The PyPI ``vcdiff-decoder`` trusts what it reads: it ignores a window's delta
indicator (so secondary-compressed sections would decode as garbage) and
executes instruction sizes as given (a corrupted RUN size allocates without
bound).  :func:`check_delta` walks the file and window headers and the
instruction stream, which costs a few microseconds, and refuses all of that.
"""

from __future__ import annotations

from slipstream.codecs.base import CodecError

__all__ = ["MAGIC", "check_delta"]

#: RFC 3284 magic bytes and version 0.
MAGIC = b"\xd6\xc3\xc4\x00"
_VCD_SOURCE = 0x01
_VCD_ADLER32 = 0x04


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 63, 7):
        if pos >= len(data):
            raise CodecError("vcdiff delta is truncated inside a header field")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
    raise CodecError("vcdiff delta has an over-long varint")


def _code_table_sizes() -> tuple[tuple[int, ...], ...]:
    """Sizes of the instructions of each opcode of the default code table (0: explicit)."""
    table: list[tuple[int, ...]] = [(0,)]  # RUN
    table += [(size,) for size in range(18)]  # ADD 0, 1..17
    table += [(size,) for _ in range(9) for size in (0, *range(4, 19))]  # COPY, 9 modes
    table += [(add, copy) for _ in range(6) for add in range(1, 5) for copy in (4, 5, 6)]
    table += [(add, 4) for _ in range(3) for add in range(1, 5)]
    table += [(4, 1) for _ in range(9)]  # COPY 4 + ADD 1
    return tuple(table)


_SIZES = _code_table_sizes()


def _check_sizes(instructions: bytes, window_size: int) -> None:
    """Refuse an instruction stream whose sizes do not add up to ``window_size``.

    The PyPI decoder executes sizes as given; a corrupted size would make it
    allocate or loop without bound before any length check could run.
    """
    total, pos = 0, 0
    while pos < len(instructions):
        code = instructions[pos]
        pos += 1
        for size in _SIZES[code]:
            if size == 0:
                size, pos = _varint(instructions, pos)
            total += size
            if total > window_size:
                raise CodecError("vcdiff instructions overrun the target window")
    if total != window_size:
        raise CodecError(
            f"vcdiff instructions rebuild {total} bytes of a {window_size}-byte window"
        )


def check_delta(payload: bytes, source_size: int) -> int:
    """Check the header and window headers of a delta; its target length.

    Raises:
        CodecError: Not VCDIFF, features this decode path does not support
            (secondary compression, custom code table, application header,
            VCD_TARGET windows), a source segment outside the base, instruction
            sizes that do not add up to the window, or truncation.
    """
    if len(payload) < 5 or payload[:4] != MAGIC:
        raise CodecError("not a VCDIFF delta (bad magic or version)")
    if payload[4] != 0:
        raise CodecError(
            f"VCDIFF header indicator {payload[4]:#x}: secondary compression, custom code "
            "tables and application headers are not supported (encode with -S none -A)"
        )
    pos, target_size, windows = 5, 0, 0
    while pos < len(payload):
        indicator = payload[pos]
        pos += 1
        if indicator & ~(_VCD_SOURCE | _VCD_ADLER32):
            raise CodecError(f"VCDIFF window indicator {indicator:#x} is not supported")
        if indicator & _VCD_SOURCE:
            size, pos = _varint(payload, pos)
            where, pos = _varint(payload, pos)
            if where + size > source_size:
                raise CodecError(
                    f"VCDIFF source segment {where}+{size} exceeds the {source_size}-byte base"
                )
        length, pos = _varint(payload, pos)
        end = pos + length
        if end > len(payload):
            raise CodecError("vcdiff delta is truncated")
        window_size, pos = _varint(payload, pos)
        if pos >= end:
            raise CodecError("vcdiff window is truncated")
        if payload[pos] != 0:
            raise CodecError("VCDIFF window uses secondary compression (encode with -S none)")
        data_len, pos = _varint(payload, pos + 1)
        inst_len, pos = _varint(payload, pos)
        _, pos = _varint(payload, pos)
        if indicator & _VCD_ADLER32:
            pos += 4
        pos += data_len
        if pos + inst_len > end:
            raise CodecError("vcdiff window sections overrun the window")
        _check_sizes(payload[pos : pos + inst_len], window_size)
        target_size += window_size
        windows += 1
        pos = end
    if windows == 0:
        raise CodecError("vcdiff delta has no window")
    return target_size
