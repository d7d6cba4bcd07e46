"""Zigzag, LEB128 and nibble varints over whole numpy arrays (the codecs' packing kernels).

A (byte) varint is little-endian base 128: seven value bits per byte, high bit
set on every byte but the last (``vcdiff`` writes RFC 3284's big-endian variant
itself).  A *nibble varint* is the same over 4-bit groups: three value bits per
nibble (bits 0-2), bit 3 set on every nibble but the last, least significant
group first; ``sparse`` uses them because most differences fit one or two
nibbles.  Zigzag maps signed to unsigned so small magnitudes of either sign stay
short: 0, -1, 1, -2, ... become 0, 1, 2, 3, ...
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "MAX_NIBBLES",
    "MAX_VARINT_BYTES",
    "nibble_lengths",
    "unzigzag",
    "varint_lengths",
    "write_nibbles",
    "write_varints",
    "zigzag",
]

#: Longest varint accepted on decode: 5 bytes hold 35 bits, enough for the zigzag
#: of any difference of two int32 values (33 bits).
MAX_VARINT_BYTES = 5

#: Longest nibble varint accepted on decode: 11 nibbles hold 33 bits, exactly the
#: zigzag of any difference of two int32 values.
MAX_NIBBLES = 11


def zigzag(d: NDArray[np.int64]) -> NDArray[np.uint64]:
    """Zigzag-map signed int64 values to uint64."""
    return ((d << 1) ^ (d >> 63)).astype(np.uint64)


def unzigzag(z: NDArray[np.uint64]) -> NDArray[np.int64]:
    """Inverse of :func:`zigzag`."""
    return ((z >> np.uint64(1)).astype(np.int64)) ^ -((z & np.uint64(1)).astype(np.int64))


def _group_lengths(v: NDArray[np.uint64], bits: int) -> NDArray[np.int64]:
    """Groups of ``bits`` value bits each value needs (1 for 0), same shape as ``v``."""
    n = np.ones(v.shape, dtype=np.int64)
    for k in range(1, 64 // bits + 1):
        above = v >= np.uint64(1 << (bits * k))
        if not above.any():
            break
        n += above
    return n


def varint_lengths(v: NDArray[np.uint64]) -> NDArray[np.int64]:
    """Bytes of the varint of each value (1 for 0), same shape as ``v``."""
    return _group_lengths(v, 7)


def write_varints(
    out: NDArray[np.uint8],
    at: NDArray[np.int64],
    values: NDArray[np.uint64],
    lengths: NDArray[np.int64],
) -> None:
    """Write the varint of ``values[i]`` (``lengths[i]`` bytes) at ``out[at[i]:]``, 1-D."""
    if values.size == 0:
        return
    longest = int(lengths.max())
    if longest == 1:  # the common case: every value below 128
        out[at] = values.astype(np.uint8)
        return
    rest = values.copy()
    for k in range(longest):
        sel = lengths > k
        more = (lengths[sel] > k + 1).astype(np.uint8) << 7
        out[at[sel] + k] = (rest[sel] & np.uint64(0x7F)).astype(np.uint8) | more
        rest >>= np.uint64(7)


def nibble_lengths(v: NDArray[np.uint64]) -> NDArray[np.int64]:
    """Nibbles of the nibble varint of each value (1 for 0), same shape as ``v``."""
    return _group_lengths(v, 3)


def write_nibbles(
    nibbles: NDArray[np.uint8],
    at: NDArray[np.int64],
    values: NDArray[np.uint64],
    lengths: NDArray[np.int64],
) -> None:
    """Write the nibble varint of ``values[i]`` (``lengths[i]`` nibbles) at ``nibbles[at[i]:]``.

    ``nibbles`` holds one nibble per element (0-15), 1-D; packing two to a byte is
    the caller's.  One pass over all the nibbles, however long the varints.
    """
    if values.size == 0:
        return
    if int(lengths.max()) == 1:  # the common case for a tick of small steps: 0..7
        nibbles[at] = values.astype(np.uint8)
        return
    first = np.cumsum(lengths) - lengths
    which = np.repeat(np.arange(values.size), lengths)
    k = np.arange(which.size, dtype=np.int64) - first[which]
    group = (values[which] >> (3 * k).astype(np.uint64)) & np.uint64(7)
    more = k < lengths[which] - 1
    nibbles[at[which] + k] = group.astype(np.uint8) | (more.astype(np.uint8) << 3)
