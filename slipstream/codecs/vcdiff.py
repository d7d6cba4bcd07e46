"""``vcdiff``: RFC 3284 deltas of a part's bytes against the previous tick's.

A part's bytes are its values, zigzag-mapped to uint32, in *byte planes*: the
low bytes of every channel of the group, then the second bytes, the third, the
high bytes.  Telemetry moves by small steps, so the high planes rarely change
and become one long COPY, while the low plane is one ADD; interleaved int32
would put a changed low byte every four bytes and leave no gap long enough to
copy.  Zigzag keeps a channel that swings around zero (accelerations, rates)
from flipping its high bytes between 00 and FF.  The keyframe is those bytes.

A delta is a plain RFC 3284 file that rebuilds the new bytes from the previous::

    D6 C3 C4 00  00           magic, version 0, header indicator 0 (no secondary
                              compressor, no code table, no application header)
    01 n 00 len               one window: VCD_SOURCE = the whole base (n bytes at 0)
    n 00 dlen ilen alen       target length n, delta indicator 0, section lengths
    data | instructions | addresses   (default code table, SELF addresses)

No Adler-32 window checksum (an xdelta3 extension that ``@ably/vcdiff-decoder``
mis-decodes), i.e. what ``xdelta3 -e -S none -A -n`` writes.

The encoder is ours and positional, not a string matcher: frames have a fixed
layout, so a byte that did not change sits at the same offset in the base.
Unchanged byte runs of at least :data:`MIN_COPY` bytes (:data:`MIN_EDGE_COPY`
at either end of a part) become COPY from the same offset; the rest (changed
bytes and shorter gaps) become ADD; an ADD of 1-4 bytes followed by a COPY of
4-6 bytes, or a COPY of 4 followed by an ADD of 1, share one instruction byte.  All of it is
computed with numpy over every part of the tick at once.

Decoding goes through the PyPI ``vcdiff-decoder`` package after a header check
that rejects what that package would silently mis-decode (secondary compression,
custom code tables) and anything whose target length is not the base's.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import vcdiff_decoder
from numpy.typing import NDArray

from slipstream.catalogue import Group
from slipstream.codecs.base import CodecError, PartLayout, check_frames, part_layout, split_parts
from slipstream.codecs.rfc3284 import MAGIC, check_delta
from slipstream.codecs.varint import varint_lengths, write_varints

__all__ = [
    "MIN_COPY",
    "MIN_EDGE_COPY",
    "VcdiffCodec",
    "decode_vcdiff",
    "encode_vcdiff_parts",
    "from_planes",
    "to_planes",
]

#: Shortest unchanged run worth a COPY between two changed runs; shorter gaps are
#: cheaper as ADD bytes (a COPY of 3 costs an opcode, a size and an address).
MIN_COPY = 4
#: Shortest unchanged run worth a COPY at either end of a part (measured best).
MIN_EDGE_COPY = 3

# Magic, version 0, header indicator 0, window indicator VCD_SOURCE.
_PROLOGUE = np.frombuffer(MAGIC + b"\x00\x01", dtype=np.uint8)
# Default code table (RFC 3284 section 5.6).
_ADD0 = 1  # ADD, size in the instruction stream; ADD s (1..17) is _ADD0 + s
_COPY0 = 19  # COPY mode 0, size in the stream; COPY s (4..18) is _COPY0 + s - 3
_ADD_COPY0 = 163  # ADD a (1..4) + COPY c (4..6), mode 0: _ADD_COPY0 + 3 (a - 1) + c - 4
_COPY4_ADD1 = 247  # COPY 4, mode 0, then ADD 1


@lru_cache(maxsize=64)
def _byte_tables(
    layout: PartLayout,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.bool_], NDArray[np.int64]]:
    """Byte tables of a layout, over the parts' bytes laid end to end.

    Returns:
        First byte of each part (parts,); part of each byte and part-start flags
        (bytes,); and the byte-plane permutation (bytes,): entry ``i`` is the
        index, in the gathered little-endian int32 bytes, of plane byte ``i``.
    """
    start = 4 * layout.start
    part_of = np.repeat(layout.part_of, 4)
    is_start = np.zeros(part_of.size, dtype=np.bool_)
    is_start[start] = True
    element = np.arange(layout.part_of.size, dtype=np.int64)
    channel = element - layout.start[layout.part_of]
    size = layout.size[layout.part_of]
    planes = np.empty(part_of.size, dtype=np.int64)
    for k in range(4):
        planes[4 * layout.start[layout.part_of] + k * size + channel] = 4 * element + k
    for array in (start, part_of, is_start, planes):
        array.flags.writeable = False
    return start, part_of, is_start, planes


def _zigzag32(values: NDArray[np.int32]) -> NDArray[np.uint32]:
    """Zigzag of int32 values as little-endian uint32 (MISSING becomes 0xFFFFFFFF)."""
    v = np.asarray(values, dtype=np.int32)
    return ((v << 1) ^ (v >> 31)).view(np.uint32).astype("<u4", copy=False)


def to_planes(values: NDArray[np.int32]) -> bytes:
    """The byte-plane form of one part's values (n,): 4n bytes."""
    return _zigzag32(values).view(np.uint8).reshape(-1, 4).T.tobytes()


