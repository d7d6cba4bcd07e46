"""Fuzz the client-message parser ``broadcast.protocol.parse_control``.

It either returns ``(op, subscription)`` or raises :class:`ProtocolError`.
Inputs: arbitrary bytes and text, and control messages with random fields as
JSON text or msgpack bytes, nested deeply now and then (mutated by the harness).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slipstream.catalogue import CATALOGUE
from slipstream.codecs import CODECS
from tests.fuzz.harness import Tally, run_rounds
from tests.fuzz.strategies import INTS, SEEDS, VALUES, pack

protocol = pytest.importorskip("broadcast.protocol")

CODEC_NAMES = list(CODECS)
KNOWN_CARS = frozenset({1, 7, 24, 48, 99})
GROUP_NAMES = [g.name for g in CATALOGUE.groups]

_CARS = st.one_of(
    st.none(),
    st.lists(st.sampled_from(sorted(KNOWN_CARS)), max_size=6),
    st.lists(INTS, max_size=6),
    VALUES,
)
_GROUPS = st.one_of(
    st.none(),
    st.lists(st.sampled_from(GROUP_NAMES), max_size=6),
    st.lists(st.text(max_size=8), max_size=3),
    VALUES,
)
_CURSOR = st.one_of(
    st.none(),
    st.builds(lambda r, t: f"{r}:{t}", st.text(max_size=6), INTS),
    st.fixed_dictionaries({"race": st.one_of(st.text(max_size=6), VALUES), "tick": INTS}),
    VALUES,
)


@st.composite
def _messages(draw: st.DrawFn) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "op": draw(st.one_of(st.sampled_from(["subscribe", "subscribe", "keyframe",
                                              "unsubscribe", "ping", "Subscribe", ""]), VALUES))
    }  # fmt: skip
    for name, strategy in (
        ("cars", _CARS),
        ("groups", _GROUPS),
        ("codec", st.one_of(st.sampled_from([*CODEC_NAMES, "gzip"]), VALUES)),
        ("cursor", _CURSOR),
        ("keyframe", st.one_of(st.booleans(), VALUES)),
    ):
        if draw(st.booleans()):
            msg[name] = draw(strategy)
    return msg


def _nest(depth: int, inner: str) -> str:
    return "[" * depth + inner + "]" * depth


@st.composite
def _inputs(draw: st.DrawFn) -> str | bytes:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.binary(max_size=1024))
    if kind == 1:
        return draw(st.text(max_size=256))
    if kind == 5:
        # Deep nesting: the message size limit (64 KiB) allows tens of thousands of levels.
        depth = draw(st.sampled_from([10, 900, 1100, 5000, 30_000]))
        text = '{"op": "subscribe", "cars": ' + _nest(depth, "1") + "}"
        return text if draw(st.booleans()) else _nest(depth, "")
    msg = draw(_messages())
    try:
        text = json.dumps(msg)
    except (TypeError, ValueError):
        text = json.dumps({"op": "ping"})
    if kind == 2:
        return text
    if kind == 3:
        return text.encode()  # JSON sent as a binary frame: not msgpack
    return pack(msg)


def _parse(data: str | bytes) -> Any:
    return protocol.parse_control(
        data, codecs=CODEC_NAMES, default_codec="sparse", known_cars=KNOWN_CARS
    )


def _check(result: Any) -> None:
    op, sub = result
    assert op in ("subscribe", "keyframe", "unsubscribe", "ping")
    assert (sub is not None) == (op == "subscribe")
    if sub is not None:
        assert sub.codec in CODEC_NAMES
        assert sub.cars is None or set(sub.cars) <= KNOWN_CARS
        assert sub.groups and all(0 <= g < len(GROUP_NAMES) for g in sub.groups)


def test_fuzz_parse_control() -> None:
    def make(tally: Tally, round_settings: settings) -> Callable[[], None]:
        @round_settings
        @given(_inputs(), SEEDS)
        def fuzz(data: str | bytes, seed: int) -> None:
            if isinstance(data, str):
                # Mutate the UTF-8 bytes, then hand the parser text again (a WebSocket
                # text frame is valid UTF-8 by the time it reaches the parser).
                tally.cases(
                    data.encode(),
                    seed,
                    lambda b: _parse(b.decode("utf-8", "replace")),
                    protocol.ProtocolError,
                    _check,
                )
            else:
                tally.cases(data, seed, _parse, protocol.ProtocolError, _check)

        return fuzz

    run_rounds("broadcast.parse_control", make)


@pytest.mark.parametrize("depth", [1000, 60_000])
@pytest.mark.parametrize("binary", [False, True])
def test_deeply_nested_control_messages_are_malformed_not_crashes(depth: int, binary: bool) -> None:
    # Found by the fuzzer: json.loads raised RecursionError, not ProtocolError.
    text = '{"op": "subscribe", "cars": ' + _nest(depth, "") + "}"
    data: str | bytes = b"\x91" * depth if binary else text
    with pytest.raises(protocol.ProtocolError) as info:
        _parse(data)
    assert info.value.code in ("malformed", "bad_field")


def test_unhashable_msgpack_map_keys_are_malformed_not_crashes() -> None:
    # Found by the fuzzer: a msgpack map keyed by an array raised TypeError.
    data = b"\x81\x90\xc0"  # {[]: nil}
    with pytest.raises(protocol.ProtocolError, match="malformed"):
        _parse(data)
