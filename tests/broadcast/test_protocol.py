"""The pure protocol core: control messages, cursors, tick envelopes, decoding."""

from __future__ import annotations

import json

import msgpack
import numpy as np
import pytest

from broadcast.decoder import FrameItem, StreamDecoder
from broadcast.fanout import EncodedTick
from broadcast.protocol import (
    KIND_DELTA,
    KIND_KEYFRAME,
    Cursor,
    ProtocolError,
    decode_message,
    pack_part,
    parse_control,
    parse_cursor,
    tick_message,
)
from broadcast.ticks import TickAssembler
from slipstream.catalogue import CATALOGUE
from slipstream.codecs import CODECS
from slipstream.records import Frame
from tests.broadcast.helpers import expected_values, frame_values

CODEC_NAMES = list(CODECS)


def control(data: str | bytes, known: frozenset[int] | None = None):  # type: ignore[no-untyped-def]
    return parse_control(data, codecs=CODEC_NAMES, default_codec="full", known_cars=known)


def test_subscribe_json_and_msgpack_agree() -> None:
    obj = {
        "op": "subscribe",
        "cars": [48, 24, 24],
        "groups": ["tyres", "engine"],
        "codec": "sparse",
        "cursor": {"race": "R1", "tick": 7},
    }
    op, sub = control(json.dumps(obj))
    op2, sub2 = control(msgpack.packb(obj))
    assert op == op2 == "subscribe"
    assert sub == sub2
    assert sub is not None
    assert sub.cars == (24, 48)
    names = [CATALOGUE.groups[g].name for g in sub.groups]
    assert names == [g.name for g in CATALOGUE.resolve_groups(["tyres", "engine"])]
    assert sub.cursor == Cursor("R1", 7)
    assert sub.codec == "sparse"


def test_subscribe_defaults_to_everything() -> None:
    _, sub = control('{"op": "subscribe"}')
    assert sub is not None
    assert sub.cars is None
    assert sub.groups == tuple(range(len(CATALOGUE.groups)))
    assert sub.codec == "full"
    assert sub.cursor is None


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ("{not json", "malformed"),
        (b"\xc1\xc1", "malformed"),
        ("[1, 2]", "malformed"),
        ('{"op": "dance"}', "unknown_op"),
        ('{"op": "subscribe", "cars": [1, "x"]}', "bad_field"),
        ('{"op": "subscribe", "cars": [5000]}', "bad_field"),
        ('{"op": "subscribe", "cars": []}', "bad_field"),
        ('{"op": "subscribe", "groups": ["warp_drive"]}', "unknown_group"),
        ('{"op": "subscribe", "codec": "zip"}', "unknown_codec"),
        ('{"op": "subscribe", "cursor": {"race": "R1"}}', "bad_cursor"),
        ('{"op": "subscribe", "cursor": "R1:-5"}', "bad_cursor"),
        ('{"op": "subscribe", "keyframe": "yes"}', "bad_field"),
    ],
)
def test_bad_control_messages_name_the_problem(data: str | bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        control(data)
    assert info.value.code == code
    assert info.value.message


def test_unknown_cars_are_refused_with_the_known_ones() -> None:
    with pytest.raises(ProtocolError) as info:
        control('{"op": "subscribe", "cars": [1, 99]}', frozenset({1, 7}))
    assert info.value.code == "unknown_car"
    assert "99" in info.value.message and "1, 7" in info.value.message


def test_unknown_codec_lists_the_known_ones() -> None:
    with pytest.raises(ProtocolError) as info:
        control('{"op": "subscribe", "codec": "zip"}')
    for name in CODEC_NAMES:
        assert name in info.value.message


def test_parse_cursor() -> None:
    assert parse_cursor("monza-2026:120") == Cursor("monza-2026", 120)
    assert parse_cursor("a:b:-1") == Cursor("a:b", -1)
    for bad in ("R1", ":3", "R1:x", "R1:-2"):
        with pytest.raises(ProtocolError):
            parse_cursor(bad)


def test_tick_message_splices_parts_into_a_valid_map() -> None:
    for n in (0, 1, 15, 16, 300):
        parts = [pack_part(i, i % 13, KIND_DELTA, i - 1, bytes([i % 256]) * 3) for i in range(n)]
        msg = decode_message(tick_message("R", 5, False, "full", [3, 4], parts))
        assert msg["t"] == "tick" and msg["tick"] == 5 and msg["stale"] == [3, 4]
        assert msg["p"] == [[i, i % 13, KIND_DELTA, i - 1, bytes([i % 256]) * 3] for i in range(n)]


def test_decode_message_rejects_garbage() -> None:
    for bad in (b"", b"\x93\x01\x02\x03", msgpack.packb({"x": 1})):
        with pytest.raises(ProtocolError):
            decode_message(bad)


def _ticks(cars: list[int], n: int, skip: dict[int, set[int]] | None = None) -> list[EncodedTick]:
    assembler = TickAssembler(1.0, lambda car: car % 4)
    out = []
    for tick in range(n):
        for car in cars:
            if car in (skip or {}).get(tick, set()):
                continue
            assembler.add_frame(
                Frame("R", tick, car, frame_values("R", tick, car), 1), car % 4, 0.0
            )
        out += assembler.poll(5.0 * (tick + 1))
    return [EncodedTick(t) for t in out]


@pytest.mark.parametrize("codec", CODEC_NAMES)
def test_every_codec_round_trips_through_the_decoder(codec: str) -> None:
    cars = [1, 7, 24]
    ticks = _ticks(cars, 6, skip={2: {7}, 3: {7}})
    groups = tuple(g.index for g in CATALOGUE.resolve_groups(["tyres", "engine", "driver"]))
    decoder = StreamDecoder()
    seen = []
    for i, tick in enumerate(ticks):
        for item in decoder.feed(tick.message(((1, 7), groups, codec), i == 0)):
            assert isinstance(item, FrameItem)
            seen.append((item.tick, item.car))
            want = expected_values("R", item.tick, item.car, ["tyres", "engine", "driver"])
            assert item.values == pytest.approx(want, rel=1e-12)
    assert not decoder.needs_keyframe
    assert seen == [(t, c) for t in range(6) for c in (1, 7) if not (c == 7 and t in (2, 3))]
    assert decoder.cursor == Cursor("R", 5)


def test_delta_on_a_wrong_base_asks_for_a_keyframe() -> None:
    ticks = _ticks([1], 4)
    key = (None, (0,), "sparse")
    decoder = StreamDecoder()
    decoder.feed(ticks[0].message(key, True))
    # Tick 1 lost: tick 2's delta has base 1, the decoder holds tick 0.
    assert decoder.feed(ticks[2].message(key, False)) == []
    assert decoder.needs_keyframe
    items = decoder.feed(ticks[3].message(key, True))
    assert [i.tick for i in items if isinstance(i, FrameItem)] == [3]
    assert not decoder.needs_keyframe


def test_keyframe_parts_carry_the_tick_of_their_values() -> None:
    ticks = _ticks([1, 7], 3, skip={2: {7}})
    msg = decode_message(ticks[2].message((None, (0,), "full"), True))
    assert msg["kf"] and msg["stale"] == [7]
    bases = {car: base for car, _, kind, base, _ in msg["p"] if kind == KIND_KEYFRAME}
    assert bases == {1: 2, 7: 1}
    decoder = StreamDecoder()
    assert [i.car for i in decoder.feed(ticks[2].message((None, (0,), "full"), True))] == [1]
    assert np.array_equal(
        decoder._held[(7, 0)][1], frame_values("R", 1, 7)[: CATALOGUE.groups[0].stop]
    )
