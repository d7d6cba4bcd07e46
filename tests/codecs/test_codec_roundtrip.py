"""decode(encode(x)) == x for every codec, and the fast encoders against slow references."""

from __future__ import annotations

import numpy as np
import pytest
import vcdiff_decoder
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.typing import NDArray

from slipstream.catalogue import CATALOGUE, MISSING, Group
from slipstream.codecs import CODECS, CodecError, get_codec
from slipstream.codecs.varint import (
    nibble_lengths,
    unzigzag,
    varint_lengths,
    write_nibbles,
    write_varints,
    zigzag,
)
from slipstream.codecs.vcdiff import to_planes

INT32_MAX = 2**31 - 1
EXTREMES = [MISSING, MISSING + 1, -1, 0, 1, INT32_MAX - 1, INT32_MAX]
CHANNELS = len(CATALOGUE)
Tick = tuple[NDArray[np.int32], NDArray[np.int32], list[Group]]

values = st.one_of(
    st.sampled_from(EXTREMES),
    st.integers(-300, 300),
    st.integers(MISSING, INT32_MAX),
)


@st.composite
def ticks(draw: st.DrawFn) -> Tick:
    """(prev, q, groups): two ticks of 1-4 cars and a non-empty selection of groups."""
    cars = draw(st.integers(1, 4))
    prev = draw(arrays(np.int32, (cars, CHANNELS), elements=values))
    mode = draw(st.sampled_from(["some", "none", "all", "to-missing", "from-missing"]))
    if mode == "none":
        q = prev.copy()
    elif mode == "all":
        q = draw(arrays(np.int32, (cars, CHANNELS), elements=values))
        same = q == prev
        q[same] = np.where(prev[same] == INT32_MAX, 0, prev[same] + 1)
    elif mode == "to-missing":
        q = prev.copy()
        q[draw(arrays(np.bool_, (cars, CHANNELS)))] = MISSING
    elif mode == "from-missing":
        q = draw(arrays(np.int32, (cars, CHANNELS), elements=values))
        prev = prev.copy()
        prev[draw(arrays(np.bool_, (cars, CHANNELS)))] = MISSING
    else:
        changed = draw(arrays(np.bool_, (cars, CHANNELS)))
        q = np.where(changed, draw(arrays(np.int32, (cars, CHANNELS), elements=values)), prev)
    groups = draw(st.permutations(CATALOGUE.groups))
    count = draw(st.integers(1, len(groups)))
    return prev, q.astype(np.int32), list(groups[:count])


@pytest.mark.parametrize("name", sorted(CODECS))
@settings(max_examples=60, deadline=None)
@given(tick=ticks())
def test_every_part_round_trips(name: str, tick: Tick) -> None:
    prev, q, groups = tick
    codec = get_codec(name)
    keyframes = codec.encode_keyframes(q, groups)
    deltas = codec.encode_deltas(prev, q, groups)
    assert len(keyframes) == len(deltas) == q.shape[0]
    for car in range(q.shape[0]):
        assert len(keyframes[car]) == len(deltas[car]) == len(groups)
        for gi, group in enumerate(groups):
            want = q[car, group.start : group.stop]
            base = prev[car, group.start : group.stop]
            got = codec.decode_keyframe(keyframes[car][gi], group.size)
            assert got.dtype == np.int32
            np.testing.assert_array_equal(got, want)
            got = codec.decode_delta(base.copy(), deltas[car][gi])
            assert got.dtype == np.int32
            np.testing.assert_array_equal(got, want)


