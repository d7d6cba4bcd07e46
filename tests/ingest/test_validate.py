"""Stateless validation, dead-letter records and duplicate memory."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.dedup import SeenSeqs
from ingest.dlq import DeadLetter, decode_dead_letter, encode_dead_letter
from ingest.errors import Rejected
from ingest.validate import REASONS, Validator, ValidatorConfig, parse_cars
from slipstream.catalogue import CATALOGUE
from slipstream.records import RawBatch, encode_raw

C = len(CATALOGUE)


def good_values(n: int = 12) -> np.ndarray:
    return np.tile(((CATALOGUE.minimum + CATALOGUE.maximum) / 2).astype(np.float32), (n, 1))


def encoded(**changes: object) -> bytes:
    fields: dict[str, object] = {
        "race": "r", "car": 7, "seq": 0, "t0_ns": 0, "rate_hz": 120, "values": good_values(),
    }  # fmt: skip
    fields.update(changes)
    return encode_raw(RawBatch(**fields))  # type: ignore[arg-type]


def reason_of(data: bytes, validator: Validator | None = None) -> str:
    with pytest.raises(Rejected) as info:
        (validator or Validator()).check(data)
    return info.value.reason


def test_a_good_record_passes_with_nan_dropouts_and_bound_values() -> None:
    values = good_values()
    values[0, :] = np.nan
    values[1, :] = CATALOGUE.minimum.astype(np.float32)
    values[2, :] = CATALOGUE.maximum.astype(np.float32)
    batch = Validator().check(encoded(values=values))
    assert batch.car == 7 and batch.values.shape == (12, C)


def test_bad_inputs_each_have_a_distinct_reason() -> None:
    good = encoded()
    obj = msgpack.unpackb(good)
    cases = {
        "bad_version": msgpack.packb({**obj, "v": 99}),
        "truncated": good[:-10],
        "unknown_car": encoded(car=100),
        "bad_length": msgpack.packb({**obj, "x": obj["x"][:-4]}),
        "bad_channels": encoded(values=good_values()[:, :-1]),
        "malformed": b"\xc1\xc1",
        "bad_field": msgpack.packb({**obj, "car": "seven"}),
        "bad_rate": encoded(rate_hz=5000),
        "bad_timestamp": encoded(t0_ns=-1),
    }
    inf = good_values()
    inf[4, 9] = -np.inf
    cases["non_finite"] = encoded(values=inf)
    out = good_values()
    out[4, CATALOGUE.index["throttle"]] = 101.0
    cases["out_of_range"] = encoded(values=out)
    for reason, data in cases.items():
        assert reason_of(data) == reason, reason
    assert set(cases) <= set(REASONS)


def test_rejection_carries_what_is_known() -> None:
    with pytest.raises(Rejected) as info:
        Validator().check(encoded(car=0, seq=5))
    assert (info.value.race, info.value.car, info.value.seq) == ("r", 0, 5)


def test_entry_list() -> None:
    validator = Validator(ValidatorConfig(cars_allowed=parse_cars("3,10-12")))
    assert validator.cars == {3, 10, 11, 12}
    assert reason_of(encoded(car=7), validator) == "unknown_car"
    validator.check(encoded(car=11))
    assert parse_cars("") is None
    with pytest.raises(ValueError):
        parse_cars("1,x")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_never_escapes_as_anything_but_rejected(data: bytes) -> None:
    with pytest.raises(Rejected) as info:
        Validator().check(data)
    assert info.value.reason in REASONS


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(0, 400))
def test_every_truncation_is_rejected(cut: int) -> None:
    data = encoded(values=good_values(1))
    if cut < len(data):
        assert reason_of(data[:cut]) in REASONS


def test_dead_letter_round_trip() -> None:
    letter = DeadLetter("late", "2 of 12", "slipstream.raw", 3, 99, b"7", b"\x00raw", "r", 7, 4, 2)
    assert decode_dead_letter(encode_dead_letter(letter)) == letter
    with pytest.raises(ValueError):
        decode_dead_letter(b"\x01")


def test_seen_seqs_tells_replays_from_duplicates_and_forgets_old_numbers() -> None:
    seen = SeenSeqs(horizon=4)
    assert seen.add(0, offset=10)
    assert seen.add(0, offset=10)  # the same record read again
    assert not seen.add(0, offset=11)  # a copy
    for seq in range(1, 20):
        seen.add(seq, offset=10 + seq)
    assert len(seen) <= 9
    assert seen.add(0, offset=50)  # forgotten: new again (it will be late instead)
    rows = seen.before(25)
    restored = SeenSeqs.restore(rows, 4)
    assert not restored.add(int(rows[-1, 0]), offset=99)


def test_seen_seqs_checks_batches_against_the_grid_of_their_neighbours() -> None:
    rate = 100_000_000  # a 10 ns sample period; batches of 10 samples are 100 ns long
    seen = SeenSeqs(horizon=3)
    seen.add(4, offset=1, first_ns=400, last_ns=490, rate_hz=rate)
    seen.add(6, offset=2, first_ns=600, last_ns=690, rate_hz=rate)

    def reason(seq: int, first_ns: int, rate_hz: int = rate) -> str | None:
        problem = seen.inconsistency(seq, first_ns, first_ns + 90, rate_hz)
        return None if problem is None else problem[0]

    assert reason(5, 500) is None
    assert reason(5, 450) == "bad_timestamp"  # overlaps batch 4
    assert reason(5, 530) == "bad_timestamp"  # runs into batch 6
    assert reason(5, 500, rate // 2) == "bad_timestamp"  # another rate
    assert reason(7, 100) == "bad_timestamp"  # a damaged sequence number
    assert reason(20, 2000) is None  # far ahead, on the grid of the latest batch
    assert reason(20, 2100) == "bad_timestamp"
    assert reason(2, 200) == "bad_seq"  # below the horizon: cannot be checked
