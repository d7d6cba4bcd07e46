"""What every fuzz target shares: the example budget, the per-call checks and the tally.

A target feeds one decoder with hypothesis-generated input and accepts two
outcomes only: a valid value, or the decoder's documented error.  Anything
else fails, and so does

* a hang: each example has a deadline (:data:`DEADLINE_MS`), and the whole
  target pytest-timeout's limit;
* unbounded memory: the decoder call runs under ``tracemalloc``, and its peak
  allocation must stay under :func:`memory_bound` of the input's size, so a
  length field that claims 2**31 elements and is believed fails here long
  before it could exhaust the machine.

``SLIPSTREAM_FUZZ_EXAMPLES`` sets the examples per target (default
:data:`CI_EXAMPLES`, the CI run); the full run is::

    SLIPSTREAM_FUZZ_EXAMPLES=100000 SLIPSTREAM_FUZZ_REPORT=fuzz.json \
        pytest tests/fuzz -o timeout=3600 -p no:cacheprovider

A *case* is one decoder call.  Each hypothesis example decodes its drawn
input and :data:`MUTANTS` byte-level mutations of it (from a seed hypothesis
draws, so a failure still replays and shrinks): hypothesis spends about a
millisecond per example on its own, a decoder call tens of microseconds.
Large budgets run in rounds of at most :data:`ROUND_EXAMPLES` examples (each a
fresh hypothesis run with its own random seed), which keeps hypothesis's own
bookkeeping small.  With ``SLIPSTREAM_FUZZ_REPORT`` set, each target appends
one JSON line (target, cases, examples, outcomes, seconds) to that file.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
import tracemalloc
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings

T = TypeVar("T")

#: Cases per target when ``SLIPSTREAM_FUZZ_EXAMPLES`` is not set (the CI run).
CI_EXAMPLES = 5000
#: Examples per hypothesis run; a larger budget is split into rounds.
ROUND_EXAMPLES = 5000
#: Mutations decoded per hypothesis example, besides the drawn input itself.
MUTANTS = 15
#: Longest a single example (its 16 cases) may take.  Examples take about a
#: millisecond; a hang would take for ever; the margin is for a loaded CI machine
#: (a stall must not fail the run as "flaky").
DEADLINE_MS = 10_000


def budget() -> int:
    """Cases per target (``SLIPSTREAM_FUZZ_EXAMPLES``, default :data:`CI_EXAMPLES`)."""
    text = os.environ.get("SLIPSTREAM_FUZZ_EXAMPLES")
    value = int(text) if text else CI_EXAMPLES
    if value < 1:
        raise ValueError("SLIPSTREAM_FUZZ_EXAMPLES must be at least 1")
    return value


def memory_bound(input_bytes: int) -> int:
    """Largest peak allocation accepted for decoding ``input_bytes`` bytes.

    Generous (a decoder may build Python lists of the input: tens of bytes per
    input byte), but linear: what no length field can talk a decoder into.
    """
    return 1_000_000 + 100 * input_bytes


def _peak(decode: Callable[[], object]) -> tuple[object, int, BaseException | None]:
    """Run ``decode`` under tracemalloc: (value, peak bytes, exception or None)."""
    tracemalloc.start()
    try:
        return decode(), tracemalloc.get_traced_memory()[1], None
    except Exception as exc:
        return None, tracemalloc.get_traced_memory()[1], exc
    finally:
        tracemalloc.stop()


def _traced(decode: Callable[[], T], tally: Tally, input_bytes: int) -> T:
    """``decode()``, failing if its peak allocation passes :func:`memory_bound`.

    A peak over the bound is measured once more: a one-off allocation that the
    input did not cause (a lazy import, a cache filled for the first time, a
    garbage collection running a finaliser) does not repeat; a length field
    believed does.
    """
    bound = memory_bound(input_bytes)
    value, peak, exc = _peak(decode)
    if peak > bound:
        value, peak, exc = _peak(decode)
    tally.peak_bytes = max(tally.peak_bytes, peak)
    assert peak <= bound, (
        f"{tally.target}: decoding {input_bytes} bytes allocated {peak} bytes at its "
        f"peak, twice (bound {bound})"
    )
    if exc is not None:
        raise exc
    return value  # type: ignore[return-value]


class Tally:
    """Counts the decoder calls of one target, and its outcomes."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.calls = 0
        self.examples = 0
        self.values = 0
        self.errors = 0
        self.peak_bytes = 0

    def call(
        self,
        decode: Callable[[], T],
        allowed: type[Exception] | tuple[type[Exception], ...],
        input_bytes: int,
    ) -> T | None:
        """Run ``decode``; its value, or None when it raised an ``allowed`` error.

        Raises:
            AssertionError: It allocated more than :func:`memory_bound` at its peak.
            Exception: Whatever else it raised (that is the bug the fuzzer found).
        """
        self.calls += 1
        try:
            value = _traced(decode, self, input_bytes)
        except allowed:
            self.errors += 1
            return None
        self.values += 1
        return value

    def cases(
        self,
        data: bytes,
        seed: int,
        decode: Callable[[bytes], T],
        allowed: type[Exception] | tuple[type[Exception], ...],
        check: Callable[[T], None] | None = None,
    ) -> None:
        """Decode ``data`` and :data:`MUTANTS` mutations of it (seeded by ``seed``).

        ``check`` is called on every value returned.
        """
        self.examples += 1
        rng = random.Random(seed)
        for attempt in range(MUTANTS + 1):
            case = data if attempt == 0 else mutate(data, rng)
            value = self.call(lambda case=case: decode(case), allowed, len(case))  # type: ignore[misc]
            if value is not None and check is not None:
                check(value)


