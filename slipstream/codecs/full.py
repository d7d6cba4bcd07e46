"""``full``: a keyframe of every part, little-endian int32 per channel (the baseline)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from slipstream.catalogue import Group
from slipstream.codecs.base import CodecError, check_frames, part_layout, split_parts

__all__ = ["FullCodec", "decode_int32", "encode_int32_parts"]


def encode_int32_parts(q: NDArray[np.int32], groups: Sequence[Group]) -> list[list[bytes]]:
    """Parts ``[car][group]`` of ``q`` (cars, channels) as little-endian int32 bytes."""
    check_frames(q)
    layout = part_layout(groups, q.shape[0], q.shape[1])
    data = layout.gather(q).astype("<i4", copy=False).tobytes()
    offsets = 4 * np.append(layout.start, layout.cars * layout.width)
    return split_parts(data, offsets, layout.cars)


def decode_int32(payload: bytes, size: int) -> NDArray[np.int32]:
    """``size`` little-endian int32 values from ``payload``.

    Raises:
        CodecError: ``payload`` does not hold exactly ``size`` values.
    """
    if len(payload) != 4 * size:
        raise CodecError(f"full part holds {len(payload)} bytes, expected {4 * size}")
    return np.frombuffer(payload, dtype="<i4").astype(np.int32)


class FullCodec:
    """``full``: every part is a keyframe of little-endian int32 values.

    The layout is kept deliberately plain (4 bytes per channel, no varints): it is
    the baseline the delta codecs are measured against, the keyframe of
    ``vcdiff`` and the byte string its deltas rebuild.
    """

    name = "full"

    def encode_keyframes(self, q: NDArray[np.int32], groups: Sequence[Group]) -> list[list[bytes]]:
        """Keyframe parts of every car and group."""
        return encode_int32_parts(q, groups)

    def encode_deltas(
        self, prev: NDArray[np.int32], q: NDArray[np.int32], groups: Sequence[Group]
    ) -> list[list[bytes]]:
        """``full`` sends keyframes in place of deltas."""
        check_frames(q, prev)
        return encode_int32_parts(q, groups)

    def decode_keyframe(self, payload: bytes, size: int) -> NDArray[np.int32]:
        """Values from a keyframe part."""
        return decode_int32(payload, size)

    def decode_delta(self, base: NDArray[np.int32], payload: bytes) -> NDArray[np.int32]:
        """A ``full`` delta is a keyframe."""
        return decode_int32(payload, base.shape[0])
