"""Zigzag and LEB128 varints over whole numpy arrays (the packing kernels of the codecs).

A varint is little-endian base 128: seven value bits per byte, high bit set on
every byte but the last.  Zigzag maps signed to unsigned so small magnitudes of
either sign stay short: 0, -1, 1, -2, ... become 0, 1, 2, 3, ...
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["MAX_VARINT_BYTES", "unzigzag", "varint_lengths", "write_varints", "zigzag"]

#: Longest varint accepted on decode: 5 bytes hold 35 bits, enough for the zigzag
#: of any difference of two int32 values (33 bits).
MAX_VARINT_BYTES = 5


def zigzag(d: NDArray[np.int64]) -> NDArray[np.uint64]:
    """Zigzag-map signed int64 values to uint64."""
    return ((d << 1) ^ (d >> 63)).astype(np.uint64)


def unzigzag(z: NDArray[np.uint64]) -> NDArray[np.int64]:
    """Inverse of :func:`zigzag`."""
    return ((z >> np.uint64(1)).astype(np.int64)) ^ -((z & np.uint64(1)).astype(np.int64))


def varint_lengths(v: NDArray[np.uint64]) -> NDArray[np.int64]:
    """Bytes of the varint of each value (1 for 0), same shape as ``v``."""
    n = np.ones(v.shape, dtype=np.int64)
    for k in range(1, 10):
        above = v >= np.uint64(1 << (7 * k))
        if not above.any():
            break
        n += above
    return n


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
