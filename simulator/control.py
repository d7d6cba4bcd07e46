"""Race control and pit road: flags, cautions behind a pace car, incidents, pit stops.

Works on the arrays of a race model, vectorised over cars; per-car Python code
runs only for rare, discrete happenings (a car crossing the line, an
incident).  The dependency is one way: :mod:`simulator.model` builds a
:class:`RaceControl` and hands it itself as a :class:`Cars`; race control reads
the cars' arrays and changes them only through the methods of :class:`Cars`.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from simulator.events import (
    CHECKERED,
    FLAG_NAMES,
    GREEN,
    PIT_OUT_LAP,
    PIT_ROAD,
    PIT_STALLED,
    PIT_TRACK,
    RED,
    WHITE,
    YELLOW,
    EventLog,
)
from simulator.track import Track

__all__ = ["TANK_GAL", "Cars", "RaceControl"]

STOP_S = 12.0
#: Fuel cell capacity, US gallons.
TANK_GAL = 18.0


class Cars(Protocol):
    """What race control reads of the cars (arrays of shape (n,) unless noted)."""

    n: int
    L: float
    t: float
    rng: np.random.Generator
    track: Track
    log: EventLog
    laps_total: int
    numbers: NDArray[np.int64]
    dist: NDArray[np.float64]
    running: NDArray[np.bool_]
    order: NDArray[np.intp]
    laps: NDArray[np.int64]
    fuel: NDArray[np.float64]
    burn_per_lap: float
    wear: NDArray[np.float64]  # (4, n)
    damage: NDArray[np.float64]
    draft_m: NDArray[np.float64]
    tyre_age: NDArray[np.float64]

    def refuel(self, serving: NDArray[np.bool_], dt: float) -> None:
        """Fuel flows into the cars ``serving`` in their pit box for ``dt`` seconds."""
        ...

    def service_done(self, i: int) -> None:
        """Car ``i`` leaves its box: full tank, fresh tyres, part of its damage mended."""
        ...

    def stop_in_box(self, i: int, dist: float) -> None:
        """Car ``i`` stops in its pit box at distance ``dist`` (m)."""
        ...

    def crash(
        self, cars: NDArray[np.intp], damage: NDArray[np.float64], retired: NDArray[np.intp]
    ) -> None:
        """``cars`` take ``damage``; ``retired`` stop running."""
        ...

    def led_lap(self, i: int) -> None:
        """Car ``i`` led a lap at the line."""
        ...


class RaceControl:
    """Flags, caution procedure, incidents and pit stops of one race."""

    def __init__(self, model: Cars) -> None:
        self.m = model
        n = model.n
        rng = model.rng
        L = model.L
        track = model.track
        self.flag = GREEN
        self.ended = False
        self.pit_status = np.zeros(n, dtype=np.int64)
        self.pit_stops = np.zeros(n, dtype=np.int64)
        self.finished = np.zeros(n, dtype=bool)
        self.all_running = True
        self.wants_pit = np.zeros(n, dtype=bool)
        self.served = np.zeros(n, dtype=bool)
        self.pit_timer = np.zeros(n)
        self.stall_dist = np.zeros(n)
        self.exit_dist = np.zeros(n)
        self.entry_m = track.pit_entry_m
        self.pit_len = L - track.pit_entry_m + track.pit_exit_m
        self.stall_off = self.pit_len * (0.2 + 0.6 * rng.permutation(n) / max(n - 1, 1))
        self.fuel_margin = rng.uniform(1.5, 3.5, n)
        self.wear_limit = rng.uniform(0.45, 0.65, n)
        self.pace_dist = 0.0
        self.caution_laps = 0
        self.pit_open = True
        self.red_pending = False
        self.red_until = 0.0
        self.line_leader = -1
        self.line_lap = 0
        self.checkered_t = 0.0
        self.green_since = 0.0
        # Summary figures.
        self.cautions = 0
        self.lead_changes = 0
        self.incidents = 0

    # -- speed limits ------------------------------------------------------------

    def limit_speed(
        self, v_tgt: NDArray[np.float64], s: NDArray[np.float64], dt: float
    ) -> NDArray[np.float64]:
        """Apply flags, pit road and retirements to the target speeds."""
        m = self.m
        spec = m.track.spec
        pace = spec.pace_speed_mps
        pit = spec.pit_speed_mps
        if self.flag == YELLOW:
            in_line = m.running & (self.pit_status != PIT_ROAD) & (self.pit_status != PIT_STALLED)
            rank = np.cumsum(in_line[m.order]) - 1
            slot = np.empty(m.n)
            slot[m.order] = self.pace_dist - 40.0 - 10.0 * rank
            v_tgt = np.where(
                in_line,
                np.minimum(v_tgt, np.clip(pace + 0.3 * (slot - m.dist), 0.0, 1.6 * pace)),
                v_tgt,
            )
        elif self.flag == RED:
            v_tgt = np.zeros_like(v_tgt)
        if self.flag == CHECKERED:
            v_tgt = np.where(self.finished, np.minimum(v_tgt, pace), v_tgt)
        # Slow for the pit-road speed line, then hold the limit, stop at the stall.
        if self.wants_pit.any():
            to_entry = np.mod(self.entry_m - s, m.L)
            entering = (
                self.wants_pit & (self.pit_status != PIT_ROAD) & (self.pit_status != PIT_STALLED)
            )
            limit = np.sqrt(pit * pit + 2 * 0.7 * spec.brake_mps2 * to_entry)
            v_tgt = np.where(entering, np.minimum(v_tgt, limit), v_tgt)
        if self.pit_status.any():
            road = self.pit_status == PIT_ROAD
            to_stall = np.where(self.served, 1e9, np.maximum(self.stall_dist - m.dist, 0.0))
            limit = np.minimum(pit, np.sqrt(2 * 8.0 * to_stall))
            v_tgt = np.where(road, np.minimum(v_tgt, limit), v_tgt)
            v_tgt = np.where(self.pit_status == PIT_STALLED, 0.0, v_tgt)
        if not self.all_running:
            v_tgt = np.where(m.running, v_tgt, 0.0)
        return v_tgt

    # -- pit road ----------------------------------------------------------------

    def after_move(self, dist_old: NDArray[np.float64], dt: float) -> None:
        """Pit-road transitions after the cars moved from ``dist_old``."""
        m = self.m
        L = m.L
        road = self.pit_status == PIT_ROAD
        crossed_entry = np.floor((m.dist - self.entry_m) / L) > np.floor(
            (dist_old - self.entry_m) / L
        )
        enter = np.flatnonzero(
            crossed_entry & self.wants_pit & m.running & ~road & (self.pit_status != PIT_STALLED)
        )
        for i in enter.tolist():
            start = np.floor((m.dist[i] - self.entry_m) / L) * L + self.entry_m
            self.pit_status[i] = PIT_ROAD
            self.served[i] = False
            self.stall_dist[i] = start + self.stall_off[i]
            self.exit_dist[i] = start + self.pit_len
            m.log.add(m.t + dt, "pit_in", (int(m.numbers[i]),), lap=int(m.laps[i]))
        arrive = np.flatnonzero(road & ~self.served & (m.dist >= self.stall_dist - 0.5))
        for i in arrive.tolist():
            m.stop_in_box(i, float(self.stall_dist[i]))
            self.pit_status[i] = PIT_STALLED
            extra = m.rng.uniform(3.0, 8.0) if m.damage[i] > 0 else 0.0
            self.pit_timer[i] = STOP_S + m.rng.normal(0.0, 0.7) + extra
        leave = np.flatnonzero(road & self.served & (m.dist >= self.exit_dist))
        for i in leave.tolist():
            self.pit_status[i] = PIT_OUT_LAP
            m.log.add(m.t + dt, "pit_out", (int(m.numbers[i]),), lap=int(m.laps[i]))

    def after_step(self, dt: float) -> None:
        """Pit service, pace car, red flag, incidents and pit decisions."""
        m = self.m
        spec = m.track.spec
        box = self.pit_status == PIT_STALLED
        serving = box & m.running
        if serving.any():
            m.refuel(serving, dt)
            self.pit_timer = np.where(serving, self.pit_timer - dt, self.pit_timer)
            done = np.flatnonzero(serving & (self.pit_timer <= 0))
            for i in done.tolist():
                self.pit_status[i] = PIT_ROAD
                self.served[i] = True
                self.wants_pit[i] = False
                self.pit_stops[i] += 1
                m.service_done(i)
        if self.flag == YELLOW:
            self.pace_dist += spec.pace_speed_mps * dt
        elif self.flag == RED and m.t >= self.red_until:
            self._set_flag(YELLOW)
            self.caution_laps = 2
            self.pit_open = False  # opens (with pit calls) when the leader next crosses the line
        elif self.flag in (GREEN, WHITE):
            self._maybe_incident(dt)
            need = (m.fuel / m.burn_per_lap < self.fuel_margin) | (
                m.wear.mean(axis=0) > self.wear_limit
            )
            self.wants_pit |= need & m.running & (self.pit_status == PIT_TRACK) & ~self.finished
        all_done = bool((self.finished | ~m.running).all())
        late = m.t > self.checkered_t + 2.5 * m.track.lap_time_s
        if self.flag == CHECKERED and (all_done or late):
            self.end("checkered")

    def _maybe_incident(self, dt: float) -> None:
        m = self.m
        hazard = m.track.spec.cautions_per_hour / 3600.0 * dt
        if m.t - self.green_since >= 20.0 and m.rng.random() < hazard:
            self.incident()

    def incident(self) -> bool:
        """An incident now (under green), which brings out a caution.

        Called at random by the hazard of the track; public so that tests and
        demos can throw a caution.  Returns False when there is no car to crash
        or the flag is not green.
        """
        m = self.m
        rng = m.rng
        if self.flag not in (GREEN, WHITE):
            return False
        on_track = m.running & (self.pit_status == PIT_TRACK) & ~self.finished
        if not on_track.any():
            return False
        weight = on_track * (0.3 + np.exp(-m.draft_m / 15.0))
        first = int(rng.choice(m.n, p=weight / weight.sum()))
        s = np.mod(m.dist, m.L)
        behind = np.mod(s[first] - s, m.L)
        near = np.flatnonzero(on_track & (behind < 30.0))
        near = near[np.argsort(behind[near])][: int(rng.integers(1, 6))]
        cars = np.union1d(near, [first])
        retired = cars[rng.random(cars.size) < 0.25]
        m.crash(cars, rng.uniform(0.005, 0.03, cars.size), retired)
        self.pit_status[retired] = PIT_STALLED
        self.incidents += 1
        self.all_running = bool(m.running.all())
        m.log.add(
            m.t, "incident", tuple(int(c) for c in m.numbers[cars]),
            lap=int(m.laps[m.order[0]]) + 1, lap_distance_m=round(float(s[first]), 1),
            retired=[int(c) for c in m.numbers[retired]],
        )  # fmt: skip
        self.red_pending = cars.size >= 4 and rng.random() < 0.35
        self._set_flag(YELLOW)
        self.cautions += 1
        self.caution_laps = int(rng.integers(4, 7))
        self.pit_open = False
        self.pace_dist = float(m.dist[m.order[0]]) + 150.0
        return True

    # -- the line ----------------------------------------------------------------

    def line_crossed(self, i: int, lap: int, tc: float) -> None:
        """Car ``i`` completed lap ``lap`` at time ``tc``."""
        m = self.m
        if self.pit_status[i] == PIT_OUT_LAP:
            self.pit_status[i] = PIT_TRACK
        if self.flag == CHECKERED:
            self.finished[i] = True
            return
        if lap <= self.line_lap:
            return
        # First car to complete this lap: the leader at the line.
        self.line_lap = lap
        m.led_lap(i)
        if self.line_leader >= 0 and self.line_leader != i:
            self.lead_changes += 1
            m.log.add(
                tc, "lead_change", (int(m.numbers[i]), int(m.numbers[self.line_leader])), lap=lap
            )
        self.line_leader = i
        if lap >= m.laps_total:
            self.finished[i] = True
            self.checkered_t = tc
            self._set_flag(CHECKERED, tc)
            return
        if self.flag == YELLOW:
            self.caution_laps -= 1
            if not self.pit_open:
                self.pit_open = True
                if self.red_pending:
                    self.red_pending = False
                    self.red_until = tc + float(m.rng.uniform(120.0, 240.0))
                    self._set_flag(RED, tc)
                    return
                self._caution_pit_calls()
            if self.caution_laps <= 0:
                self.green_since = tc
                self._set_flag(GREEN, tc)
        if lap == m.laps_total - 1 and self.flag == GREEN:
            self._set_flag(WHITE, tc)

    def _caution_pit_calls(self) -> None:
        """Pit road opens under caution: most cars that can use fresh tyres and fuel come in."""
        m = self.m
        rng = m.rng
        fuel_frac = m.fuel / TANK_GAL
        stay_out = rng.random(m.n) < np.where(fuel_frac > 0.6, 0.6, 0.1)
        useful = (fuel_frac < 0.85) | (m.damage > 0) | (m.tyre_age > 15)
        calls = useful & ~stay_out & m.running & (self.pit_status == PIT_TRACK)
        self.wants_pit |= calls

    def _set_flag(self, flag: int, t: float | None = None) -> None:
        if flag == self.flag:
            return
        self.flag = flag
        m = self.m
        leader_laps = int(m.laps[m.order[0]])
        m.log.add(m.t if t is None else t, "flag", (), flag=FLAG_NAMES[flag], lap=leader_laps)

    def end(self, reason: str) -> None:
        """End the race (once) and log ``race_end``."""
        if self.ended:
            return
        self.ended = True
        m = self.m
        m.log.add(
            m.t, "race_end", (),
            reason=reason, laps=int(m.laps.max()),
            order=[int(c) for c in m.numbers[m.order]],
        )  # fmt: skip
