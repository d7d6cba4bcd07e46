"""The fan-session core without an event loop: events in, actions out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from broadcast.config import BroadcastConfig
from broadcast.fan import LIVE, Action, Close, Fan, ReadHistory, Send
from broadcast.fanout import EncodedTick
from broadcast.fans import Fans, TickPlan
from broadcast.framing import sse_event, ws_frame
from broadcast.protocol import (
    CLOSE_BAD_INPUT,
    CLOSE_TOO_SLOW,
    Cursor,
    Subscribe,
    decode_message,
)
from broadcast.ticks import TickAssembler, TickData
from slipstream.auth import CLOSE_FORBIDDEN, CLOSE_TOKEN_EXPIRED, Grant
from slipstream.catalogue import CATALOGUE
from slipstream.gate import SessionGate
from slipstream.metrics import Registry
from slipstream.records import Frame, RaceEvent

CARS = (1, 7, 24)
ALL_GROUPS = tuple(g.index for g in CATALOGUE.groups)


def race_ticks(race: str, ticks: range, events: dict[int, str] | None = None) -> list[TickData]:
    """TickData of ``race`` for ``ticks``, every car each tick (events: tick -> kind)."""
    assembler = TickAssembler(1.0, lambda car: 0)
    assembler.add_event(RaceEvent(race, 0, "race_start", CARS, {}), 0.0)
    out: list[TickData] = []
    channels = len(CATALOGUE)
    for tick in ticks:
        for kind in (events or {}).get(tick, "").split():
            assembler.add_event(RaceEvent(race, tick * 500_000_000 + 1, kind, (), {}), 0.0)
        for car in CARS:
            values = np.full(channels, tick * 3 + car, dtype=np.int32)
            out += assembler.add_frame(Frame(race, tick, car, values, 10), 0, 0.0)
        out += assembler.emit_through(tick)
    return out


@dataclass
class Node:
    """A node's registry fed by hand, with a record of what each fan got."""

    fans: Fans
    got: dict[str, list[Any]]

    def publish(self, ticks: list[TickData]) -> list[TickPlan]:
        plans = []
        for data in ticks:
            tick = EncodedTick(data)
            self.fans.publish(tick)
            plan = self.fans.plan(tick)
            for fan, action in plan.actions:
                self.got[fan.id].append(action)
            for _, data_, sinks in plan.writes:
                for sink in sinks:
                    sink(data_)
            plans.append(plan)
        return plans

    def fan(self, fan_id: str, transport: str = "ws", gate: SessionGate | None = None) -> Fan:
        self.got[fan_id] = []
        fan = Fan(self.fans, transport, self.got[fan_id].append, gate, fan_id=fan_id)
        self.fans.add(fan)
        return fan


class _Covers:
    def covers(self, race: str, tick: int) -> bool:
        return True


def make_node(history: bool = False, **config: Any) -> Node:
    cfg = BroadcastConfig(server_id="n1", replay_ticks=config.pop("replay_ticks", 5), **config)
    fans = Fans(cfg, Registry())
    if history:
        fans.history_index = _Covers()
    return Node(fans, {})


def sub(cursor: Cursor | None = None, cars: tuple[int, ...] | None = None, **kw: Any) -> Subscribe:
    return Subscribe(cars, ALL_GROUPS, "sparse", cursor, **kw)


def kinds(actions: list[Action]) -> list[str]:
    """A readable line per action: ``t`` of a message (tick: ``tick N [kf]``), or the action."""
    out = []
    for action in actions:
        if isinstance(action, Send):
            out.append(describe(decode_message(action.message)))
        elif isinstance(action, Close):
            out.append(f"close {action.code}")
        else:
            out.append(f"history {action.race}:{action.after}")
    return out


def describe(message: dict[str, Any]) -> str:
    if message["t"] == "tick":
        return f"tick {message['tick']}{' kf' if message['kf'] else ''}"
    if message["t"] == "notice":
        return f"notice {message['code']} {message['from']}..{message['to']}"
    return str(message["t"])


def ws_written(data: list[Any]) -> list[str]:
    """Decode what a WebSocket sink received (each item: one write of frames)."""
    out = []
    for blob in data:
        view = memoryview(blob)
        while view:
            size = view[1] & 0x7F
            start = 2
            if size == 126:
                size, start = int.from_bytes(view[2:4], "big"), 4
            elif size == 127:
                size, start = int.from_bytes(view[2:10], "big"), 10
            out.append(describe(decode_message(bytes(view[start : start + size]))))
            view = view[start + size :]
    return out


# -- resume: one table ---------------------------------------------------------------