def _leb128(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _nibble_varint(value: int) -> list[int]:
    out: list[int] = []
    while True:
        group = value & 0x7
        value >>= 3
        out.append(group | (0x8 if value else 0))
        if not value:
            return out


def reference_sparse(base: list[int], values: list[int]) -> bytes:
    """The sparse layout, written the slow and obvious way."""
    bitmap = bytearray((len(values) + 7) // 8)
    nibbles: list[int] = []
    for i, (old, new) in enumerate(zip(base, values, strict=True)):
        if new != old:
            bitmap[i // 8] |= 1 << (i % 8)
            d = new - old
            nibbles += _nibble_varint(2 * d if d >= 0 else -2 * d - 1)
    if len(nibbles) % 2:
        nibbles.append(0)
    tail = bytes(lo | hi << 4 for lo, hi in zip(nibbles[0::2], nibbles[1::2], strict=True))
    return bytes(bitmap) + tail


@settings(max_examples=60, deadline=None)
@given(tick=ticks())
def test_sparse_matches_the_reference_byte_for_byte(tick: Tick) -> None:
    prev, q, groups = tick
    deltas = CODECS["sparse"].encode_deltas(prev, q, groups)
    keyframes = CODECS["sparse"].encode_keyframes(q, groups)
    for car in range(q.shape[0]):
        for gi, g in enumerate(groups):
            new = q[car, g.start : g.stop].tolist()
            assert deltas[car][gi] == reference_sparse(prev[car, g.start : g.stop].tolist(), new)
            assert keyframes[car][gi] == reference_sparse([0] * g.size, new)


@settings(max_examples=40, deadline=None)
@given(tick=ticks())
def test_vcdiff_deltas_decode_with_the_pypi_decoder(tick: Tick) -> None:
    prev, q, groups = tick
    deltas = CODECS["vcdiff"].encode_deltas(prev, q, groups)
    for car in range(q.shape[0]):
        for gi, g in enumerate(groups):
            source = to_planes(prev[car, g.start : g.stop])
            target = to_planes(q[car, g.start : g.stop])
            assert vcdiff_decoder.decode(source, deltas[car][gi]) == target


GROUPS = CATALOGUE.groups


def test_vcdiff_is_smaller_than_full_when_little_changes() -> None:
    rng = np.random.default_rng(7)
    prev = rng.integers(-1000, 1000, (40, CHANNELS)).astype(np.int32)
    q = prev.copy()
    q[:, ::10] += 1
    full = sum(len(p) for row in CODECS["full"].encode_deltas(prev, q, GROUPS) for p in row)
    ours = sum(len(p) for row in CODECS["vcdiff"].encode_deltas(prev, q, GROUPS) for p in row)
    assert ours < full / 2


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(MISSING - INT32_MAX, INT32_MAX - MISSING), max_size=50))
def test_varint_kernels_match_leb128(numbers: list[int]) -> None:
    d = np.array(numbers, dtype=np.int64)
    z = zigzag(d)
    np.testing.assert_array_equal(unzigzag(z), d)
    lengths = varint_lengths(z)
    at = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    out = np.zeros(int(lengths.sum()), dtype=np.uint8)
    write_varints(out, at, z, lengths)
    assert out.tobytes() == b"".join(_leb128(int(v)) for v in z)


@settings(max_examples=100, deadline=None)
@given(
    numbers=st.lists(st.integers(MISSING - INT32_MAX, INT32_MAX - MISSING), max_size=50),
    gap=st.integers(0, 3),
)
def test_nibble_kernels_match_the_reference(numbers: list[int], gap: int) -> None:
    """Varints written at scattered offsets, with untouched nibbles between them."""
    z = zigzag(np.array(numbers, dtype=np.int64))
    lengths = nibble_lengths(z)
    assert lengths.max(initial=1) <= 11
    at = np.concatenate(([0], np.cumsum(lengths + gap)[:-1])).astype(np.int64)
    out = np.full(int((lengths + gap).sum()), 0xFF, dtype=np.uint8)
    write_nibbles(out, at, z, lengths)
    want: list[int] = []
    for v in z.tolist():
        want += _nibble_varint(v) + [0xFF] * gap
    assert out.tolist() == want


def test_nibble_varint_examples() -> None:
    z = np.array([0, 7, 8, 63, 64, 2**33 - 1], dtype=np.uint64)
    lengths = nibble_lengths(z)
    assert lengths.tolist() == [1, 1, 2, 2, 3, 11]
    out = np.zeros(int(lengths.sum()), dtype=np.uint8)
    write_nibbles(out, np.cumsum(lengths) - lengths, z, lengths)
    assert out.tolist() == [0, 7, 8, 1, 15, 7, 8, 8, 1] + [15] * 10 + [7]


def test_unknown_codec_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="full, sparse, vcdiff"):
        get_codec("zstd")


@pytest.mark.parametrize("name", sorted(CODECS))
def test_encoders_check_their_arguments(name: str) -> None:
    codec = CODECS[name]
    q = np.zeros((2, CHANNELS), dtype=np.int32)
    with pytest.raises(TypeError):
        codec.encode_deltas(q, q.astype(np.float64), CATALOGUE.groups)
    with pytest.raises(ValueError):
        codec.encode_deltas(q[:1], q, CATALOGUE.groups)
    with pytest.raises(ValueError):
        codec.encode_keyframes(q, [])
    with pytest.raises(ValueError):
        codec.encode_keyframes(q[:, :10], CATALOGUE.groups)


def test_codec_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        CODECS["sparse"].decode_keyframe(b"", 3)
    assert issubclass(CodecError, ValueError)


@pytest.mark.parametrize("name", sorted(CODECS))
@settings(max_examples=30, deadline=None)
@given(
    raw=arrays(
        np.float64,
        (2, 2, CHANNELS),
        elements=st.one_of(
            st.floats(allow_nan=True, allow_infinity=True),
            st.sampled_from([np.nan, 0.0, -1e12, 1e12]),
        ),
    )
)
def test_values_with_nan_survive_quantise_encode_decode(
    name: str, raw: NDArray[np.float64]
) -> None:
    """Channel values (NaN = stale sensor) through quantise, both part kinds and back."""
    prev, q = CATALOGUE.quantise(raw[0]), CATALOGUE.quantise(raw[1])
    codec = CODECS[name]
    deltas = codec.encode_deltas(prev, q, GROUPS)
    keyframes = codec.encode_keyframes(q, GROUPS)
    for car in range(2):
        got = np.concatenate(
            [
                codec.decode_delta(prev[car, g.start : g.stop], deltas[car][i])
                for i, g in enumerate(GROUPS)
            ]
        )
        np.testing.assert_array_equal(CATALOGUE.dequantise(got), CATALOGUE.dequantise(q[car]))
        assert np.array_equal(np.isnan(CATALOGUE.dequantise(got)), ~np.isfinite(raw[1, car]))
        got = np.concatenate(
            [codec.decode_keyframe(keyframes[car][i], g.size) for i, g in enumerate(GROUPS)]
        )
        np.testing.assert_array_equal(got, q[car])
