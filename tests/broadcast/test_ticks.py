"""Tick assembly, the replay ring and encode-once fan-out (pure cores, no event loop)."""

from __future__ import annotations

import numpy as np
import pytest

from broadcast.fanout import EncodedTick, FanoutStats
from broadcast.protocol import Cursor, decode_message
from broadcast.ring import ReplayRing, plan_resume
from broadcast.ticks import TickAssembler, TickData
from slipstream.records import TICK_NS, Frame, RaceEvent
from tests.broadcast.helpers import frame_values


def frame(tick: int, car: int, race: str = "R") -> Frame:
    return Frame(race, tick, car, frame_values(race, tick, car), 1)


def start(assembler: TickAssembler, cars: tuple[int, ...], race: str = "R") -> None:
    assembler.add_event(RaceEvent(race, 0, "race_start", cars), 0.0)


def test_a_tick_waits_for_every_expected_car() -> None:
    a = TickAssembler(1.0, lambda car: car % 2)
    start(a, (1, 2))
    a.add_frame(frame(0, 1), 1, 0.0)
    assert a.poll(0.1) == []
    a.add_frame(frame(0, 2), 0, 0.1)
    [t0] = a.poll(0.1)
    assert t0.tick == 0 and t0.cars.tolist() == [1, 2]
    assert [e.kind for e in t0.events] == ["race_start"]


def test_a_partition_that_moved_on_releases_the_tick() -> None:
    a = TickAssembler(1.0, lambda car: 0)
    start(a, (1, 2))
    a.add_frame(frame(0, 1), 0, 0.0)
    a.add_frame(frame(1, 1), 0, 0.0)  # car 2 shares partition 0, which is past tick 0
    ticks = a.poll(0.0)
    assert [t.tick for t in ticks] == [0]
    assert ticks[0].stale.tolist() == [2]


def test_a_missing_car_is_waited_for_then_dropped_from_expected() -> None:
    a = TickAssembler(0.5, lambda car: car)
    start(a, (1, 2))
    a.add_frame(frame(0, 1), 1, 10.0)
    assert a.poll(10.4) == []
    assert a.next_deadline() == pytest.approx(10.5)
    [t0] = a.poll(10.5)
    assert t0.cars.tolist() == [1]
    a.add_frame(frame(1, 1), 1, 10.6)
    [t1] = a.poll(10.6)  # car 2 went quiet: no more waiting for it
    assert t1.tick == 1
    a.add_frame(frame(2, 2), 2, 10.7)  # it is back and expected again
    a.add_frame(frame(2, 1), 1, 10.7)
    [t2] = a.poll(10.7)
    assert t2.cars.tolist() == [1, 2] and t2.base.tolist() == [1, -1]


def test_duplicates_and_late_frames_are_dropped() -> None:
    a = TickAssembler(1.0, lambda car: car)
    start(a, (1, 2))
    a.add_frame(frame(0, 1), 1, 0.0)
    a.add_frame(frame(0, 1), 1, 0.0)
    [t0] = a.poll(1.0)  # car 2 held it up for the whole wait
    assert t0.stale.tolist() == [2]
    a.add_frame(frame(0, 1), 1, 1.1)  # a repeat of a frame tick 0 carried
    a.add_frame(frame(0, 2), 2, 1.2)  # car 2's frame, after tick 0 went out without it
    assert a.poll(5.0) == []
    assert a.duplicate_frames == 2 and a.late_frames == 1


