"""The fuzz harness itself catches what it promises to catch."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz.harness import MUTANTS, Tally, budget, memory_bound, mutate, run_rounds


def test_an_allowed_error_is_counted_and_a_value_returned() -> None:
    tally = Tally("t")
    assert tally.call(lambda: 5, ValueError, 1) == 5
    assert tally.call(lambda: int("x"), ValueError, 1) is None
    assert (tally.calls, tally.values, tally.errors) == (2, 1, 1)


def test_an_undocumented_error_escapes() -> None:
    empty: dict[str, int] = {}
    with pytest.raises(KeyError):
        Tally("t").call(lambda: empty["missing"], ValueError, 1)


def test_an_allocation_beyond_the_bound_fails() -> None:
    size = memory_bound(10) + 1
    with pytest.raises(AssertionError, match="allocated"):
        Tally("t").call(lambda: np.ones(size, dtype=np.uint8), ValueError, 10)
    # The same allocation from an input large enough to justify it passes.
    Tally("t").call(lambda: np.ones(size, dtype=np.uint8), ValueError, size)


def test_mutations_are_seeded_and_change_the_input() -> None:
    import random

    data = bytes(range(64))
    first = [mutate(data, random.Random(7)) for _ in range(1)]
    again = [mutate(data, random.Random(7)) for _ in range(1)]
    assert first == again
    changed = sum(mutate(data, random.Random(seed)) != data for seed in range(200))
    assert changed >= 190


def test_run_rounds_finds_a_planted_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIPSTREAM_FUZZ_EXAMPLES", "3000")
    assert budget() == 3000

    def decoder(data: bytes) -> int:
        if len(data) > 3 and data[1] == 0xFF:
            raise IndexError("planted")
        if data[:1] == b"!":
            raise ValueError("documented")
        return len(data)

    def make(tally: Tally, round_settings: settings) -> Callable[[], None]:
        @round_settings
        @given(st.binary(max_size=16), st.integers(0, 2**32 - 1))
        def fuzz(data: bytes, seed: int) -> None:
            tally.cases(data, seed, decoder, ValueError)

        return fuzz

    with pytest.raises(IndexError, match="planted"):
        run_rounds("planted", make)


def test_run_rounds_counts_cases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIPSTREAM_FUZZ_EXAMPLES", str(3 * (MUTANTS + 1)))

    def make(tally: Tally, round_settings: settings) -> Callable[[], None]:
        @round_settings
        @given(st.binary(max_size=16), st.integers(0, 2**32 - 1))
        def fuzz(data: bytes, seed: int) -> None:
            tally.cases(data, seed, len, ValueError)

        return fuzz

    tally = run_rounds("count", make)
    assert tally.calls >= 3 * (MUTANTS + 1)
    assert tally.examples >= 3