RESUME = [
    # (name, cursor, keyframe, history, expected actions)
    ("no cursor", None, False, False, ["subscribed", "tick 9 kf"]),
    ("inside the ring", Cursor("R", 7), False, False, ["subscribed", "tick 8", "tick 9"]),
    ("at the head", Cursor("R", 9), False, False, ["subscribed"]),
    ("no state", Cursor("R", 7), True, False, ["subscribed", "tick 8 kf", "tick 9"]),
    (
        "past the ring",
        Cursor("R", 2),
        False,
        False,
        ["subscribed", "notice resume_gap 3..9", "tick 9 kf"],
    ),
    ("from the bus", Cursor("R", 2), False, True, ["subscribed", "history R:2"]),
    (
        "another race",
        Cursor("Q", 5),
        False,
        False,
        ["subscribed", "notice race_changed None..9", "tick 9 kf"],
    ),
    ("ahead of the node", Cursor("R", 20), False, False, ["subscribed"]),
]


@pytest.mark.parametrize(
    ("cursor", "keyframe", "history", "expected"),
    [row[1:] for row in RESUME],
    ids=[row[0] for row in RESUME],
)
def test_resume_table(
    cursor: Cursor | None, keyframe: bool, history: bool, expected: list[str]
) -> None:
    node = make_node(history=history)
    node.publish(race_ticks("R", range(10)))  # the ring holds 5..9
    fan = node.fan("a")
    actions = fan.control("subscribe", sub(cursor, keyframe=keyframe), 0.0, 0.0)
    assert kinds(actions) == expected
    assert fan.state == ("history" if history else LIVE)


def test_history_then_ring_then_live_without_gap_or_duplicate() -> None:
    node = make_node(history=True)
    ticks = race_ticks("R", range(12))
    node.publish(ticks[:10])
    fan = node.fan("a")
    assert kinds(fan.control("subscribe", sub(Cursor("R", 2)), 0.0, 0.0))[-1] == "history R:2"
    node.publish(ticks[10:11])  # a live tick while the bus is read: not for this fan yet
    assert node.got["a"] == []
    chunk_ticks = [EncodedTick(t) for t in ticks[3:6]]
    out = fan.history_chunk(chunk_ticks) + fan.history_end()
    # The ring now holds 6..10 (5 ticks): the chunk reached it, so nothing is missing.
    assert kinds(out) == [f"tick {t}" for t in range(3, 11)]
    node.publish(ticks[11:])
    assert ws_written(node.got["a"]) == ["tick 11"]


def test_a_history_that_falls_short_of_the_ring_is_a_reported_gap() -> None:
    node = make_node(history=True)
    node.publish(race_ticks("R", range(10)))
    fan = node.fan("a")
    fan.control("subscribe", sub(Cursor("R", 1)), 0.0, 0.0)
    out = fan.history_chunk([]) + fan.history_end()  # the bus had nothing any more
    assert kinds(out) == ["notice resume_gap 2..None"]
    node.publish(race_ticks("R", range(10, 11))[-1:])
    assert ws_written(node.got["a"]) == ["event", "tick 10 kf"]  # race_start rides along


def test_a_cursor_ahead_waits_for_the_ticks_after_it() -> None:
    node = make_node()
    ticks = race_ticks("R", range(14))
    node.publish(ticks[:10])
    fan = node.fan("a")
    fan.control("subscribe", sub(Cursor("R", 11)), 0.0, 0.0)
    node.publish(ticks[10:12])
    assert node.got["a"] == []
    node.publish(ticks[12:])
    assert ws_written(node.got["a"]) == ["tick 12", "tick 13"]


# -- live fan-out ---------------------------------------------------------------------


def test_fans_that_share_a_subscription_share_one_write_per_tick() -> None:
    node = make_node()
    ticks = race_ticks("R", range(4), events={3: "flag lap"})
    node.publish(ticks[:2])
    for name in ("a", "b", "c"):
        node.fan(name).control("subscribe", sub(), 0.0, 0.0)
    node.fan("d").control("subscribe", sub(cars=(7,)), 0.0, 0.0)
    node.fan("s", transport="sse").control("subscribe", sub(), 0.0, 0.0)
    for fan_id in node.got:
        node.got[fan_id].clear()
    [plan2, plan3] = node.publish(ticks[2:])
    # One write per (transport, subscription): 3 WebSocket fans share theirs.
    assert sorted(len(sinks) for _, _, sinks in plan2.writes) == [1, 1, 3]
    assert plan2.recipients == 5
    shared = next(data for _, data, sinks in plan3.writes if len(sinks) == 3)
    assert node.got["a"][-1] is node.got["b"][-1] is node.got["c"][-1] is shared
    # The tick's events travel in the same write as the tick.
    assert ws_written([shared]) == ["event", "event", "tick 3"]
    assert len(node.got["a"]) == 2  # one write per tick
    sse = node.got["s"][-1]
    size, body = sse.split(b"\r\n", 1)
    assert body[int(size, 16) :] == b"\r\n"  # one HTTP chunk: two events and the tick
    assert body.count(b"data: ") == 3 and body.count(b"id: ") == 1 and b"id: R:3\n" in body