def test_the_wait_grows_with_late_frames_and_decays_as_ticks_complete() -> None:
    a = TickAssembler(1.0, lambda car: car, max_wait_s=10.0)
    start(a, (1, 2))
    a.add_frame(frame(0, 1), 1, 0.0)
    [t0] = a.poll(1.0)
    assert t0.stale.tolist() == [2] and a.current_wait_s == 1.0
    a.add_frame(frame(0, 2), 2, 3.0)  # 3 s after tick 0's first frame
    assert a.current_wait_s == pytest.approx(4.5)
    # Car 2 lags by 3 s now: tick 1 waits for it and goes out whole.
    a.add_frame(frame(1, 1), 1, 3.1)
    assert a.poll(5.0) == [] and a.next_deadline() == pytest.approx(7.6)
    a.add_frame(frame(1, 2), 2, 6.0)
    [t1] = a.poll(6.0)
    assert t1.cars.tolist() == [1, 2] and t1.stale.tolist() == []
    assert a.current_wait_s == pytest.approx(4.5 * 0.5 ** (3.0 / 120))  # 3 s after it grew
    # Ticks that complete on their own bring it down with wall time (half-life
    # 2 minutes, however many ticks), to wait_s and not below.
    now = 6.0
    for tick in range(2, 12):  # a burst of ticks in one instant: no decay
        a.add_frame(frame(tick, 1), 1, now)
        a.add_frame(frame(tick, 2), 2, now)
        assert [t.tick for t in a.poll(now)] == [tick]
    assert a.current_wait_s == pytest.approx(4.5 * 0.5 ** (3.0 / 120))
    now += 120.0
    a.add_frame(frame(12, 1), 1, now)
    a.add_frame(frame(12, 2), 2, now)
    a.poll(now)
    assert a.current_wait_s == pytest.approx(4.5 * 0.5 ** (123.0 / 120))
    for tick in range(13, 30):
        now += 60.0
        a.add_frame(frame(tick, 1), 1, now)
        a.add_frame(frame(tick, 2), 2, now)
        assert [t.tick for t in a.poll(now)] == [tick]
    assert a.current_wait_s == 1.0
    # Far later than the longest wait: capped.
    a.add_frame(frame(30, 1), 1, now)
    [t30] = a.poll(now + 1.0)
    assert t30.stale.tolist() == [2]
    a.add_frame(frame(30, 2), 2, now + 30.0)
    assert a.current_wait_s == 10.0


def test_a_fixed_wait_does_not_grow() -> None:
    a = TickAssembler(1.0, lambda car: car)
    start(a, (1, 2))
    a.add_frame(frame(0, 1), 1, 0.0)
    a.poll(1.0)
    a.add_frame(frame(0, 2), 2, 3.0)
    assert a.late_frames == 1 and a.current_wait_s == 1.0
    with pytest.raises(ValueError, match="max_wait_s"):
        TickAssembler(1.0, lambda car: car, max_wait_s=0.5)


def test_skipped_ticks_are_emitted_empty_and_deltas_keep_their_base() -> None:
    a = TickAssembler(1.0, lambda car: 0)
    start(a, (1,))
    a.add_frame(frame(0, 1), 0, 0.0)
    a.poll(0.0)
    a.add_frame(frame(3, 1), 0, 0.0)
    ticks = a.poll(0.0)
    assert [t.tick for t in ticks] == [1, 2, 3]
    assert [len(t.cars) for t in ticks] == [0, 0, 1]
    assert ticks[2].base.tolist() == [0]
    assert np.array_equal(ticks[2].prev_q[0], frame_values("R", 0, 1))
    assert ticks[1].stale.tolist() == [1]


def test_events_ride_on_their_tick_and_race_end_flushes() -> None:
    a = TickAssembler(1.0, lambda car: 0)
    start(a, (1, 2))
    a.add_event(RaceEvent("R", 1 * TICK_NS + 5, "pit_in", (2,)), 0.0)
    a.add_frame(frame(0, 1), 0, 0.0)
    a.add_frame(frame(1, 1), 0, 0.0)
    ticks = a.poll(0.0)  # car 2's partition (0) moved past tick 0 only
    assert [t.tick for t in ticks] == [0]
    ticks = a.add_event(RaceEvent("R", 2 * TICK_NS, "race_end"), 0.0)
    assert [t.tick for t in ticks] == [1, 2]
    assert [e.kind for e in ticks[0].events] == ["pit_in"]
    assert [e.kind for e in ticks[1].events] == ["race_end"]
    # The race is over: its stragglers are dropped, a new race starts clean.
    a.add_frame(frame(3, 1), 0, 0.0)
    assert a.late_frames == 1
    start(a, (5,), race="S")
    a.add_frame(frame(0, 5, race="S"), 0, 0.0)
    [s0] = a.poll(0.0)
    assert (s0.race, s0.tick, s0.base.tolist()) == ("S", 0, [-1])


def ring_of(n: int, size: int, race: str = "R") -> ReplayRing:
    a = TickAssembler(1.0, lambda car: 0)
    start(a, (1,), race)
    ring = ReplayRing(size)
    for tick in range(n):
        a.add_frame(frame(tick, 1, race), 0, 0.0)
        for data in a.poll(0.0):
            ring.append(EncodedTick(data))
    return ring


def test_plan_resume_replays_from_the_ring() -> None:
    ring = ring_of(10, 5)
    plan = plan_resume(ring, Cursor("R", 6))
    assert [t.tick for t in plan.replay] == [7, 8, 9] and plan.notice is None and not plan.jump
    assert plan_resume(ring, Cursor("R", 4)).replay[0].tick == 5


