"""Frame codecs: how one (car, channel group) of a tick travels to fans.

A codec turns quantised values (int32 counts, see :mod:`slipstream.catalogue`)
into *parts*: one byte string per (car, group).  A keyframe part carries the
group's full state; a delta part carries what changed against the previous
frame of the same car.  The broadcast envelope (docs/protocol.md) adds the car,
group, kind and base tick, so a delta applied to the wrong base is detected
before this module sees it.

Codecs (``CODECS``):

* ``full``: no delta; every part is the group's values as little-endian int32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from slipstream.catalogue import Group
from slipstream.errors import SlipstreamError

__all__ = ["CODECS", "Codec", "CodecError", "FullCodec", "get_codec"]


class CodecError(SlipstreamError, ValueError):
    """A part could not be decoded (truncated, corrupted or of the wrong size)."""


class Codec(Protocol):
    """Encodes whole ticks, vectorised over cars; decodes one part at a time."""

    name: str

    def encode_keyframes(self, q: NDArray[np.int32], groups: Sequence[Group]) -> list[list[bytes]]:
        """Keyframe parts, ``[car][group]``, of ``q`` shape (cars, channels)."""
        ...

    def encode_deltas(
        self, prev: NDArray[np.int32], q: NDArray[np.int32], groups: Sequence[Group]
    ) -> list[list[bytes]]:
        """Delta parts, ``[car][group]``, from ``prev`` to ``q``, both (cars, channels)."""
        ...

    def decode_keyframe(self, payload: bytes, size: int) -> NDArray[np.int32]:
        """Values of one group, shape (size,), from a keyframe part."""
        ...

    def decode_delta(self, base: NDArray[np.int32], payload: bytes) -> NDArray[np.int32]:
        """Values of one group, same shape as ``base``, from a delta part against it."""
        ...


class FullCodec:
    """``full``: every part is a keyframe of little-endian int32 values."""

    name = "full"

    def encode_keyframes(self, q: NDArray[np.int32], groups: Sequence[Group]) -> list[list[bytes]]:
        """Keyframe parts of every car and group."""
        data = np.ascontiguousarray(q, dtype="<i4")
        return [[row[g.start : g.stop].tobytes() for g in groups] for row in data]

    def encode_deltas(
        self, prev: NDArray[np.int32], q: NDArray[np.int32], groups: Sequence[Group]
    ) -> list[list[bytes]]:
        """``full`` sends keyframes in place of deltas."""
        return self.encode_keyframes(q, groups)

    def decode_keyframe(self, payload: bytes, size: int) -> NDArray[np.int32]:
        """Values from a keyframe part."""
        if len(payload) != 4 * size:
            raise CodecError(f"full part holds {len(payload)} bytes, expected {4 * size}")
        return np.frombuffer(payload, dtype="<i4").astype(np.int32)

    def decode_delta(self, base: NDArray[np.int32], payload: bytes) -> NDArray[np.int32]:
        """A ``full`` delta is a keyframe."""
        return self.decode_keyframe(payload, base.shape[0])


CODECS: dict[str, Codec] = {"full": FullCodec()}


def get_codec(name: str) -> Codec:
    """The codec called ``name``.

    Raises:
        ValueError: No such codec; the message lists the known ones.
    """
    try:
        return CODECS[name]
    except KeyError:
        raise ValueError(f"unknown codec {name!r}; known: {', '.join(CODECS)}") from None
