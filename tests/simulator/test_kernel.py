"""The simulation kernel: determinism and the physical relations between channels."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from numpy.typing import NDArray

from simulator.config import SimulatorConfig
from simulator.kernel import Simulation
from simulator.sensors import FINAL_DRIVE, GEAR_RATIOS, WHEEL_RADIUS_M
from simulator.track import get_track
from slipstream.catalogue import CATALOGUE
from slipstream.records import RaceEvent

C = CATALOGUE.index
MPH = 0.44704


@dataclass
class Run:
    sim: Simulation
    values: NDArray[np.float64]  # (cars, samples, channels)
    times_s: NDArray[np.float64]  # (samples,)
    events: list[RaceEvent]

    def ch(self, name: str) -> NDArray[np.float64]:
        return self.values[:, :, C[name]]


def simulate(config: SimulatorConfig, caution_at_s: float | None = None) -> Run:
    """Run a whole simulation; optionally throw a caution at ``caution_at_s``."""
    sim = Simulation(config)
    parts = []
    times = []
    events: list[RaceEvent] = []
    n = sim.samples_per_batch
    offsets = (np.arange(n) * 1_000_000_000) // config.rate_hz
    while (chunk := sim.next_chunk()) is not None:
        if caution_at_s is not None and chunk.end_ns >= caution_at_s * 1e9:
            assert sim.model.control.incident()
            caution_at_s = None
        parts.append(chunk.values)
        times += [(t0 + offsets) / 1e9 for t0 in chunk.batch_t0_ns]
        events += chunk.events
    return Run(sim, np.concatenate(parts, axis=1).astype(np.float64), np.concatenate(times), events)


@pytest.fixture(scope="module")
def short_track() -> Run:
    # A caution from 100 s: ~4-6 laps behind the pace car, then a restart.
    config = SimulatorConfig(track="martinsville", seed=42, duration_s=400.0, speed=0)
    return simulate(config, caution_at_s=100.0)


@pytest.fixture(scope="module")
def superspeedway() -> Run:
    return simulate(SimulatorConfig(track="daytona", seed=5, duration_s=120.0, speed=0))


def test_same_seed_gives_identical_values_and_events() -> None:
    config = SimulatorConfig(cars=12, seed=9, duration_s=6.0, dropout_rate=0.2)
    a, b = simulate(config), simulate(config)
    assert a.values.tobytes() == b.values.tobytes()
    assert a.events == b.events
    c = simulate(SimulatorConfig(cars=12, seed=10, duration_s=6.0))
    assert a.values.shape == c.values.shape
    assert a.values.tobytes() != c.values.tobytes()


def test_shape_rate_and_duration(superspeedway: Run) -> None:
    run = superspeedway
    assert run.values.shape == (40, 120 * 120, len(CATALOGUE))
    assert np.all(np.diff(run.times_s) > 0)
    assert run.times_s[-1] < 120.0


def test_values_are_quantised_and_in_range(short_track: Run) -> None:
    v = short_track.values
    assert np.isfinite(v).all()  # no dropouts unless asked for
    assert (v >= CATALOGUE.minimum).all() and (v <= CATALOGUE.maximum).all()
    q = np.rint(v / CATALOGUE.resolution)
    again = (q * CATALOGUE.resolution).astype(np.float32)
    assert again.tobytes() == v.astype(np.float32).tobytes()


def test_dropouts_are_nans_in_a_fraction_of_records() -> None:
    run = simulate(SimulatorConfig(cars=20, seed=3, duration_s=10.0, dropout_rate=0.1))
    n = run.sim.samples_per_batch
    records = run.values.reshape(20, -1, n, len(CATALOGUE))
    hit = np.isnan(records).any(axis=(2, 3))
    assert 0.05 < hit.mean() < 0.15


def distance_run(run: Run) -> NDArray[np.float64]:
    L = run.sim.track.length_m
    return run.ch("lap") * L + run.ch("lap_distance")


def test_speed_is_the_rate_of_distance(superspeedway: Run) -> None:
    run = superspeedway
    d = distance_run(run)
    # Over whole seconds after the start (the lap counter starts at the line).
    span = slice(120 * 5, None, 120)
    moved = np.diff(d[:, span], axis=1)
    speed = run.ch("speed")[:, 120 * 5 :].reshape(40, -1, 120)[:, :-1].mean(axis=2) * MPH
    assert moved.shape == speed.shape
    np.testing.assert_allclose(moved, speed, rtol=0.01, atol=0.3)


def test_rpm_follows_speed_and_gear(short_track: Run) -> None:
    run = short_track
    v = run.ch("speed") * MPH
    gear = run.ch("gear").astype(int)
    rpm = run.ch("rpm")
    moving = (gear > 0) & (rpm < 9900) & (v > 10) & (run.ch("ignition_on") == 1)
    wheel_rpm = v / (2 * math.pi * WHEEL_RADIUS_M) * 60
    expected = wheel_rpm * FINAL_DRIVE["martinsville"] * GEAR_RATIOS[gear]
    # Speed is quantised to 0.1 mph, rpm to 10 rpm, each with ~2 counts of noise.
    assert moving.mean() > 0.9
    np.testing.assert_allclose(rpm[moving], expected[moving], rtol=0.01, atol=80)
    assert set(np.unique(gear[v > 20])) <= {3, 4}
    # The short track's pit road is driven in a low gear.
    assert (gear[run.ch("pit_limiter") == 1] <= 3).all()


def test_lateral_g_is_v_squared_times_curvature(superspeedway: Run, short_track: Run) -> None:
    for run in (superspeedway, short_track):
        track = run.sim.track
        grid = np.append(track.curvature, track.curvature[0])
        k = np.interp(run.ch("lap_distance"), np.arange(track.points + 1), grid)
        v = run.ch("speed") * MPH
        expected = v * v * k / 9.80665
        np.testing.assert_allclose(run.ch("g_lat"), expected, atol=0.15)  # 0.02 g noise
        turning = expected > 1.0
        assert turning.mean() > 0.15
        yaw = np.degrees(v * k)
        np.testing.assert_allclose(run.ch("yaw_rate"), yaw, atol=2.0)  # 0.3 deg/s noise


def test_track_map_and_gps_match_the_distance(short_track: Run) -> None:
    run = short_track
    track = run.sim.track
    s = run.ch("lap_distance")
    i = np.minimum(s.astype(int), track.points - 1)
    centre_x, centre_y = track.x_m[i], track.y_m[i]
    off = np.hypot(run.ch("track_x") - centre_x, run.ch("track_y") - centre_y)
    lane = np.abs(run.ch("lane"))
    # Within a grid step and the lane offset (and its noise).
    assert (off <= lane + 1.5).all()
    lat, lon = track.gps(run.ch("track_x"), run.ch("track_y"))
    assert np.abs(run.ch("gps_lat") - lat).max() < 2e-5  # ~2 m
    assert np.abs(run.ch("gps_lon") - lon).max() < 2e-5
    sector = np.minimum(np.floor(4 * s / track.length_m), 3)
    assert (run.ch("sector") != sector).mean() < 1e-3  # only at boundaries (0.5 m rounding)


def test_timing_matches_the_race(short_track: Run) -> None:
    run = short_track
    numbers = list(run.sim.numbers)
    pos = run.ch("race_position")
    assert (np.sort(pos, axis=0) == np.arange(1, 41)[:, None]).all()
    leader = pos == 1
    assert np.abs(run.ch("gap_to_leader")[leader]).max() == 0
    assert (run.ch("gap_to_leader")[~leader] >= 0).all()
    laps = [e for e in run.events if e.kind == "lap"]
    assert len(laps) > 40 * 10
    for event in laps[::37]:
        car = numbers.index(event.cars[0])
        after = np.searchsorted(run.times_s, event.t_ns / 1e9 + 1.01 / run.sim.config.physics_hz)
        assert run.ch("lap")[car, after] == event.data["lap"]
        assert run.ch("last_lap_time")[car, after] == pytest.approx(
            event.data["lap_time_s"], abs=1e-3
        )
    green = np.array([e.data["lap_time_s"] for e in laps])
    assert np.median(green) == pytest.approx(21.0, abs=1.0)


def test_tyres_cool_under_caution_and_fuel_burns_with_throttle(short_track: Run) -> None:
    run = short_track
    flags = [(e.t_ns / 1e9, e.data["flag"]) for e in run.events if e.kind == "flag"]
    yellow = next(t for t, f in flags if f == "yellow")
    green = next(t for t, f in flags if f == "green" and t > yellow)
    tyre = run.values[:, :, C["tyre_temp_lf_inner"] : C["tyre_temp_rr_outer"] + 1].mean(axis=2)
    on_track = (run.ch("pit_status") == 0).all(axis=1)

    def mean_at(t: float) -> float:
        i = np.searchsorted(run.times_s, t)
        return float(tyre[on_track, i - 60 : i + 60].mean())

    assert mean_at(yellow + 60) < mean_at(yellow) - 10
    assert mean_at(green + 60) > mean_at(green) + 5
    flag = run.ch("flag")
    i_yellow = np.searchsorted(run.times_s, yellow + 1.0)
    assert (flag[:, i_yellow] == 1).all()
    # Fuel only goes up in the pit box, and burns faster at full throttle.
    fuel = run.ch("fuel_level")[:, ::120]
    rise = np.diff(fuel, axis=1) > 0.15  # noise is 0.02 gal
    boxed = run.ch("pit_status")[:, ::120][:, 1:] == 2
    assert not (rise & ~boxed).any()
    flow, throttle = run.ch("fuel_flow"), run.ch("throttle")
    assert flow[throttle > 90].mean() > 2 * flow[(throttle < 20) & (run.ch("speed") > 40)].mean()


def test_brakes_heat_when_braking(short_track: Run) -> None:
    run = short_track
    temp = run.ch("brake_temp_lf")
    rate = np.diff(temp, axis=1)
    braking = run.ch("brake")[:, 1:] > 30
    assert braking.mean() > 0.02
    assert rate[braking].mean() > 20 * 5 / 120  # > 20 degC/s while braking hard
    assert rate[run.ch("throttle")[:, 1:] > 95].mean() < 0
    assert 300 < temp.max() < 1100


def test_lap_times_are_plausible_per_track() -> None:
    bands = {"daytona": (46.0, 50.0), "charlotte": (28.5, 31.5), "martinsville": (19.5, 22.5)}
    for name, (low, high) in bands.items():
        track = get_track(name)
        config = SimulatorConfig(track=name, cars=40, seed=11, laps=6, rate_hz=10, speed=0)
        run = simulate(config)
        # Green-flag laps: none that ends under a caution or on the lap after it.
        flags = [(e.t_ns, e.data["flag"]) for e in run.events if e.kind == "flag"]
        yellow = [t for t, f in flags if f in ("yellow", "red")]
        green = [next((g for g, f in flags if f == "green" and g > y), 2**62) for y in yellow]
        slow = [
            (y, g + int(1.5 * track.lap_time_s * 1e9)) for y, g in zip(yellow, green, strict=True)
        ]
        times = np.array(
            [
                e.data["lap_time_s"]
                for e in run.events
                if e.kind == "lap" and not any(a <= e.t_ns <= b for a, b in slow)
            ]
        )
        assert times.size > 100, name
        typical = np.percentile(times, [10, 50, 90])
        assert low <= typical[0] and typical[2] <= high, (name, typical, track.lap_time_s)


@pytest.mark.parametrize("duration_s", [2.0, 3.3, 5.0, 7.0, 12.5])
def test_a_duration_run_ends_with_race_end_at_its_duration(duration_s: float) -> None:
    run = simulate(SimulatorConfig(cars=2, rate_hz=10, duration_s=duration_s, speed=0))
    ends = [e for e in run.events if e.kind == "race_end"]
    assert len(ends) == 1 and ends[0].data["reason"] == "duration"
    assert duration_s <= ends[0].t_ns / 1e9 < duration_s + 0.11
    assert run.times_s[-1] < duration_s