def test_plan_resume_past_the_ring_or_race_is_a_keyframe_with_a_notice() -> None:
    ring = ring_of(10, 5)
    plan = plan_resume(ring, Cursor("R", 3))
    assert plan.jump and plan.replay == [] and plan.notice is not None
    notice = decode_message(plan.notice)
    assert (notice["code"], notice["from"], notice["to"]) == ("resume_gap", 4, 9)
    other = plan_resume(ring, Cursor("old-race", 3))
    assert other.jump and decode_message(other.notice or b"")["code"] == "race_changed"


def test_plan_resume_ahead_of_the_node_waits() -> None:
    ring = ring_of(3, 5)
    plan = plan_resume(ring, Cursor("R", 7))
    assert plan.wait_until == 7 and plan.replay == [] and not plan.jump


def test_each_codec_encodes_once_per_tick_and_equal_subscriptions_share_bytes() -> None:
    a = TickAssembler(1.0, lambda car: 0)
    start(a, (1, 2, 3))
    data: list[TickData] = []
    for tick in range(2):
        for car in (1, 2, 3):
            a.add_frame(frame(tick, car), 0, 0.0)
        data += a.poll(0.0)
    stats = FanoutStats()
    tick = EncodedTick(data[1], stats)
    key = ((1, 2), (0, 3), "sparse")
    first = tick.message(key, False)
    assert tick.message(key, False) is first
    tick.message(((3,), (1,), "sparse"), False)
    tick.message(key, True)
    assert stats.encodes == 1  # one encode serves every sparse subscription
    tick.message(((1, 2), (0, 3), "full"), False)
    assert stats.encodes == 2 and stats.assemblies == 4


def test_tick_index_spans_and_coverage() -> None:
    from broadcast.history import TickIndex

    index = TickIndex()
    for offset, tick in enumerate([0, 0, 1, 2, 2, 5]):  # two cars on partition 0
        index.add_frame("R", tick, 0, 10 + offset)
    index.add_frame("R", 1, 1, 3)
    assert index.span(1, 2) == {0: (12, 15), 1: (3, 4)}
    assert index.span(3, 4) == {}
    assert index.span(2, 9) == {0: (13, 16)}
    assert index.covers("R", -1) and index.covers("R", 4) and not index.covers("S", 4)
    index.add_frame("S", 0, 0, 99)  # a new race starts a new index
    assert index.span(0, 5) == {0: (99, 100)}
    assert not index.covers("R", 1)


def test_a_next_race_waits_for_the_current_race_end_or_its_own_start() -> None:
    a = TickAssembler(1.0, lambda car: 0)
    start(a, (1,))
    a.add_frame(frame(0, 1), 0, 0.0)
    a.poll(0.0)
    # The next race's frame overtakes the current race's race_end.
    assert a.add_frame(frame(0, 1, race="S"), 0, 0.1) == []
    assert a.poll(0.2) == [] and a.race == "R"
    ended = a.add_event(RaceEvent("R", 1 * TICK_NS, "race_end"), 0.3)
    assert [(t.race, t.tick, [e.kind for e in t.events]) for t in ended] == [("R", 1, ["race_end"])]
    start(a, (1,), race="S")
    [s0] = a.poll(0.4)
    assert (s0.race, s0.tick, s0.cars.tolist()) == ("S", 0, [1])


def test_a_next_race_without_events_starts_after_the_wait() -> None:
    a = TickAssembler(0.5, lambda car: 0)
    a.add_frame(frame(0, 1), 0, 0.0)
    assert [t.tick for t in a.poll(0.5)] == [0]
    a.add_frame(frame(0, 1, race="S"), 0, 1.0)
    assert a.next_deadline() == pytest.approx(1.5)
    assert a.poll(1.4) == [] and a.race == "R"
    [s0] = a.poll(1.5)  # switched; S's first tick has waited long enough too
    assert (s0.race, s0.tick, a.race) == ("S", 0, "S")


def test_emit_through_emits_up_to_a_tick_complete_or_not() -> None:
    a = TickAssembler(10.0, lambda car: car)
    start(a, (1, 2))
    a.add_frame(frame(0, 1), 1, 0.0)
    a.add_frame(frame(2, 1), 1, 0.0)
    a.add_frame(frame(5, 2), 2, 0.0)
    assert [(t.tick, t.cars.tolist()) for t in a.emit_through(3)] == [
        (0, [1]),
        (1, []),
        (2, [1]),
        (3, []),
    ]
    assert [t.tick for t in a.flush()] == [4, 5]
