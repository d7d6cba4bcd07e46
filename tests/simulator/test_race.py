"""A whole 200-lap race at flat out: lead changes, cautions, pit stops, flags, summary."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from simulator.config import SimulatorConfig
from simulator.events import FLAG_NAMES
from simulator.model import RaceModel
from simulator.summary import SummaryBuilder
from simulator.track import get_track
from slipstream.records import RaceEvent


@pytest.fixture(scope="module")
def race() -> tuple[RaceModel, list[RaceEvent]]:
    """200 laps of the short track, 40 cars, the race model stepped as fast as it goes."""
    model = RaceModel(get_track("martinsville"), 40, 200, seed=42, race="martinsville-42")
    events: list[RaceEvent] = []
    steps = 0
    dt = 1.0 / SimulatorConfig().physics_hz  # the kernel's physics step
    while not model.over and steps < 200_000:
        model.step(dt)
        steps += 1
        events += model.log.drain()
    assert model.over
    return model, events


def test_the_race_has_lead_changes_cautions_and_pit_stops(
    race: tuple[RaceModel, list[RaceEvent]],
) -> None:
    model, events = race
    kinds = Counter(e.kind for e in events)
    assert kinds["race_start"] == 1 and kinds["race_end"] == 1
    assert kinds["lead_change"] >= 1
    assert kinds["incident"] >= 2
    flags = [e.data["flag"] for e in events if e.kind == "flag"]
    assert flags[0] == "green" and flags[-1] == "checkered"
    assert flags.count("yellow") >= 2 and "white" in flags
    assert set(flags) <= set(FLAG_NAMES)
    stops = Counter(c for e in events if e.kind == "pit_out" for c in e.cars)
    running = {int(c) for c, alive in zip(model.numbers, model.running, strict=True) if alive}
    assert running and all(stops[car] >= 1 for car in running)
    assert kinds["pit_in"] >= kinds["pit_out"]
    end = next(e for e in events if e.kind == "race_end")
    assert end.data["reason"] == "checkered" and end.data["laps"] == 200
    assert len(end.data["order"]) == 40


def test_events_are_in_time_order_and_consistent(race: tuple[RaceModel, list[RaceEvent]]) -> None:
    model, events = race
    times = [e.t_ns for e in events]
    assert times == sorted(times)
    numbers = {int(c) for c in model.numbers}
    assert all(set(e.cars) <= numbers for e in events)
    laps = [e for e in events if e.kind == "lap"]
    per_car = Counter(e.cars[0] for e in laps)
    winner = next(e for e in events if e.kind == "race_end").data["order"][0]
    assert per_car[winner] == 200
    # A lead change is between the new and the previous leader at the line.
    for change in (e for e in events if e.kind == "lead_change"):
        new, old = change.cars
        assert new != old
    green = np.array([e.data["lap_time_s"] for e in laps])
    assert np.percentile(green, 5) > 19.5 and np.percentile(green, 50) < 22.5


def test_summary(race: tuple[RaceModel, list[RaceEvent]]) -> None:
    model, events = race
    builder = SummaryBuilder()
    for event in events:
        builder.add(event)
    summary = builder.result(records=10, samples=20, wall_s=2.0)
    assert summary.laps == 200
    assert summary.lead_changes == model.control.lead_changes
    assert summary.cautions == model.control.cautions
    assert sum(summary.pit_stops.values()) == int(model.control.pit_stops.sum())
    assert summary.fastest_lap is not None
    car, _lap, seconds = summary.fastest_lap
    index = list(model.numbers).index(car)
    assert seconds == pytest.approx(model.best_lap[index], abs=1e-3)
    assert len(summary.leaders) == len(
        {e.cars[0] for e in events if e.kind == "lead_change"} | {summary.leaders[0]}
    )
    text = summary.format()
    for part in ("200 laps", "winner #", "lead changes:", "cautions:", "pit stops:", "fastest lap"):
        assert part in text
    assert summary.drivers[summary.finish[0]] in text
