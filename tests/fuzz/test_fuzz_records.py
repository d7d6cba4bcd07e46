"""Fuzz the bus-record decoders: ``decode_raw``, ``decode_frame``, ``decode_event``.

Each either returns a well-formed record or raises :class:`RecordError`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from slipstream.catalogue import CATALOGUE
from slipstream.records import (
    Frame,
    RaceEvent,
    RawBatch,
    RecordError,
    decode_event,
    decode_frame,
    decode_raw,
    encode_event,
    encode_frame,
    encode_raw,
)
from tests.fuzz.harness import Tally, run_rounds
from tests.fuzz.strategies import INTS, SEEDS, VALUES, bytes_inputs, pack

CHANNELS = len(CATALOGUE)


@st.composite
def _raw_batches(draw: st.DrawFn) -> bytes:
    n = draw(st.integers(0, 6))
    channels = draw(st.sampled_from([1, 3, CHANNELS]))
    values = np.frombuffer(draw(st.binary(min_size=4 * n * channels, max_size=4 * n * channels)),
                           dtype="<f4").reshape(n, channels)  # fmt: skip
    return encode_raw(RawBatch(draw(st.text(max_size=8)), draw(st.integers(0, 999)),
                               draw(st.integers(0, 2**40)), draw(st.integers(0, 2**62)),
                               draw(st.sampled_from([50, 100, 200])), values))  # fmt: skip


@st.composite
def _frames(draw: st.DrawFn) -> bytes:
    q = np.array(draw(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=0, max_size=CHANNELS)),
                 dtype=np.int32)  # fmt: skip
    return encode_frame(Frame(draw(st.text(max_size=8)), draw(st.integers(0, 2**40)),
                              draw(st.integers(0, 999)), q, draw(st.integers(0, 400))))  # fmt: skip


@st.composite
def _events(draw: st.DrawFn) -> bytes:
    data = draw(st.dictionaries(st.text(max_size=6), VALUES, max_size=4))
    cars = tuple(draw(st.lists(st.integers(0, 999), max_size=5)))
    kind = draw(st.sampled_from(["flag", "lap", "pit_in", "x"]))
    return encode_event(RaceEvent(draw(st.text(max_size=8)), draw(st.integers(0, 2**62)), kind,
                                  cars, data))  # fmt: skip


_FIELDS = {
    "raw": ["v", "race", "car", "seq", "t0", "hz", "n", "ch", "x"],
    "frame": ["v", "race", "tick", "car", "n", "q"],
    "event": ["v", "race", "t", "kind", "cars", "data"],
}


@st.composite
def _near_maps(draw: st.DrawFn, kind: str) -> bytes:
    """A version-1 map with the record's fields, each of a random value or type."""
    obj: dict[str, Any] = {"v": draw(st.sampled_from([1, 1, 1, 0, 2, "1", None]))}
    for name in _FIELDS[kind][1:]:
        if draw(st.integers(0, 9)) == 0:
            continue  # a missing field
        obj[name] = draw(st.one_of(INTS, VALUES, st.binary(max_size=4 * CHANNELS * 2)))
    if draw(st.booleans()):
        obj[draw(st.text(max_size=4))] = draw(VALUES)
    return pack(obj)


def _check_raw(batch: RawBatch) -> None:
    assert batch.values.ndim == 2 and batch.values.dtype == np.dtype("<f4")
    assert batch.rate_hz > 0


def _check_frame(frame: Frame) -> None:
    assert frame.q.ndim == 1 and frame.q.dtype == np.dtype("<i4")


def _check_event(event: RaceEvent) -> None:
    assert isinstance(event.kind, str) and isinstance(event.data, dict)
    assert all(isinstance(c, int) for c in event.cars)


def _target(
    name: str, decode: Callable[[bytes], Any], check: Callable[[Any], None], valid: Any
) -> None:
    def make(tally: Tally, round_settings: settings) -> Callable[[], None]:
        @round_settings
        @given(bytes_inputs(st.one_of(valid, _near_maps(name))), SEEDS)
        def fuzz(data: bytes, seed: int) -> None:
            tally.cases(data, seed, decode, RecordError, check)

        return fuzz

    run_rounds(f"records.decode_{name}", make)


def test_fuzz_decode_raw() -> None:
    _target("raw", decode_raw, _check_raw, _raw_batches())


def test_fuzz_decode_frame() -> None:
    _target("frame", decode_frame, _check_frame, _frames())


def test_fuzz_decode_event() -> None:
    _target("event", decode_event, _check_event, _events())