def test_framing_of_a_live_tick_matches_the_message() -> None:
    node = make_node()
    ticks = race_ticks("R", range(3))
    node.publish(ticks[:1])
    node.fan("w").control("subscribe", sub(), 0.0, 0.0)
    node.fan("s", "sse").control("subscribe", sub(), 0.0, 0.0)
    node.got["w"].clear()
    node.got["s"].clear()
    node.publish(ticks[1:2])
    message = EncodedTick(ticks[1]).message(sub().key, False)
    # The emission time differs between two EncodedTicks: compare all but ``ts``.
    got = decode_message(ws_written_raw(node.got["w"][0]))
    want = decode_message(message)
    got.pop("ts"), want.pop("ts")
    assert got == want
    assert node.got["s"][0].endswith(b"\n\n\r\n")
    assert ws_frame(b"x") == b"\x82\x01x"
    assert sse_event(b"x", "R:1") == b"id: R:1\ndata: eA==\n\n"


def ws_written_raw(blob: bytes) -> bytes:
    size = blob[1] & 0x7F
    if size == 126:
        return blob[4 : 4 + int.from_bytes(blob[2:4], "big")]
    return blob[2 : 2 + size]


@pytest.mark.parametrize("how", ["subscribe", "keyframe op", "race change"])
def test_the_next_tick_is_a_keyframe_when_state_must_be_rebuilt(how: str) -> None:
    node = make_node()
    node.publish(race_ticks("R", range(2)))
    fan = node.fan("a")
    fan.control("subscribe", sub(), 0.0, 0.0)
    node.publish(race_ticks("R", range(3))[2:])
    node.got["a"].clear()
    if how == "subscribe":
        out = fan.control("subscribe", sub(cars=(1,)), 0.0, 0.0)
        assert kinds(out) == ["subscribed"]
        node.publish(race_ticks("R", range(4))[3:])
    elif how == "keyframe op":
        assert fan.control("keyframe", None, 0.0, 0.0) == []
        node.publish(race_ticks("R", range(4))[3:])
    else:
        node.publish(race_ticks("S", range(1)))
    ticks = [w for w in ws_written(node.got["a"]) if w != "event"]
    assert [w.split()[-1] for w in ticks] == ["kf"]


def test_unsubscribe_stops_the_stream_and_ping_pongs() -> None:
    node = make_node()
    node.publish(race_ticks("R", range(1)))
    fan = node.fan("a")
    fan.control("subscribe", sub(), 0.0, 0.0)
    assert kinds(fan.receive('{"op": "ping"}', 0.0, 0.0)) == ["pong"]
    assert kinds(fan.receive('{"op": "unsubscribe"}', 0.0, 0.0)) == ["unsubscribed"]
    node.got["a"].clear()
    node.publish(race_ticks("R", range(2))[1:])
    assert node.got["a"] == []


def test_bad_input_gets_errors_then_a_close() -> None:
    node = make_node(max_errors=3)
    fan = node.fan("a")
    assert kinds(fan.receive("nope", 0.0, 0.0)) == ["error"]
    assert kinds(fan.receive('{"op": "fly"}', 0.0, 0.0)) == ["error"]
    assert kinds(fan.receive('{"op": "subscribe", "codec": "zip"}', 0.0, 0.0)) == [
        "error",
        f"close {CLOSE_BAD_INPUT}",
    ]
    assert fan.receive('{"op": "ping"}', 0.0, 0.0) == []  # closed: nothing more
    assert node.fans.m_errors.value(code="unknown_codec") == 1


# -- falling behind -------------------------------------------------------------------


