"""``sparse``: per part, a changed-channel bitmap and zigzag nibble varints of the differences.

Part layout (delta against the previous values ``base`` of the same car and group)::

    bitmap     ceil(size / 8) bytes; bit i (LSB first) set when channel i changed
    varints    one zigzag nibble varint of ``value - base`` per set bit, in channel
               order, nibbles packed low nibble first; a zero nibble pads an odd count

A nibble varint has three value bits per nibble and bit 3 set on every nibble but
the last, least significant group first (:mod:`slipstream.codecs.varint`): most
channels move by a few counts per tick, so a difference usually costs half a byte
or a byte, not a byte or two.  A keyframe is the same layout against an all-zero
base, so it lists the non-zero channels.  Differences are taken in int64: a step
to or from MISSING (int32 min) does not fit int32.  A part always carries its full
bitmap, so an unchanged group costs ``ceil(size / 8)`` bytes and an empty payload
is an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from slipstream.catalogue import Group
from slipstream.codecs.base import (
    CodecError,
    PartLayout,
    check_frames,
    part_layout,
    split_parts,
)
from slipstream.codecs.varint import MAX_NIBBLES, nibble_lengths, write_nibbles, zigzag

__all__ = ["SparseCodec", "decode_sparse", "encode_sparse_parts"]

_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1


@lru_cache(maxsize=64)
def _tables(
    layout: PartLayout,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """Bitmap tables of a layout.

    Returns:
        Bitmap bytes per part (parts,); part of each bitmap byte and its index in
        the part (both (bitmap bytes,)); global bitmap byte and bit weight of each
        element (both (elements,), as one (2, elements) float array for bincount).
    """
    bitmap_bytes = (layout.size + 7) // 8
    bitmap_part = np.repeat(np.arange(layout.size.size, dtype=np.int64), bitmap_bytes)
    first_byte = np.concatenate(([0], np.cumsum(bitmap_bytes)[:-1]))
    bitmap_index = np.arange(bitmap_part.size, dtype=np.int64) - first_byte[bitmap_part]
    index_in_part = np.arange(layout.part_of.size, dtype=np.int64) - layout.start[layout.part_of]
    element = np.empty((2, layout.part_of.size), dtype=np.float64)
    element[0] = first_byte[layout.part_of] + index_in_part // 8
    element[1] = 1 << (index_in_part % 8)
    return bitmap_bytes, bitmap_part, bitmap_index, element


def encode_sparse_parts(
    base: NDArray[np.int32] | None, q: NDArray[np.int32], groups: Sequence[Group]
) -> list[list[bytes]]:
    """Sparse parts ``[car][group]`` of ``q`` against ``base`` (zeros when None).

    Vectorised over the whole tick: one pass of numpy over (cars, channels) that
    writes every part's varints into one nibble stream (each part starting on a
    byte), packed two nibbles a byte, then cut into parts.
    """
    check_frames(q, base)
    layout = part_layout(groups, q.shape[0], q.shape[1])
    bitmap_bytes, bitmap_part, bitmap_index, element = _tables(layout)
    d = layout.gather(q).ravel().astype(np.int64)
    if base is not None:
        d -= layout.gather(base).ravel()
    changed = d != 0
    zz = zigzag(d[changed])
    lengths = nibble_lengths(zz)
    vlen = np.zeros(d.size, dtype=np.int64)
    vlen[changed] = lengths
    cum = np.cumsum(vlen)
    ends = cum[layout.start + layout.size - 1]
    varint_nibbles = np.diff(ends, prepend=0)
    offsets = np.zeros(layout.start.size + 1, dtype=np.int64)
    np.cumsum(bitmap_bytes + (varint_nibbles + 1) // 2, out=offsets[1:])
    nibbles = np.zeros(2 * int(offsets[-1]), dtype=np.uint8)
    # Exclusive running length, rebased to each part's varint section (in nibbles).
    part = layout.part_of[changed]
    first = ends - varint_nibbles
    at = (cum - vlen)[changed] - first[part] + 2 * (offsets[part] + bitmap_bytes[part])
    write_nibbles(nibbles, at, zz, lengths)
    out = nibbles[0::2] | (nibbles[1::2] << 4)
    bits = np.bincount(
        element[0][changed].astype(np.int64),
        weights=element[1][changed],
        minlength=bitmap_part.size,
    )
    out[offsets[bitmap_part] + bitmap_index] = bits.astype(np.uint8)
    return split_parts(out.tobytes(), offsets, layout.cars)


def decode_sparse(base: NDArray[np.int32] | None, payload: bytes, size: int) -> NDArray[np.int32]:
    """Values of one part from a sparse payload against ``base`` (zeros when None).

    A plain loop over the set bits, reading nibbles off one Python int: parts are
    a few dozen bytes, too small for numpy's per-call cost to pay off.

    Raises:
        CodecError: The payload is truncated, has bytes left over, a non-zero
            padding nibble, an over-long or non-canonical varint, a bitmap whose
            popcount differs from the number of varints, set padding bits, a zero
            difference, or a result outside int32.
    """
    nbytes = (size + 7) // 8
    end = len(payload)
    if end < nbytes:
        raise CodecError(f"sparse part of {end} bytes is shorter than its bitmap")
    bitmap = int.from_bytes(payload[:nbytes], "little")
    if bitmap >> size:
        raise CodecError("sparse part has bitmap bits set past the group's channels")
    out: list[int] = [0] * size if base is None else base.tolist()
    if len(out) != size:
        raise CodecError(f"base holds {len(out)} values, expected {size}")
    tail = int.from_bytes(payload[nbytes:], "little")
    left = 2 * (end - nbytes)
    while bitmap:
        low = bitmap & -bitmap
        bitmap ^= low
        channel = low.bit_length() - 1
        z = shift = 0
        while True:
            if not left:
                raise CodecError("sparse part has fewer varints than changed channels")
            nibble = tail & 0xF
            tail >>= 4
            left -= 1
            z |= (nibble & 0x7) << shift
            if nibble < 0x8:
                break
            shift += 3
            if shift >= 3 * MAX_NIBBLES:
                raise CodecError("sparse part has an over-long varint")
        if shift and not nibble:
            raise CodecError("sparse part has a non-canonical varint")
        d = (z >> 1) ^ -(z & 1)
        if not d:
            raise CodecError("sparse part marks a channel changed by zero")
        value = out[channel] + d
        if not _INT32_MIN <= value <= _INT32_MAX:
            raise CodecError("sparse part leads to values outside int32 (wrong base?)")
        out[channel] = value
    if left > 1:
        raise CodecError(f"sparse part has {left} nibbles left over after its varints")
    if tail:
        raise CodecError("sparse part has a non-zero padding nibble")
    return np.array(out, dtype=np.int32)


class SparseCodec:
    """``sparse``: changed-channel bitmap plus zigzag nibble-varint differences."""

    name = "sparse"

    def encode_keyframes(self, q: NDArray[np.int32], groups: Sequence[Group]) -> list[list[bytes]]:
        """Keyframe parts: the sparse layout against zeros."""
        return encode_sparse_parts(None, q, groups)

    def encode_deltas(
        self, prev: NDArray[np.int32], q: NDArray[np.int32], groups: Sequence[Group]
    ) -> list[list[bytes]]:
        """Delta parts from ``prev`` to ``q``."""
        return encode_sparse_parts(prev, q, groups)

    def decode_keyframe(self, payload: bytes, size: int) -> NDArray[np.int32]:
        """Values from a keyframe part."""
        return decode_sparse(None, payload, size)

    def decode_delta(self, base: NDArray[np.int32], payload: bytes) -> NDArray[np.int32]:
        """Values from a delta part against ``base``."""
        return decode_sparse(base, payload, base.shape[0])