def from_planes(data: bytes, size: int) -> NDArray[np.int32]:
    """Values (size,) from their byte-plane form.

    Raises:
        CodecError: ``data`` is not 4 * ``size`` bytes.
    """
    if len(data) != 4 * size:
        raise CodecError(f"vcdiff part holds {len(data)} bytes, expected {4 * size}")
    planes = np.frombuffer(data, dtype=np.uint8).reshape(4, size)
    z = np.ascontiguousarray(planes.T).view("<u4").ravel().astype(np.uint32)
    return ((z >> np.uint32(1)) ^ (np.uint32(0) - (z & np.uint32(1)))).view(np.int32)


def _plane_bytes(layout: PartLayout, q: NDArray[np.int32]) -> NDArray[np.uint8]:
    flat = _zigzag32(layout.gather(q)).view(np.uint8).ravel()
    return flat[_byte_tables(layout)[3]]


def encode_plane_parts(q: NDArray[np.int32], groups: Sequence[Group]) -> list[list[bytes]]:
    """Keyframe parts ``[car][group]``: each part's zigzag values in byte planes."""
    check_frames(q)
    layout = part_layout(groups, q.shape[0], q.shape[1])
    offsets = 4 * np.append(layout.start, layout.cars * layout.width)
    return split_parts(_plane_bytes(layout, q).tobytes(), offsets, layout.cars)


def _runs(
    mask: NDArray[np.bool_], is_start: NDArray[np.bool_]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.bool_]]:
    """Maximal runs of equal ``mask`` values that do not cross part starts."""
    boundary = is_start.copy()
    boundary[1:] |= mask[1:] != mask[:-1]
    starts = np.flatnonzero(boundary)
    lengths = np.diff(starts, append=mask.size)
    return starts, lengths, mask[starts]


def _put(
    out: NDArray[np.uint8], at: NDArray[np.int64], values: NDArray[np.int64]
) -> NDArray[np.int64]:
    """Write varints of ``values`` at ``at``; the positions just after them."""
    lengths = varint_lengths(values.astype(np.uint64))
    write_varints(out, at, values.astype(np.uint64), lengths)
    return at + lengths


