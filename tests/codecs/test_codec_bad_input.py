"""Truncated, corrupted and mismatched parts raise CodecError, never decode to a frame.

What the codecs detect on their own is listed in docs/codecs.md; a delta against
the wrong base *tick* is the broadcast envelope's job (it carries the base tick).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from slipstream.catalogue import CATALOGUE, MISSING
from slipstream.codecs import CODECS, CodecError
from slipstream.errors import SlipstreamError

TYRES = CATALOGUE.group_by_name["tyres"]  # 21 channels: a bitmap with padding bits


def _tick(seed: int, changed: float) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
    rng = np.random.default_rng(seed)
    prev = rng.integers(-100_000, 100_000, (1, len(CATALOGUE))).astype(np.int32)
    q = prev.copy()
    mask = rng.random(q.shape) < changed
    q[mask] += rng.integers(1, 400, int(mask.sum())).astype(np.int32)
    q[0, TYRES.start] = MISSING
    return prev, q


def _delta(name: str, seed: int = 1, changed: float = 0.4) -> tuple[NDArray[np.int32], bytes]:
    prev, q = _tick(seed, changed)
    part = CODECS[name].encode_deltas(prev, q, [TYRES])[0][0]
    return prev[0, TYRES.start : TYRES.stop].copy(), part


@pytest.mark.parametrize("name", ["full", "sparse", "vcdiff"])
@pytest.mark.parametrize("changed", [0.0, 0.4, 1.0])
def test_every_truncation_raises(name: str, changed: float) -> None:
    base, part = _delta(name, changed=changed)
    for cut in range(len(part)):
        with pytest.raises(CodecError):
            CODECS[name].decode_delta(base, part[:cut])


@pytest.mark.parametrize("name", ["full", "sparse", "vcdiff"])
@pytest.mark.parametrize("extra", [b"\x00", b"\x01", b"\x81\x01", b"\xff" * 9])
def test_bytes_left_over_raise(name: str, extra: bytes) -> None:
    base, part = _delta(name)
    with pytest.raises(CodecError):
        CODECS[name].decode_delta(base, part + extra)


@pytest.mark.parametrize("name", ["sparse"])
def test_truncated_keyframes_raise(name: str) -> None:
    _, q = _tick(3, 0.5)
    part = CODECS[name].encode_keyframes(q, [TYRES])[0][0]
    for cut in range(len(part)):
        with pytest.raises(CodecError):
            CODECS[name].decode_keyframe(part[:cut], TYRES.size)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), bit=st.integers(0, 7), where=st.floats(0, 1))
def test_sparse_detects_any_bitmap_flip(seed: int, bit: int, where: float) -> None:
    """A flipped bitmap bit changes the popcount, so the varints no longer match."""
    base, part = _delta("sparse", seed)
    nbytes = (TYRES.size + 7) // 8
    index = min(int(where * nbytes), nbytes - 1)
    bad = bytearray(part)
    bad[index] ^= 1 << bit
    with pytest.raises(CodecError):
        CODECS["sparse"].decode_delta(base, bytes(bad))


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), where=st.floats(0, 1))
def test_sparse_detects_any_varint_framing_flip(seed: int, where: float) -> None:
    """Flipping a nibble's continuation bit merges or splits varints (the count no
    longer matches) or sets the padding nibble."""
    base, part = _delta("sparse", seed)
    nbytes = (TYRES.size + 7) // 8
    if len(part) == nbytes:
        return
    nibbles = 2 * (len(part) - nbytes)
    index = min(int(where * nibbles), nibbles - 1)
    bad = bytearray(part)
    bad[nbytes + index // 2] ^= 0x80 if index % 2 else 0x08
    with pytest.raises(CodecError):
        CODECS["sparse"].decode_delta(base, bytes(bad))


def _sparse(bits: list[int], nibbles: list[int], size: int = TYRES.size) -> bytes:
    """A sparse part written by hand: bitmap with ``bits`` set, then ``nibbles`` packed."""
    bitmap = sum(1 << b for b in bits).to_bytes((size + 7) // 8, "little")
    pairs = nibbles + [0] * (len(nibbles) % 2)
    return bitmap + bytes(lo | hi << 4 for lo, hi in zip(pairs[0::2], pairs[1::2], strict=True))


def test_sparse_hand_written_part_decodes() -> None:
    """The layout as docs/codecs.md specifies it: +1 (zigzag 2), -3 (5), +10 (20 = 0xC 0x2)."""
    prev = np.zeros((1, len(CATALOGUE)), dtype=np.int32)
    prev[0, TYRES.start : TYRES.stop] = np.arange(TYRES.size)
    q = prev.copy()
    q[0, TYRES.start + np.array([0, 4, 20])] += np.array([1, -3, 10], dtype=np.int32)
    part = _sparse([0, 4, 20], [2, 5, 0xC, 2])
    assert part.hex() == "110010522c"
    assert CODECS["sparse"].encode_deltas(prev, q, [TYRES])[0][0] == part
    base = prev[0, TYRES.start : TYRES.stop].copy()
    got = CODECS["sparse"].decode_delta(base, part)
    np.testing.assert_array_equal(got, q[0, TYRES.start : TYRES.stop])


@pytest.mark.parametrize(
    ("part", "match"),
    [
        (_sparse([0], [2, 3]), "non-zero padding nibble"),
        (_sparse([0], [2, 0, 0]), "left over"),
        (_sparse([0], [2]) + b"\x00", "left over"),
        (_sparse([0], [0xA, 0]), "non-canonical"),
        (_sparse([0], [0xA, 0x8, 0]), "non-canonical"),
        (_sparse([0], [0xF] * 11 + [1]), "over-long"),
        (_sparse([0], [0x8] * 11 + [1]), "over-long"),
        (_sparse([0], [0]), "changed by zero"),
        (_sparse([0, 1], [2]), "changed by zero"),  # the padding nibble read as a varint
        (_sparse([0, 1, 2], [2, 4]), "fewer varints"),
        (_sparse([0], [0xA, 0xA]), "fewer varints"),  # cut off inside the varint
        (_sparse([0], [0xF] * 10 + [7]), "outside int32"),
        (_sparse([21], [2]), "past the group"),
    ],
)
def test_sparse_refuses_malformed_varints(part: bytes, match: str) -> None:
    base = np.zeros(TYRES.size, dtype=np.int32)
    with pytest.raises(CodecError, match=match):
        CODECS["sparse"].decode_delta(base, part)


def test_sparse_longest_varint_decodes() -> None:
    """11 nibbles (33 bits) is the longest accepted: MISSING to int32 max and back."""
    base = np.zeros(TYRES.size, dtype=np.int32)
    base[0] = MISSING
    # zigzag(2**32 - 1) = 2**33 - 2: lowest group 6, nine groups of 7, the last 7.
    part = _sparse([0], [0xE] + [0xF] * 9 + [7])
    assert CODECS["sparse"].decode_delta(base, part)[0] == 2**31 - 1
    base[0] = 2**31 - 1
    part = _sparse([0], [0xD] + [0xF] * 9 + [7])  # zigzag(-(2**32 - 1)) = 2**33 - 3
    assert CODECS["sparse"].decode_delta(base, part)[0] == MISSING


def test_sparse_refuses_results_outside_int32() -> None:
    prev = np.zeros((1, len(CATALOGUE)), dtype=np.int32)
    q = prev.copy()
    q[0, TYRES.start] = 2**31 - 1
    part = CODECS["sparse"].encode_deltas(prev, q, [TYRES])[0][0]
    wrong_base = np.full(TYRES.size, 5, dtype=np.int32)
    with pytest.raises(CodecError, match="outside int32"):
        CODECS["sparse"].decode_delta(wrong_base, part)


@pytest.mark.parametrize("name", ["full", "sparse", "vcdiff"])
def test_a_base_of_another_group_size_raises(name: str) -> None:
    base, part = _delta(name, changed=1.0)
    with pytest.raises(CodecError):
        CODECS[name].decode_delta(base[:-1], part)


@pytest.mark.parametrize(
    ("offset", "value", "match"),
    [
        (0, 0x00, "magic"),
        (3, 0x01, "magic"),
        (4, 0x01, "header indicator"),  # VCD_DECOMPRESS
        (4, 0x02, "header indicator"),  # VCD_CODETABLE
        (4, 0x04, "header indicator"),  # VCD_APPHEADER
        (5, 0x02, "window indicator"),  # VCD_TARGET
        (5, 0x08, "window indicator"),  # reserved
    ],
)
def test_vcdiff_header_corruption_raises(offset: int, value: int, match: str) -> None:
    base, part = _delta("vcdiff")
    bad = bytearray(part)
    bad[offset] = value
    with pytest.raises(CodecError, match=match):
        CODECS["vcdiff"].decode_delta(base, bytes(bad))


def test_vcdiff_secondary_compression_in_a_window_raises() -> None:
    base, part = _delta("vcdiff")
    # win indicator, source size, source position, delta length, target length, then
    # the delta indicator (all one-byte varints for this 84-byte group).
    assert part[5] == 0x01 and part[9] == 4 * TYRES.size
    bad = bytearray(part)
    bad[10] = 0x01
    with pytest.raises(CodecError, match="secondary compression"):
        CODECS["vcdiff"].decode_delta(base, bytes(bad))


def test_vcdiff_instruction_corruption_raises() -> None:
    """An instruction stream that rebuilds the wrong length is refused."""
    prev, _ = _tick(5, 0.0)
    part = CODECS["vcdiff"].encode_deltas(prev, prev.copy(), [TYRES])[0][0]
    base = prev[0, TYRES.start : TYRES.stop].copy()
    # An unchanged group is one COPY of the whole base: `13 54 00` in the
    # instruction and address sections (explicit size 84, SELF address 0).
    assert part.endswith(bytes([19, 4 * TYRES.size, 0]))
    bad = part[:-2] + bytes([4 * TYRES.size - 4, 0])
    with pytest.raises(CodecError):
        CODECS["vcdiff"].decode_delta(base, bad)


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), where=st.floats(0, 1), value=st.integers(0, 255))
def test_vcdiff_corruption_never_raises_anything_but_codec_error(
    seed: int, where: float, value: int
) -> None:
    """Any byte overwritten: a CodecError or a frame of the right shape, never a crash.

    (An overwritten ADD byte yields a wrong value that RFC 3284 without its
    checksum extension cannot detect; see docs/codecs.md.)
    """
    base, part = _delta("vcdiff", seed)
    bad = bytearray(part)
    bad[min(int(where * len(part)), len(part) - 1)] = value
    try:
        out = CODECS["vcdiff"].decode_delta(base, bytes(bad))
    except CodecError:
        return
    assert out.shape == base.shape and out.dtype == np.int32


@pytest.mark.parametrize("name", ["full", "sparse", "vcdiff"])
def test_codec_errors_are_slipstream_errors(name: str) -> None:
    with pytest.raises(SlipstreamError):
        CODECS[name].decode_keyframe(b"\x80", TYRES.size)