def test_a_fan_that_falls_behind_gets_a_conflated_notice_and_a_keyframe() -> None:
    node = make_node()
    ticks = race_ticks("R", range(8))
    node.publish(ticks[:1])
    fan = node.fan("a")
    fan.control("subscribe", sub(), 0.0, 0.0)
    node.got["a"].clear()
    node.fans.pause(fan)  # the transport's buffer passed its high-water mark
    node.publish(ticks[1:4])
    assert node.got["a"] == []
    node.fans.resume(fan)
    node.publish(ticks[4:6])
    actions = [a for a in node.got["a"] if isinstance(a, Send)]
    assert kinds(actions) == ["notice conflated 1..3"]
    assert ws_written([w for w in node.got["a"] if isinstance(w, bytes)]) == [
        "tick 4 kf",
        "tick 5",
    ]
    assert node.fans.m_keyframes.value(reason="slow") == 1


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_a_fan_behind_for_slow_fan_ticks_is_closed(transport: str) -> None:
    node = make_node(slow_fan_ticks=3)
    ticks = race_ticks("R", range(8))
    node.publish(ticks[:1])
    fan = node.fan("a", transport)
    fan.control("subscribe", sub(), 0.0, 0.0)
    node.fans.pause(fan)
    node.publish(ticks[1:3])
    assert not any(isinstance(a, Close) for a in node.got["a"])
    node.publish(ticks[3:5])
    closes = [a for a in node.got["a"] if isinstance(a, Close)]
    assert closes == [Close(CLOSE_TOO_SLOW, "too slow: stayed behind the stream")]
    assert node.fans.m_slow_closes.value() == 1


def test_a_stream_with_room_again_rejoins_by_its_room_check() -> None:
    node = make_node()
    full = [False]
    got: list[Any] = []

    def sink(data: bytes) -> None:  # a stream's sink drops a tick its buffer cannot take
        if full[0]:
            node.fans.pause(fan, dropped=True)
        else:
            got.append(data)

    node.got["s"] = got
    fan = Fan(node.fans, "sse", sink, fan_id="s", room=lambda: not full[0])
    node.fans.add(fan)
    node.publish(race_ticks("R", range(1)))
    fan.control("subscribe", sub(), 0.0, 0.0)
    full[0] = True
    node.publish(race_ticks("R", range(3))[1:])  # tick 1 dropped by the sink, tick 2 skipped
    full[0] = False
    got.clear()
    node.publish(race_ticks("R", range(4))[3:])
    assert kinds([a for a in got if isinstance(a, Send)]) == ["notice conflated 1..2"]
    assert node.fans.m_slow_drops.value() == 2


# -- tokens ---------------------------------------------------------------------------


def grant(cars: tuple[int, ...] | None, expires_at: float = 1e12) -> Grant:
    return Grant(cars=None if cars is None else frozenset(cars), groups=None, expires_at=expires_at)


def test_an_out_of_scope_subscribe_closes_with_4003_and_is_counted() -> None:
    node = make_node()
    fan = node.fan("a", gate=SessionGate(grant((7,)), None))
    out = fan.control("subscribe", sub(cars=(1,)), 0.0, 0.0)
    assert kinds(out) == [f"close {CLOSE_FORBIDDEN}"]
    assert node.fans.m_refused.value(code=str(CLOSE_FORBIDDEN)) == 1


def test_a_scoped_subscribe_without_cars_gets_the_grant() -> None:
    node = make_node()
    node.publish(race_ticks("R", range(1)))
    fan = node.fan("a", gate=SessionGate(grant((7,)), None))
    out = fan.control("subscribe", sub(), 0.0, 0.0)
    assert decode_message(out[0].message)["cars"] == [7]  # type: ignore[union-attr]


def test_expired_tokens_close_their_sessions_and_no_others() -> None:
    node = make_node()
    a, b = node.fan("a"), node.fan("b")
    node.fans.add(a, expires_at=100.0)
    node.fans.add(b, expires_at=200.0)
    assert node.fans.expired(99.0) == []
    closed = node.fans.expired(150.0)
    assert [(f.id, act) for f, act in closed] == [
        ("a", Close(CLOSE_TOKEN_EXPIRED, closed[0][1].reason))  # type: ignore[union-attr]
    ]
    assert "expired" in closed[0][1].reason  # type: ignore[union-attr]
    assert b.state != "closed"


def test_every_transport_is_in_one_registry() -> None:
    node = make_node()
    node.fan("w")
    node.fan("s", "sse")
    assert (node.fans.count("ws"), node.fans.count("sse")) == (1, 1)
    node.fans.remove(node.fans.fans["w"])
    assert node.fans.count("ws") == 0
    assert isinstance(ReadHistory("R", 1), ReadHistory)


def test_gone_fans_do_not_pile_up_in_the_expiry_schedule() -> None:
    node = make_node()
    for i in range(1000):
        fan = node.fan(f"f{i}")
        node.fans.add(fan, expires_at=1e9 + i)
        node.fans.remove(fan)
    assert len(node.fans._expiry) <= 130