def encode_vcdiff_parts(
    prev: NDArray[np.int32], q: NDArray[np.int32], groups: Sequence[Group]
) -> list[list[bytes]]:
    """RFC 3284 delta parts ``[car][group]`` from the plane bytes of ``prev`` to ``q``."""
    check_frames(q, prev)
    layout = part_layout(groups, q.shape[0], q.shape[1])
    part_start, part_of, is_start, _ = _byte_tables(layout)
    source = _plane_bytes(layout, prev)
    target = _plane_bytes(layout, q)
    parts = part_start.size
    part_bytes = 4 * layout.size

    add = source != target
    starts, lengths, is_add = _runs(add, is_start)
    at_edge = is_start[starts] | np.append(is_start[starts][1:], True)
    short = ~is_add & (lengths < np.where(at_edge, MIN_EDGE_COPY, MIN_COPY))
    if short.any():
        add |= np.repeat(short, lengths)
        starts, lengths, is_add = _runs(add, is_start)
    seg_part = part_of[starts]
    first_seg = np.flatnonzero(is_start[starts])

    # Instructions: runs alternate ADD / COPY inside a part, so an ADD's successor
    # in the same part is a COPY (of at least MIN_EDGE_COPY bytes).  The default code
    # table has one-byte opcodes for ADD 1-17 and COPY 4-18; other sizes follow
    # the opcode as a varint.
    next_len = np.append(lengths[1:], 0)
    next_same = np.append(seg_part[1:] == seg_part[:-1], False)
    paired = is_add & (lengths <= 4) & next_same & (next_len >= 4) & (next_len <= 6)
    # Then COPY 4 + ADD 1 (one opcode) for an ADD of 1 left unpaired.
    lone_add1 = is_add & (lengths == 1) & ~paired
    copy_paired = (
        ~is_add & (lengths == 4) & next_same & np.append(lone_add1[1:], False)
    ) & ~np.append(False, paired[:-1])
    pairs = paired | copy_paired
    consumed = np.append(False, pairs[:-1])
    in_table = np.where(is_add, lengths <= 17, (lengths >= 4) & (lengths <= 18))
    explicit = ~in_table & ~pairs & ~consumed
    size_len = np.where(explicit, varint_lengths(lengths.astype(np.uint64)), 0)
    inst_len = np.where(consumed, 0, 1 + size_len)
    opcode = np.where(
        is_add,
        np.where(in_table, _ADD0 + lengths, _ADD0),
        np.where(in_table, _COPY0 + lengths - 3, _COPY0),
    )
    opcode[paired] = _ADD_COPY0 + 3 * (lengths[paired] - 1) + next_len[paired] - 4
    opcode[copy_paired] = _COPY4_ADD1
    copy_at = starts - part_start[seg_part]  # SELF address: same offset in the source
    addr_len = np.where(is_add, 0, varint_lengths(copy_at.astype(np.uint64)))

    data_total = np.add.reduceat(np.where(is_add, lengths, 0), first_seg)
    inst_total = np.add.reduceat(inst_len, first_seg)
    addr_total = np.add.reduceat(addr_len, first_seg)

    def vlen(v: NDArray[np.int64]) -> NDArray[np.int64]:
        return varint_lengths(v.astype(np.uint64))

    body = data_total + inst_total + addr_total
    delta_len = vlen(part_bytes) + 1 + vlen(data_total) + vlen(inst_total) + vlen(addr_total) + body
    total = _PROLOGUE.size + vlen(part_bytes) + 1 + vlen(delta_len) + delta_len
    offsets = np.zeros(parts + 1, dtype=np.int64)
    np.cumsum(total, out=offsets[1:])
    out = np.zeros(int(offsets[-1]), dtype=np.uint8)

    at = offsets[:-1]
    out[at[:, None] + np.arange(_PROLOGUE.size)] = _PROLOGUE
    at = _put(out, at + _PROLOGUE.size, part_bytes)  # source segment size
    at = at + 1  # source segment position 0 (already zero)
    at = _put(out, at, delta_len)
    at = _put(out, at, part_bytes)  # target window length
    at = at + 1  # delta indicator 0: no secondary compression
    at = _put(out, at, data_total)
    at = _put(out, at, inst_total)
    data_at = _put(out, at, addr_total)
    inst_at = data_at + data_total
    addr_at = inst_at + inst_total

    # Data section: the ADD bytes of each part in order.
    add_part = part_of[add]
    rank = np.arange(add_part.size, dtype=np.int64) - (np.cumsum(data_total) - data_total)[add_part]
    out[data_at[add_part] + rank] = target[add]

    # Instruction and address sections: running offsets rebased per part.
    def within(lens: NDArray[np.int64]) -> NDArray[np.int64]:
        run = np.cumsum(lens) - lens
        return run - run[first_seg][seg_part]

    emit = inst_len > 0
    pos = inst_at[seg_part] + within(inst_len)
    out[pos[emit]] = opcode[emit].astype(np.uint8)
    write_varints(out, pos[explicit] + 1, lengths[explicit].astype(np.uint64), size_len[explicit])
    pos = addr_at[seg_part] + within(addr_len)
    copy = ~is_add
    write_varints(out, pos[copy], copy_at[copy].astype(np.uint64), addr_len[copy])
    return split_parts(out.tobytes(), offsets, layout.cars)


def decode_vcdiff(base: NDArray[np.int32], payload: bytes) -> NDArray[np.int32]:
    """Values of one part from an RFC 3284 delta against ``base``.

    Raises:
        CodecError: The delta is malformed, truncated, unsupported or rebuilds a
            frame of another size.
    """
    source = to_planes(base)
    size = check_delta(payload, len(source))
    if size != len(source):
        raise CodecError(f"vcdiff delta rebuilds {size} bytes, expected {len(source)}")
    try:
        target = vcdiff_decoder.decode(source, payload)
    except (vcdiff_decoder.VCDIFFError, ValueError, IndexError, KeyError, EOFError) as exc:
        raise CodecError(f"vcdiff delta does not decode: {exc}") from exc
    if len(target) != len(source):
        raise CodecError(f"vcdiff delta rebuilt {len(target)} bytes, expected {len(source)}")
    return from_planes(target, base.shape[0])


class VcdiffCodec:
    """``vcdiff``: keyframes are byte-plane parts, deltas are RFC 3284 files between them."""

    name = "vcdiff"

    def encode_keyframes(self, q: NDArray[np.int32], groups: Sequence[Group]) -> list[list[bytes]]:
        """Keyframe parts: the values in byte planes."""
        return encode_plane_parts(q, groups)

    def encode_deltas(
        self, prev: NDArray[np.int32], q: NDArray[np.int32], groups: Sequence[Group]
    ) -> list[list[bytes]]:
        """RFC 3284 delta parts from ``prev`` to ``q``."""
        return encode_vcdiff_parts(prev, q, groups)

    def decode_keyframe(self, payload: bytes, size: int) -> NDArray[np.int32]:
        """Values from a keyframe part."""
        return from_planes(payload, size)

    def decode_delta(self, base: NDArray[np.int32], payload: bytes) -> NDArray[np.int32]:
        """Values from a delta part against ``base``."""
        return decode_vcdiff(base, payload)
