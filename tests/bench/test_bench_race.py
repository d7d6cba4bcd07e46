"""Pre-computed race frames: from the real simulator and downsampler cores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slipstream.app.bench.race import RaceFrames, simulate_race
from slipstream.catalogue import CATALOGUE, MISSING


def test_simulated_race_has_every_car_every_tick(tmp_path: Path) -> None:
    race = simulate_race(cars=4, seconds=5, seed=3)
    assert race.ticks == 10
    assert race.q.shape == (10, 4, len(CATALOGUE))
    assert list(race.cars) == sorted(race.cars)
    assert race.start.kind == "race_start"
    # Cars move: values change from tick to tick, and most channels have a value.
    assert (race.q[1:] != race.q[:-1]).any(axis=2).all()
    assert (race.q != MISSING).mean() > 0.9
    frames = race.frames(3)
    assert [f.car for f in frames] == list(race.cars)
    assert all(f.tick == 3 and f.race == race.race for f in frames)
    np.testing.assert_array_equal(frames[1].q, race.q[3, 1])
    with pytest.raises(ValueError, match="out of range"):
        race.frames(10)

    path = tmp_path / "race.npz"
    race.save(path)
    loaded = RaceFrames.load(path)
    assert loaded.race == race.race and loaded.start == race.start
    np.testing.assert_array_equal(loaded.q, race.q)
    np.testing.assert_array_equal(loaded.cars, race.cars)


def test_simulated_race_is_deterministic() -> None:
    a = simulate_race(cars=2, seconds=2, seed=7)
    b = simulate_race(cars=2, seconds=2, seed=7)
    np.testing.assert_array_equal(a.q, b.q)
    with pytest.raises(ValueError, match="positive"):
        simulate_race(cars=2, seconds=0)