#: msgpack and VCDIFF-style headers that claim huge lengths.
HUGE = (
    b"\xc6\xff\xff\xff\xff", b"\xc6\x7f\xff\xff\xff", b"\xdb\xff\xff\xff\xff",
    b"\xdd\xff\xff\xff\xff", b"\xdd\x80\x00\x00\x00", b"\xdf\xff\xff\xff\xff",
    b"\xc9\xff\xff\xff\xff\x01", b"\xdc\xff\xff", b"\xde\xff\xff", b"\xc5\xff\xff",
    b"\xff\xff\xff\xff\x0f", b"\x87\xff\xff\xff\x7f", b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
)  # fmt: skip


def mutate(data: bytes, rng: random.Random) -> bytes:
    """``data`` with one to four random byte-level mutations.

    Bit flips, overwrites with edge bytes, deletions, insertions, truncation,
    duplicated slices, and splices of headers that claim huge lengths.
    """
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(7)
        at = rng.randint(0, len(out))
        if kind == 0 and at < len(out):
            out[at] ^= 1 << rng.randrange(8)
        elif kind == 1 and at < len(out):
            out[at] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif kind == 2 and at < len(out):
            del out[at : at + rng.randint(1, 8)]
        elif kind == 3:
            out[at:at] = rng.randbytes(rng.randint(1, 8))
        elif kind == 4:
            del out[at:]
        elif kind == 5:
            out[at:at] = rng.choice(HUGE)
        else:
            end = rng.randint(at, len(out))
            out[at:at] = out[at:end]
    return bytes(out)


def fuzz_settings(examples: int) -> settings:
    """Hypothesis settings of one round."""
    return settings(
        max_examples=examples,
        deadline=timedelta(milliseconds=DEADLINE_MS),
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    )


def run_rounds(target: str, make_test: Callable[[Tally, settings], Callable[[], None]]) -> Tally:
    """Run a target for :func:`budget` cases in rounds; check and record the count.

    Args:
        target: Name of the target (for the report).
        make_test: Builds the ``@given`` test of one round from the tally and
            that round's settings; each example calls :meth:`Tally.cases`.
    """
    total = budget()
    tally = Tally(target)
    start = time.perf_counter()
    rounds = 0
    while tally.calls < total:
        examples = min(ROUND_EXAMPLES, math.ceil((total - tally.calls) / (MUTANTS + 1)))
        make_test(tally, fuzz_settings(examples))()
        rounds += 1
    seconds = time.perf_counter() - start
    report = os.environ.get("SLIPSTREAM_FUZZ_REPORT")
    if report:
        entry: dict[str, Any] = {
            "target": target,
            "cases": tally.calls,
            "examples": tally.examples,
            "values": tally.values,
            "errors": tally.errors,
            "peak_bytes": tally.peak_bytes,
            "rounds": rounds,
            "seconds": round(seconds, 1),
        }
        with open(report, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")
    return tally
