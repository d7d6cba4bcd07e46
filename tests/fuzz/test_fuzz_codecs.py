"""Fuzz the codecs' part decoders: ``decode_keyframe`` and ``decode_delta`` of each codec.

Each either returns the group's values (int32, the group's size) or raises
:class:`CodecError`.  Inputs: arbitrary bytes, and real keyframe and delta
parts of random ticks (mutated by the harness), against real or random bases.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from slipstream.catalogue import CATALOGUE, MISSING, Group
from slipstream.codecs import CodecError, get_codec
from tests.fuzz.harness import Tally, run_rounds
from tests.fuzz.strategies import SEEDS

GROUPS = CATALOGUE.groups
CHANNELS = len(CATALOGUE)


def _frames(seed: int, step: int) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
    rng = np.random.default_rng(seed)
    wide = rng.integers(-(2**31) + 1, 2**31 - 1, (1, CHANNELS), dtype=np.int64)
    wide = np.where(rng.random(wide.shape) < 0.5, wide // 2**20, wide)
    moved = np.clip(wide + rng.integers(-step, step + 1, wide.shape), -(2**31) + 1, 2**31 - 1)
    prev = wide.astype(np.int32)
    q = moved.astype(np.int32)
    q[rng.random(q.shape) < 0.05] = MISSING
    return prev, q


@st.composite
def _cases(draw: st.DrawFn, codec_name: str) -> tuple[Group, NDArray[np.int32], bytes, bool]:
    """(group, base, payload, is_delta)."""
    codec = get_codec(codec_name)
    group = draw(st.sampled_from(GROUPS))
    seed = draw(st.integers(0, 2**32 - 1))
    prev, q = _frames(seed, draw(st.sampled_from([0, 1, 100, 2**16, 2**31])))
    base = prev[0, group.start : group.stop].copy()
    source = draw(st.integers(0, 4 if codec_name == "vcdiff" else 3))
    if source == 4:
        return group, base, draw(_vcdiff_windows(4 * group.size)), True
    if source == 0:
        payload = draw(st.binary(max_size=4 * group.size + 64))
        is_delta = draw(st.booleans())
    elif source == 1:
        payload = codec.encode_keyframes(q, [group])[0][0]
        is_delta = False
    else:
        payload = codec.encode_deltas(prev, q, [group])[0][0]
        is_delta = True
        if source == 3:  # a real delta against a base it was not made for
            base = _frames(seed + 1, 10)[0][0, group.start : group.stop].copy()
    return group, base, payload, is_delta


def _varint(value: int) -> bytes:
    """RFC 3284 varint: base 128, most significant group first."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


@st.composite
def _vcdiff_windows(draw: st.DrawFn, window_size: int) -> bytes:
    """A VCDIFF delta whose instruction sizes add up to the window (so it passes the
    size check and reaches the decoder), with random RUN / ADD / COPY instructions,
    address modes (SELF, HERE, near, same) and addresses, valid or not."""
    data, inst, addr = bytearray(), bytearray(), bytearray()
    left = window_size
    while left > 0:
        size = draw(st.integers(1, left))
        kind = draw(st.integers(0, 2))
        if kind == 0:  # RUN, explicit size
            inst += b"\x00" + _varint(size)
            data.append(draw(st.integers(0, 255)))
        elif kind == 1:  # ADD, explicit size
            inst += b"\x01" + _varint(size)
            data += draw(st.binary(min_size=size, max_size=size))
        else:  # COPY mode m, explicit size
            mode = draw(st.integers(0, 8))
            inst += bytes([19 + 16 * mode]) + _varint(size)
            where = draw(st.one_of(st.integers(0, 2 * window_size), st.integers(0, 2**40)))
            addr += bytes([where & 0xFF]) if mode >= 6 else _varint(where)
        left -= size
    source_size = draw(st.sampled_from([window_size, window_size // 2, 0]))
    body = (_varint(window_size) + b"\x00" + _varint(len(data)) + _varint(len(inst))
            + _varint(len(addr)) + bytes(data) + bytes(inst) + bytes(addr))  # fmt: skip
    window = b"\x01" + _varint(source_size) + b"\x00" + _varint(len(body)) + body
    return b"\xd6\xc3\xc4\x00\x00" + window


def _check(size: int) -> Callable[[NDArray[np.int32]], None]:
    def check(values: NDArray[np.int32]) -> None:
        assert values.dtype == np.int32 and values.shape == (size,)

    return check


@pytest.mark.parametrize("codec_name", ["full", "sparse", "vcdiff"])
def test_fuzz_codec_decoders(codec_name: str) -> None:
    codec = get_codec(codec_name)

    def make(tally: Tally, round_settings: settings) -> Callable[[], None]:
        @round_settings
        @given(_cases(codec_name), SEEDS)
        def fuzz(case: tuple[Group, NDArray[np.int32], bytes, bool], seed: int) -> None:
            group, base, payload, is_delta = case
            if is_delta:
                tally.cases(payload, seed, lambda p: codec.decode_delta(base, p), CodecError,
                            _check(group.size))  # fmt: skip
            else:
                tally.cases(payload, seed, lambda p: codec.decode_keyframe(p, group.size),
                            CodecError, _check(group.size))  # fmt: skip

        return fuzz

    run_rounds(f"codecs.{codec_name}", make)
