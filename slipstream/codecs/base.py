"""The codec contract: the :class:`Codec` protocol, :class:`CodecError` and part layouts."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from slipstream.catalogue import Group
from slipstream.errors import SlipstreamError

__all__ = ["Codec", "CodecError", "PartLayout", "check_frames", "part_layout"]


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


@dataclass(frozen=True, slots=True, eq=False)
class PartLayout:
    """Where the parts of a tick sit once the selected groups' columns are gathered.

    The gathered array has shape (cars, width): the columns of the selected groups
    side by side.  Layouts are cached and compared by identity, so codecs may
    cache their own per-layout tables keyed by the layout object.  Flattened,
    part ``p = car * len(groups) + g`` covers elements ``[start[p], start[p] + size[p])``.

    Attributes:
        columns: Catalogue column of each gathered column, shape (width,).
        width: Number of gathered columns.
        cars: Number of cars.
        group_sizes: Channels per selected group, shape (groups,).
        start: First element of each part in the flattened array, shape (parts,).
        size: Channels of each part, shape (parts,).
        part_of: Part of each element of the flattened array, shape (cars * width,).
        contiguous: Whether ``columns`` is the whole catalogue in order (no gather needed).
    """

    columns: NDArray[np.intp]
    width: int
    cars: int
    group_sizes: NDArray[np.int64]
    start: NDArray[np.int64]
    size: NDArray[np.int64]
    part_of: NDArray[np.int64]
    contiguous: bool

    def gather(self, q: NDArray[np.int32]) -> NDArray[np.int32]:
        """The selected columns of ``q`` (cars, channels), shape (cars, width), C order."""
        if self.contiguous:
            return np.ascontiguousarray(q, dtype=np.int32)
        return np.ascontiguousarray(q[:, self.columns], dtype=np.int32)


@lru_cache(maxsize=64)
def _layout(spans: tuple[tuple[int, int], ...], cars: int, channels: int) -> PartLayout:
    columns = np.concatenate([np.arange(a, b, dtype=np.intp) for a, b in spans])
    width = int(columns.size)
    sizes = np.array([b - a for a, b in spans], dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
    start = (np.arange(cars, dtype=np.int64)[:, None] * width + offsets[None, :]).ravel()
    size = np.tile(sizes, cars)
    part_of = np.repeat(np.arange(start.size, dtype=np.int64), size)
    contiguous = width == channels and bool(np.all(columns == np.arange(channels)))
    for array in (columns, sizes, start, size, part_of):
        array.flags.writeable = False
    return PartLayout(columns, width, cars, sizes, start, size, part_of, contiguous)


def part_layout(groups: Sequence[Group], cars: int, channels: int) -> PartLayout:
    """The (cached) layout of ``groups`` for ``cars`` cars of ``channels`` channels.

    Raises:
        ValueError: No groups, or a group outside ``channels``.
    """
    if not groups:
        raise ValueError("at least one channel group is needed")
    spans = tuple((g.start, g.stop) for g in groups)
    for a, b in spans:
        if not 0 <= a < b <= channels:
            raise ValueError(f"group columns {a}:{b} are outside a frame of {channels} channels")
    return _layout(spans, cars, channels)


def check_frames(q: NDArray[np.int32], prev: NDArray[np.int32] | None = None) -> None:
    """Check the public arguments of the encoders.

    Raises:
        TypeError: Not an int32 array.
        ValueError: Not 2-D, or ``prev`` of another shape.
    """
    if not isinstance(q, np.ndarray) or q.dtype != np.int32:
        raise TypeError("frames must be an int32 numpy array of shape (cars, channels)")
    if q.ndim != 2:
        raise ValueError(f"frames must have shape (cars, channels), not {q.shape}")
    if prev is not None:
        if not isinstance(prev, np.ndarray) or prev.dtype != np.int32:
            raise TypeError("previous frames must be an int32 numpy array")
        if prev.shape != q.shape:
            raise ValueError(f"previous frames have shape {prev.shape}, frames {q.shape}")


def split_parts(data: bytes, offsets: NDArray[np.int64], cars: int) -> list[list[bytes]]:
    """Cut ``data`` at ``offsets`` (parts + 1 entries) into ``[car][group]`` parts."""
    bounds = offsets.tolist()
    parts = [data[a:b] for a, b in itertools.pairwise(bounds)]
    per_car = len(parts) // cars if cars else 0
    return [parts[i * per_car : (i + 1) * per_car] for i in range(cars)]
