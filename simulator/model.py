"""The race model: state arrays over the field and ``step(dt)``.

Pure numpy, vectorised over cars (no per-car Python loop in a step), no clock.
Each car follows the track's reference speed profile scaled by its driver and
car performance, tyre wear, fuel load, damage and the draft of the car ahead,
limited by acceleration and braking.  Race control (cautions behind a pace
car, red flags, restarts, white and checkered flags) and pit stops (pit-road
speed limit, ~12 s stationary, fuel and tyres) live in :mod:`simulator.control`.

Distances are metres from the start/finish line along the centre line,
unwrapped (``dist // L`` is laps completed); race time is seconds from the
green flag.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from simulator.control import TANK_GAL, RaceControl
from simulator.entries import Entry, make_entries
from simulator.events import PIT_ROAD, PIT_STALLED, EventLog
from simulator.track import Track

__all__ = ["SNAPSHOT_FIELDS", "RaceModel"]

AMBIENT_C = 30.0
G = 9.80665
# Per-corner factors (lf, rf, lr, rr) on a left-turning oval: the right side is loaded.
_CORNER_LAT = np.array([0.7, 1.35, 0.6, 1.1])[:, None]
_CORNER_WEAR = np.array([0.8, 1.3, 0.7, 1.0])[:, None]
_CORNER_BRAKE = np.array([0.62, 0.62, 0.38, 0.38])[:, None]

#: Rows of a snapshot (see :meth:`RaceModel.snapshot`): continuous first, then held values.
SNAPSHOT_FIELDS: tuple[str, ...] = (
    # continuous: linearly interpolated between physics steps
    "dist", "speed", "accel", "lane", "throttle", "brake", "draft_m", "drag_red",
    "fuel", "fuel_used", "oil_temp", "water_temp",
    "tyre_t_lf", "tyre_t_rf", "tyre_t_lr", "tyre_t_rr",
    "wear_lf", "wear_rf", "wear_lr", "wear_rr",
    "brake_t_lf", "brake_t_rf", "brake_t_lr", "brake_t_rr",
    "pad_lf", "pad_rf", "pad_lr", "pad_rr",
    "gap_leader", "gap_ahead", "engine_h",
    # held: the value of the last physics step
    "laps", "position", "last_lap", "best_lap", "laps_led", "pit_stops", "laps_down",
    "pit_status", "flag", "tyre_age", "running", "on_pit_road", "fuel_laps", "finished",
)  # fmt: skip
CONTINUOUS = SNAPSHOT_FIELDS.index("laps")
F = {name: i for i, name in enumerate(SNAPSHOT_FIELDS)}


class RaceModel:
    """The state of a race and its physics step.

    Args:
        track: The track.
        cars: Field size (1-99).
        laps: Race length in laps.
        seed: Seed of every random draw of the race.
        race: Race id (used in events).
    """

    def __init__(self, track: Track, cars: int, laps: int, seed: int, race: str) -> None:
        if cars < 1:
            raise ValueError("a race needs at least one car")
        if laps < 1:
            raise ValueError("a race needs at least one lap")
        self.track = track
        self.n = cars
        self.laps_total = laps
        self.rng = np.random.default_rng([seed, 1])
        self.entries: tuple[Entry, ...] = make_entries(cars, self.rng)
        self.numbers = np.array([e.car for e in self.entries])
        self.log = EventLog(race)
        self.t = 0.0
        spec = track.spec
        L = track.length_m
        self.L = L
        n = cars
        rng = self.rng
        # Starting grid: two columns, 8 m per row, behind the line.
        rows = np.arange(n) // 2
        self.dist = -6.0 - rows * 8.0 - (np.arange(n) % 2) * 0.5
        self.lane = np.where(np.arange(n) % 2 == 0, 1.5, -1.5)
        self.speed = np.full(n, spec.pace_speed_mps * 1.3)
        self.accel = np.zeros(n)
        self.throttle = np.zeros(n)
        self.brake = np.zeros(n)
        # Car and driver: faster cars tend to qualify up front.
        perf = np.sort(rng.normal(1.0, 0.0035, n))[::-1]
        self.perf = perf + rng.normal(0, 0.001, n)
        self.consistency = rng.uniform(0.4, 1.0, n)
        self.form = np.zeros(n)
        self.damage = np.zeros(n)
        self.running = np.ones(n, dtype=bool)
        # Consumables.
        self.fuel = np.full(n, TANK_GAL)
        self.fuel_used = np.zeros(n)
        self.burn_per_lap = spec.fuel_gal_per_km * L / 1000 * 0.85
        self.tyre_t = np.full((4, n), 60.0)
        self.wear = np.zeros((4, n))
        self.tyre_age = np.zeros(n)
        self.brake_t = np.full((4, n), 150.0)
        self.pad = np.full((4, n), 30.0) + rng.uniform(-0.5, 0.5, (4, n))
        self.oil_temp = np.full(n, 110.0)
        self.water_temp = np.full(n, 95.0)
        self.engine_h = rng.uniform(2.0, 8.0, n)
        # Draft and timing.
        self.draft_m = np.full(n, 500.0)
        self.laps = np.zeros(n, dtype=np.int64)
        self.lap_start = np.full(n, np.nan)
        self.last_lap = np.zeros(n)
        self.best_lap = np.zeros(n)
        self.laps_led = np.zeros(n, dtype=np.int64)
        self.order = np.arange(n)
        self.position = np.arange(1, n + 1)
        self.gap_leader = np.zeros(n)
        self.gap_ahead = np.zeros(n)
        self.laps_down = np.zeros(n)
        self.ref_speed = L / track.lap_time_s
        self.control = RaceControl(self)
        self.log.add(
            0.0, "race_start", (),
            track=spec.name, title=spec.title, length_m=round(L, 1), laps=laps,
            entries=[e.to_json() for e in self.entries], outline=self._outline(),
            pit_entry_m=round(track.pit_entry_m, 1), pit_exit_m=round(track.pit_exit_m, 1),
        )  # fmt: skip
        self.log.add(0.0, "flag", (), flag="green", lap=0)

    # -- what race control may change (simulator.control.Cars) --------------------

    def refuel(self, serving: NDArray[np.bool_], dt: float) -> None:
        """Fuel flows into the cars ``serving`` in their pit box for ``dt`` seconds."""
        self.fuel = np.where(
            serving, np.minimum(self.fuel + TANK_GAL / 11.0 * dt, TANK_GAL), self.fuel
        )

    def service_done(self, i: int) -> None:
        """Car ``i`` leaves its box: full tank, fresh tyres, part of its damage mended."""
        self.fuel[i] = TANK_GAL
        self.wear[:, i] = 0.0
        self.tyre_t[:, i] = 45.0
        self.tyre_age[i] = 0
        self.damage[i] *= 0.3

    def stop_in_box(self, i: int, dist: float) -> None:
        """Car ``i`` stops in its pit box at distance ``dist`` (m)."""
        self.dist[i] = dist
        self.speed[i] = 0.0

    def crash(
        self, cars: NDArray[np.intp], damage: NDArray[np.float64], retired: NDArray[np.intp]
    ) -> None:
        """``cars`` take ``damage``; ``retired`` stop running."""
        self.damage[cars] += damage
        self.running[retired] = False

    def led_lap(self, i: int) -> None:
        """Car ``i`` led a lap at the line."""
        self.laps_led[i] += 1

    def _outline(self, points: int = 200) -> list[list[float]]:
        """The centre line as ``points`` [x, y] map points (metres), from the line onwards."""
        idx = np.linspace(0, self.track.points, points, endpoint=False).astype(np.intp)
        x = np.round(self.track.x_m[idx], 1).tolist()
        y = np.round(self.track.y_m[idx], 1).tolist()
        return [[a, b] for a, b in zip(x, y, strict=True)]

    # -- the step --------------------------------------------------------------

    def step(self, dt: float) -> None:
        """Advance the race by ``dt`` seconds."""
        spec = self.track.spec
        track = self.track
        L = self.L
        rng = self.rng
        ctl = self.control
        s = np.mod(self.dist, L)
        idx = track.index(s)
        v = self.speed
        on_track = self.running & (ctl.pit_status != PIT_ROAD) & (ctl.pit_status != PIT_STALLED)

        # The next car ahead on track (by lap distance, cyclic) and the gap to it.
        key = np.where(on_track, s, s + 4 * L)
        by_s = np.argsort(key, kind="stable")
        m = int(on_track.sum())
        gaps = np.full(self.n, 500.0)
        ahead = np.arange(self.n)
        if m > 1:
            live = by_s[:m]
            ss = key[live]
            g = np.empty(m)
            g[:-1] = ss[1:] - ss[:-1]
            g[-1] = ss[0] + L - ss[-1]
            gaps[live] = g
            ahead[live[:-1]] = live[1:]
            ahead[live[-1]] = live[0]
        np.minimum(gaps, 500.0, out=gaps)
        self.draft_m = gaps
        same_lane = np.abs(self.lane - self.lane[ahead]) < 2.0
        # No draft from a car alongside; a car close behind also pushes the one ahead.
        draft = np.exp(gaps * (-1.0 / 25.0)) * (gaps > 4.0) * np.where(same_lane, 1.0, 0.6)
        behind = np.zeros(self.n)
        behind[ahead] = draft

        # Target speed, looked up where the car will be in half a second.
        self.form = 0.995 * self.form + rng.normal(0, 0.0004, self.n) * self.consistency
        wear = self.wear.sum(axis=0) * 0.25
        factor = (
            self.perf
            * (1 + self.form)
            * (1 - 0.06 * wear)
            * (1 - 0.004 * self.fuel / TANK_GAL)
            * (1 - self.damage)
            * (1 + spec.draft_gain * (draft + 0.35 * behind))
        )
        idx_ahead = track.index(np.mod(s + 0.5 * v, L))
        v_tgt = track.speed_mps[idx_ahead] * factor
        # Stuck behind a car in the same lane: no faster than it until pulled out.
        want = v_tgt
        blocked = (gaps < 8.0) & same_lane & on_track
        v_tgt = np.where(blocked, np.minimum(v_tgt, v[ahead] + 0.1 * (gaps - 4.0)), v_tgt)
        v_tgt = ctl.limit_speed(v_tgt, s, dt)

        # Longitudinal dynamics: a first-order approach to the target, within the
        # car's thrust; lifting costs only drag, the brakes come in when well over.
        thrust = spec.accel_mps2 * 1.4
        drag = thrust * (v / spec.top_speed_mps) ** 2 * (1 - 8.0 * spec.draft_gain * draft)
        over = np.minimum(np.maximum(v - v_tgt - 0.5, 0.0) * 0.2, 1.0)
        dv = (v_tgt - v) * min(1.0, dt / 0.4)
        dv = np.minimum(dv, np.maximum(thrust - drag, 0.2) * dt)
        dv = np.maximum(dv, -(drag + spec.brake_mps2 * over) * dt)
        v_new = np.maximum(v + dv, 0.0)
        a = dv / dt
        self.throttle = np.minimum(np.maximum((a + drag) / thrust, 0.0), 1.0) * (v_new > 0.05)
        # Full pedal is ~60 % of the grip-limited deceleration (what drivers use).
        self.brake = np.minimum(np.maximum(-(a + drag) / (0.6 * spec.brake_mps2), 0.0), 1.0)
        step_m = 0.5 * (v + v_new) * dt
        dist_old = self.dist
        self.dist = dist_old + step_m
        self.speed = v_new
        self.accel = a
        ctl.after_move(dist_old, dt)

        # Lanes: pull out to the other side of the car ahead to pass, pit road inside.
        passing = (gaps < 15.0) & (want > v[ahead] + 0.3) & on_track
        side = np.where(self.lane[ahead] >= 0, -3.0, 3.0)
        lane_tgt = np.where(passing, side, np.where(gaps < 4.0, self.lane, 0.0))
        lane_tgt = np.where(ctl.pit_status == PIT_ROAD, 14.0, lane_tgt)
        lane_tgt = np.where(ctl.pit_status == PIT_STALLED, 16.0, lane_tgt)
        self.lane += np.minimum(np.maximum(lane_tgt - self.lane, -3.0 * dt), 3.0 * dt)

        self._consumables(dt, step_m, idx)
        self.t += dt
        self._timing(dist_old, dt)
        ctl.after_step(dt)

    def _consumables(self, dt: float, step_m: NDArray[np.float64], idx: NDArray[np.intp]) -> None:
        spec = self.track.spec
        v = self.speed
        g_lat = v * v * self.track.curvature[idx] / G
        g_long = self.accel / G
        load = np.abs(g_lat) * _CORNER_LAT + np.abs(g_long) * 0.6
        km = step_m / 1000.0
        # Fuel burns with throttle; the cell refills in the pit box (see control).
        burn = spec.fuel_gal_per_km * km * (0.2 + 0.8 * self.throttle) * self.running
        self.fuel = np.maximum(self.fuel - burn, 0.0)
        self.fuel_used += burn
        # Tyres: wear with load and distance, heat towards a load-dependent equilibrium.
        self.wear = np.minimum(
            self.wear + spec.tyre_wear_per_km * km * _CORNER_WEAR * (0.5 + load), 1.0
        )
        t_eq = AMBIENT_C + 8.0 + 50.0 * (v / spec.top_speed_mps) + 10.0 * load
        self.tyre_t += (t_eq - self.tyre_t) * (dt / 12.0)
        # Brakes: heated by braking power, cooled by airflow.
        power = self.brake * v * _CORNER_BRAKE
        cool = (self.brake_t - AMBIENT_C) * (0.01 + 0.0006 * v)
        self.brake_t += (18.0 * power - cool) * dt
        self.pad = np.maximum(self.pad - power * dt * 2.0e-5, 0.0)
        # Engine temperatures follow load slowly.
        self.oil_temp += ((100.0 + 30.0 * self.throttle) * self.running - self.oil_temp) * (
            dt / 60.0
        )
        self.water_temp += ((85.0 + 20.0 * self.throttle) * self.running - self.water_temp) * (
            dt / 45.0
        )
        self.engine_h += dt / 3600.0 * self.running

    def _timing(self, dist_old: NDArray[np.float64], dt: float) -> None:
        L = self.L
        ctl = self.control
        frozen = ctl.finished | ~self.running
        laps_new = np.where(
            frozen, self.laps, np.maximum(np.floor(self.dist / L), 0).astype(np.int64)
        )
        crossed = np.flatnonzero(laps_new > self.laps)
        if crossed.size:
            # Exact crossing times by linear interpolation inside the step.
            frac = (laps_new[crossed] * L - dist_old[crossed]) / np.maximum(
                self.dist[crossed] - dist_old[crossed], 1e-9
            )
            t_cross = self.t - dt + dt * np.clip(frac, 0.0, 1.0)
            for i, tc in sorted(
                zip(crossed.tolist(), t_cross.tolist(), strict=True), key=lambda p: p[1]
            ):
                self._crossed(i, int(laps_new[i]), tc)
        started = np.flatnonzero((dist_old < 0) & (self.dist >= 0))
        if started.size:
            frac = -dist_old[started] / np.maximum(self.dist[started] - dist_old[started], 1e-9)
            self.lap_start[started] = self.t - dt + dt * frac
        # Running order: cars still running by distance, then retired cars.
        order = np.lexsort((-self.dist, ~self.running))
        self.order = order
        self.position[order] = np.arange(1, self.n + 1)
        lead = self.dist[order[0]]
        self.gap_leader = np.clip((lead - self.dist) / self.ref_speed, 0.0, 999.0)
        ahead = np.empty(self.n)
        ahead[order] = np.concatenate(([self.dist[order[0]]], self.dist[order[:-1]]))
        self.gap_ahead = np.clip((ahead - self.dist) / self.ref_speed, 0.0, 999.0)
        self.laps_down = np.floor(np.maximum(lead - self.dist, 0.0) / L)

    def _crossed(self, i: int, lap: int, tc: float) -> None:
        """Car ``i`` completed lap ``lap`` at race time ``tc`` (a per-crossing step, rare)."""
        self.laps[i] = lap
        if lap >= 1 and not math.isnan(self.lap_start[i]):
            lap_s = tc - self.lap_start[i]
            self.last_lap[i] = lap_s
            if self.best_lap[i] == 0 or lap_s < self.best_lap[i]:
                self.best_lap[i] = lap_s
            self.log.add(
                tc, "lap", (int(self.numbers[i]),),
                lap=lap, lap_time_s=round(lap_s, 3), position=int(self.position[i]),
            )  # fmt: skip
        self.lap_start[i] = tc
        self.tyre_age[i] += 1
        self.control.line_crossed(i, lap, tc)

    # -- output ----------------------------------------------------------------

    def snapshot(self, out: NDArray[np.float64]) -> None:
        """Write the state into ``out``, shape (len(SNAPSHOT_FIELDS), cars)."""
        ctl = self.control
        rows = (
            self.dist, self.speed, self.accel, self.lane, self.throttle, self.brake,
            self.draft_m, 30.0 * np.exp(-self.draft_m / 25.0) * self.track.spec.draft_gain / 0.035,
            self.fuel, self.fuel_used, self.oil_temp, self.water_temp,
        )  # fmt: skip
        for k, row in enumerate(rows):
            out[k] = row
        out[12:16] = self.tyre_t
        out[16:20] = self.wear
        out[20:24] = self.brake_t
        out[24:28] = self.pad
        out[F["gap_leader"]] = self.gap_leader
        out[F["gap_ahead"]] = self.gap_ahead
        out[F["engine_h"]] = self.engine_h
        out[F["laps"]] = self.laps
        out[F["position"]] = self.position
        out[F["last_lap"]] = self.last_lap
        out[F["best_lap"]] = self.best_lap
        out[F["laps_led"]] = self.laps_led
        out[F["pit_stops"]] = ctl.pit_stops
        out[F["laps_down"]] = self.laps_down
        out[F["pit_status"]] = ctl.pit_status
        out[F["flag"]] = ctl.flag
        out[F["tyre_age"]] = self.tyre_age
        out[F["running"]] = self.running
        out[F["on_pit_road"]] = self.running & (
            (ctl.pit_status == PIT_ROAD) | (ctl.pit_status == PIT_STALLED)
        )
        out[F["fuel_laps"]] = self.fuel / self.burn_per_lap
        out[F["finished"]] = ctl.finished

    @property
    def over(self) -> bool:
        """Whether the race has ended (``race_end`` was logged)."""
        return self.control.ended
