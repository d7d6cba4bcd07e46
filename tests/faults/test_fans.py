"""The fault suite's own checker: a fan counts duplicates and gaps, and the fleet finds losses.

No network: tick messages are built here and fed to :meth:`Fan.message`.
"""

from __future__ import annotations

import msgpack
import numpy as np

from slipstream.catalogue import CATALOGUE
from tests.support.fans import digest
from tests.support.fleet import FanFleet

GROUP = 1
SIZE = CATALOGUE.groups[GROUP].size


def values(car: int, tick: int) -> np.ndarray:
    return np.arange(SIZE, dtype=np.int32) * car + tick


def tick_message(
    tick: int, cars: list[int], *, race: str = "R", stale: tuple[int, ...] = ()
) -> bytes:
    parts = [[car, GROUP, 0, tick, values(car, tick).astype("<i4").tobytes()] for car in cars]
    message = {"t": "tick", "race": race, "tick": tick, "kf": True, "codec": "full", "p": parts}
    return msgpack.packb({**message, "stale": list(stale)})


def notice(first: int, last: int) -> bytes:
    return msgpack.packb(
        {"t": "notice", "code": "resume_gap", "message": "", "race": "R", "from": first, "to": last}
    )


def truth(ticks: range, cars: list[int]) -> dict[tuple[str, int, int], int]:
    return {("R", car, t): digest([values(car, t)]) for t in ticks for car in cars}


async def test_a_clean_stream_has_nothing_missing() -> None:
    fleet = FanFleet([("127.0.0.1", 1)], 1, (7,), (GROUP,))
    fan = fleet.fans[0]
    for t in range(5, 10):
        fan.message(tick_message(t, [7]))
    assert fleet.missing(truth(range(20), [7, 8])) == []
    assert fleet.summary()["duplicates"] == 0 and fan.frames == 5


async def test_duplicate_gap_and_lost_frame_are_caught() -> None:
    fleet = FanFleet([("127.0.0.1", 1)], 2, (7,), (GROUP,))
    dup, lossy = fleet.fans
    for t in (5, 6, 6, 7):
        dup.message(tick_message(t, [7]))
    assert dup.duplicates == 1
    for t in (5, 6, 8):  # tick 7 skipped without a notice
        lossy.message(tick_message(t, [7]))
    assert [(g.first, g.last, g.reported) for g in lossy.gaps] == [(7, 7, False)]
    problems = fleet.missing(truth(range(20), [7]))
    assert any("fan 1" in p for p in problems)


async def test_a_reported_gap_is_excused_but_a_wrong_value_is_not() -> None:
    fleet = FanFleet([("127.0.0.1", 1)], 1, (7,), (GROUP,))
    fan = fleet.fans[0]
    fan.message(tick_message(5, [7]))
    fan.message(notice(6, 9))
    fan.message(tick_message(10, [7]))
    assert [(g.first, g.last, g.reported) for g in fan.gaps] == [(6, 9, True)]
    assert fleet.missing(truth(range(20), [7])) == []
    wrong = truth(range(20), [7])
    wrong[("R", 7, 10)] += 1
    assert fleet.missing(wrong) != []


async def test_a_car_frame_missing_inside_a_tick_is_caught() -> None:
    fleet = FanFleet([("127.0.0.1", 1)], 1, (7, 8), (GROUP,))
    fan = fleet.fans[0]
    fan.message(tick_message(5, [7, 8]))
    fan.message(tick_message(6, [7]))  # car 8's frame of tick 6 is on the topic
    assert fleet.missing(truth(range(5, 7), [7, 8])) != []


async def test_a_car_frame_the_tick_listed_as_stale_is_reported_not_lost() -> None:
    fleet = FanFleet([("127.0.0.1", 1)], 1, (7, 8), (GROUP,))
    fan = fleet.fans[0]
    fan.message(tick_message(5, [7, 8]))
    fan.message(tick_message(6, [7], stale=(8,)))  # the node went on without car 8's frame
    fan.message(tick_message(7, [7, 8]))
    assert fleet.missing(truth(range(5, 8), [7, 8])) == []
    assert fleet.stale_reported == 1
    # Stale where the topic has no frame either: nothing is excused twice.
    fleet = FanFleet([("127.0.0.1", 1)], 1, (7, 8), (GROUP,))
    fan = fleet.fans[0]
    fan.message(tick_message(5, [7, 8]))
    fan.message(tick_message(6, [7], stale=(8,)))
    assert fleet.missing(truth(range(5, 6), [7, 8]) | truth(range(6, 7), [7])) == []
    assert fleet.stale_reported == 0


async def test_a_conflated_gap_is_reported_apart_from_resume_gaps() -> None:
    fleet = FanFleet([("127.0.0.1", 1)], 1, (7,), (GROUP,))
    fan = fleet.fans[0]
    fan.message(tick_message(5, [7]))
    fan.message(
        msgpack.packb({"t": "notice", "code": "conflated", "message": "", "from": 6, "to": 7})
    )
    fan.message(tick_message(8, [7]))
    summary = fleet.summary()
    assert summary["conflated_gaps"] == 1 and summary["reported_gaps"] == 0
    assert summary["unreported_gaps"] == 0
    assert fleet.missing(truth(range(20), [7])) == []
