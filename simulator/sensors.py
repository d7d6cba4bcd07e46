"""The sensor model: race state at physics steps -> every catalogue channel at the sample rate.

Continuous state is interpolated linearly between physics steps, held state
(laps, positions, flags) is taken from the last step; every channel is then
derived at the sample instants, vectorised over cars x samples, so that the
physical relations hold sample by sample:

* ``speed`` is the rate of change of the distance run; ``lap_distance``,
  ``track_x``/``track_y`` and GPS are the track map at that distance (plus the
  lateral ``lane`` offset);
* ``rpm`` = wheel rpm x final drive x ratio of ``gear``;
* ``g_lat`` = v^2 x curvature / g, ``yaw_rate`` = v x curvature;
* temperatures, wear and fuel come from the model's integrated state.

Noise is added in units of each channel's resolution, then values are
quantised: ``float32(rint(x / resolution) * resolution)``, clipped to the
channel's range (what an ADC does, and what makes recordings exact).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from simulator.model import CONTINUOUS, SNAPSHOT_FIELDS
from simulator.track import Track
from slipstream.catalogue import CATALOGUE

__all__ = ["NOISE_RESOLUTIONS", "SensorModel"]

G = 9.80665
MPS_TO_MPH = 1 / 0.44704
WHEEL_RADIUS_M = 0.33
GEAR_RATIOS = np.array([0.0, 2.9, 2.1, 1.55, 1.0])
SHIFT_RPM = 4500.0
FINAL_DRIVE = {"daytona": 3.05, "charlotte": 3.2, "martinsville": 5.6}
_S = {name: i for i, name in enumerate(SNAPSHOT_FIELDS)}
_C = CATALOGUE.index
CORNERS = ("lf", "rf", "lr", "rr")
_HELD = {
    "gear", "pit_limiter", "brake_bias", "radio_ptt", "clutch", "track_bar_height", "wedge",
    "tyre_age_laps", "on_pit_road", "lap", "race_position", "last_lap_time", "best_lap_time",
    "laps_led", "pit_stops", "laps_down", "pit_status", "flag", "sector", "ignition_on",
}  # fmt: skip
_HELD_COLUMNS = np.array([i for i, c in enumerate(CATALOGUE) if c.name in _HELD])

#: Noise standard deviation of each channel, in units of its resolution (0 = none).
NOISE_RESOLUTIONS: dict[str, float] = {
    "throttle": 1.0, "brake": 0.5, "steering": 1.0,
    "rpm": 2.0, "oil_temp": 1.0, "oil_pressure": 1.0, "water_temp": 1.0,
    "water_pressure": 1.0, "fuel_pressure": 1.0, "manifold_pressure": 1.0,
    "intake_air_temp": 1.0, "exhaust_temp_left": 2.0, "exhaust_temp_right": 2.0,
    "lambda_left": 1.0, "lambda_right": 1.0, "ignition_advance": 1.0,
    "engine_torque": 2.0, "engine_power": 2.0,
    "gearbox_oil_temp": 1.0, "diff_oil_temp": 1.0, "clutch_temp": 1.0, "driveshaft_rpm": 2.0,
    "g_lat": 2.0, "g_long": 2.0, "g_vert": 3.0, "yaw_rate": 3.0, "pitch_rate": 5.0,
    "roll_rate": 5.0, "pitch": 1.0, "roll": 1.0, "g_peak": 2.0,
    "speed": 1.0, "gps_lat": 3.0, "gps_lon": 3.0, "gps_alt": 3.0, "heading": 2.0,
    "lane": 1.0, "fuel_level": 2.0, "fuel_flow": 2.0, "fuel_temp": 1.0, "fuel_mileage": 1.0,
    "battery_voltage": 2.0, "alternator_current": 2.0, "ecu_temp": 1.0, "ecu_voltage": 2.0,
    "fan_current": 2.0, "radio_signal": 2.0, "logger_load": 1.0,
    "airspeed": 3.0, "drag_reduction": 1.0, "downforce_front": 3.0, "downforce_rear": 3.0,
    "yaw_angle": 2.0, "heart_rate": 1.0, "breathing_rate": 1.0, "cockpit_temp": 1.0,
    "cool_suit_temp": 1.0, "helmet_temp": 1.0,
}  # fmt: skip
for _corner in CORNERS:
    NOISE_RESOLUTIONS.update(
        {
            f"wheel_speed_{_corner}": 1.0, f"ride_height_{_corner}": 2.0,
            f"shock_travel_{_corner}": 2.0, f"shock_velocity_{_corner}": 4.0,
            f"spring_load_{_corner}": 2.0, f"tyre_pressure_{_corner}": 1.0,
            f"brake_temp_{_corner}": 1.0,
        }
    )  # fmt: skip
    for _zone in ("inner", "middle", "outer"):
        NOISE_RESOLUTIONS[f"tyre_temp_{_corner}_{_zone}"] = 1.0


class SensorModel:
    """Turns physics snapshots into channel values for the cars of a race.

    Args:
        track: The track.
        cars: Field size.
        physics_hz: Rate of the physics steps the snapshots come from.
        rng: Source of the per-car constants (set-up, sensor offsets).
    """

    def __init__(self, track: Track, cars: int, physics_hz: int, rng: np.random.Generator) -> None:
        self.track = track
        self.n = cars
        self.physics_hz = physics_hz
        spec = track.spec
        # Tables with the first point repeated, so index+1 never wraps.
        self._x = np.append(track.x_m, track.x_m[0])
        self._y = np.append(track.y_m, track.y_m[0])
        self._k = np.append(track.curvature, track.curvature[0])
        self._fd = FINAL_DRIVE.get(spec.name, 3.2)
        self._rpm_per_mps = 60.0 / (2 * math.pi * WHEEL_RADIUS_M) * self._fd
        self.brake_bias = rng.uniform(54.0, 60.0, (cars, 1)).round(1)
        self.track_bar = rng.uniform(220.0, 280.0, (cars, 1)).round(0)
        self.wedge = rng.uniform(48.0, 54.0, (cars, 1)).round(1)
        self.hr_base = rng.uniform(115.0, 140.0, (cars, 1))
        self.radio_phase = rng.uniform(0.0, 20.0, (cars, 1))
        self.p_cold = np.array([150.0, 300.0, 150.0, 280.0])

    def channels(
        self, snaps: NDArray[np.float64], times_ns: NDArray[np.int64], first_step: int
    ) -> NDArray[np.float64]:
        """Channel values at the sample times, before noise and quantisation.

        Every channel is derived at the physics steps and interpolated to the
        samples (held channels keep the last step's value); the channels tied
        to the motion (speed, rpm and gear, g_lat, yaw, steering, position on
        the map, GPS, lap and lap distance) are then derived again from the
        interpolated motion at each sample, so their relations hold exactly.

        Args:
            snaps: Snapshots of physics steps ``first_step, first_step + 1, ...``,
                shape (steps, len(SNAPSHOT_FIELDS), cars); they must cover the
                sample times (the step after the last sample included).
            times_ns: Sample times, race nanoseconds, shape (samples,).
            first_step: Index of the step of ``snaps[0]``.

        Returns:
            Values in channel units, shape (cars, samples, channels), float64.
        """
        hz = self.physics_hz
        scaled = times_ns * hz
        step = scaled // 1_000_000_000
        frac = (scaled - step * 1_000_000_000) * 1e-9
        j = step - first_step
        steps = snaps.shape[0]
        x = snaps[:, :CONTINUOUS].transpose(1, 2, 0)
        h = snaps[:, CONTINUOUS:].transpose(1, 2, 0)
        t_steps = ((first_step + np.arange(steps)) / hz)[None, :]
        at_steps = np.ascontiguousarray(self._derive(x, h, t_steps).transpose(1, 2, 0))
        # Interpolation as a (samples x steps) weight matrix: one matmul per car.
        rows = np.arange(times_ns.shape[0])
        weights = np.zeros((rows.shape[0], steps))
        weights[rows, j] = 1.0 - frac
        weights[rows, j + 1] += frac
        out = np.matmul(weights, at_steps)  # (cars, samples, channels)
        hold = np.zeros_like(weights)
        hold[rows, j] = 1.0
        out[:, :, _HELD_COLUMNS] = np.matmul(hold, at_steps[:, :, _HELD_COLUMNS])
        # The motion, interpolated to the samples, shape (cars, samples).
        a = snaps[j]
        b = snaps[j + 1]
        f = frac[:, None]

        def lerp(name: str) -> NDArray[np.float64]:
            k = _S[name]
            return (a[:, k] + f * (b[:, k] - a[:, k])).T

        held = a[:, CONTINUOUS:].transpose(1, 2, 0)
        self._motion(out, lerp("dist"), lerp("speed"), lerp("accel"), lerp("lane"), held)
        return np.asarray(out, dtype=np.float64)

    def _motion(
        self,
        out: NDArray[np.float64],
        d: NDArray[np.float64],
        v: NDArray[np.float64],
        acc: NDArray[np.float64],
        lane: NDArray[np.float64],
        h: NDArray[np.float64],
    ) -> None:
        """Overwrite the channels tied to motion in ``out`` (cars, samples, channels)."""
        track = self.track
        spec = track.spec
        L = track.length_m
        H = CONTINUOUS

        def put(name: str, value: NDArray[np.generic] | float) -> None:
            out[:, :, _C[name]] = value

        s = np.mod(d, L)
        grid = s.astype(np.intp)
        np.minimum(grid, track.points - 1, out=grid)
        gfrac = s - grid
        k = self._k[grid] + gfrac * (self._k[grid + 1] - self._k[grid])
        bank = track.banking_rad[grid]
        head = track.heading_rad[grid]
        px = self._x[grid] + gfrac * (self._x[grid + 1] - self._x[grid]) - lane * np.sin(head)
        py = self._y[grid] + gfrac * (self._y[grid + 1] - self._y[grid]) + lane * np.cos(head)
        g_lat = v * v * k * (1.0 / G)
        g_long = acc * (1.0 / G)
        g_vert = np.cos(bank) + g_lat * np.sin(bank)
        mph = v * MPS_TO_MPH
        running = h[_S["running"] - H]
        rpm4 = v * self._rpm_per_mps
        gear = 1 + (rpm4 * GEAR_RATIOS[2] >= SHIFT_RPM) + (rpm4 * GEAR_RATIOS[3] >= SHIFT_RPM)
        gear = (gear + (rpm4 >= SHIFT_RPM)) * (v >= 0.5)
        rpm = np.where(gear > 0, rpm4 * GEAR_RATIOS[gear], 1100.0) * running
        np.minimum(rpm, 9990.0, out=rpm)
        put("gear", gear)
        put("rpm", rpm)
        put("speed", mph)
        for code, side in (("lf", -0.8), ("rf", 0.8), ("lr", -0.8), ("rr", 0.8)):
            put(f"wheel_speed_{code}", mph * (1.0 + side * k))
        put("driveshaft_rpm", v * (60.0 / (2 * math.pi * WHEEL_RADIUS_M)) * self._fd)
        put("steering", 15.0 * np.degrees(np.arctan(2.794 * k)) * (v > 0.5))
        put("g_lat", g_lat)
        put("g_vert", g_vert)
        put("yaw_rate", np.degrees(v * k))
        put("roll", 1.1 * g_lat)
        put("g_peak", np.sqrt(g_lat * g_lat + g_long * g_long + g_vert * g_vert))
        lat, lon = track.gps(px, py)
        put("lap_distance", s)
        put("lap_fraction", s * (1.0 / L))
        put("sector", np.minimum(np.floor(s * (4.0 / L)), 3.0))
        put("track_x", px)
        put("track_y", py)
        put("gps_lat", lat)
        put("gps_lon", lon)
        put("gps_alt", spec.alt_m + (5.0 - lane) * np.sin(bank))
        put("heading", np.mod(90.0 - np.degrees(head), 360.0))
        frozen = (h[_S["finished"] - H] > 0) | (running < 1)
        put("lap", np.where(frozen, h[_S["laps"] - H], np.maximum(np.floor(d * (1.0 / L)), 0.0)))

    def _derive(
        self, x: NDArray[np.float64], h: NDArray[np.float64], t_s: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        track = self.track
        spec = track.spec
        L = track.length_m
        S = _S
        H = CONTINUOUS
        out = np.empty((len(CATALOGUE), self.n, t_s.shape[1]))

        def put(name: str, value: NDArray[np.generic] | float) -> None:
            out[_C[name]] = value

        d = x[S["dist"]]
        v = x[S["speed"]]
        acc = x[S["accel"]]
        lane = x[S["lane"]]
        thr = x[S["throttle"]]
        brk = x[S["brake"]]
        running = h[S["running"] - H]
        finished = h[S["finished"] - H]
        s = np.mod(d, L)
        grid = s.astype(np.intp)
        np.minimum(grid, track.points - 1, out=grid)
        gfrac = s - grid
        k = track.curvature[grid]
        bank = track.banking_rad[grid]
        head = track.heading_rad[grid]
        sin_h = np.sin(head)
        cos_h = np.cos(head)
        px = self._x[grid] + gfrac * (self._x[grid + 1] - self._x[grid]) - lane * sin_h
        py = self._y[grid] + gfrac * (self._y[grid + 1] - self._y[grid]) + lane * cos_h
        v_rel = v / spec.top_speed_mps
        g_lat = v * v * k / G
        g_long = acc / G
        g_vert = np.cos(bank) + g_lat * np.sin(bank)

        # inputs
        put("throttle", 100.0 * thr)
        put("brake", 100.0 * brk)
        put("steering", 15.0 * np.degrees(np.arctan(2.794 * k)) * (v > 0.5))
        put("clutch", 100.0 * (v < 0.5) * running)
        rpm4 = v * self._rpm_per_mps
        gear = 1 + (rpm4 * GEAR_RATIOS[2] >= SHIFT_RPM) + (rpm4 * GEAR_RATIOS[3] >= SHIFT_RPM)
        gear = (gear + (rpm4 >= SHIFT_RPM)) * (v >= 0.5)
        put("gear", gear)
        on_pit = h[S["on_pit_road"] - H]
        put("pit_limiter", on_pit)
        put("brake_bias", self.brake_bias)
        put("radio_ptt", np.mod(t_s + self.radio_phase, 20.0) < 1.5)
        # engine
        rpm = np.where(gear > 0, rpm4 * GEAR_RATIOS[gear], 1100.0) * running
        np.minimum(rpm, 9990.0, out=rpm)
        put("rpm", rpm)
        rpm_rel = rpm / 9000.0
        oil = x[S["oil_temp"]]
        water = x[S["water_temp"]]
        put("oil_temp", oil)
        put("oil_pressure", (150.0 + 450.0 * rpm_rel) * running)
        put("water_temp", water)
        put("water_pressure", (100.0 + 60.0 * rpm_rel + 1.5 * (water - 80.0)) * running)
        put("fuel_pressure", 400.0 * running + 40.0 * rpm_rel)
        put("manifold_pressure", 101.0 - 70.0 * (1.0 - thr) * running)
        put("intake_air_temp", 38.0 + 8.0 * (1.0 - v_rel))
        exhaust = (350.0 + 500.0 * thr * rpm_rel) * running + 30.0
        put("exhaust_temp_left", exhaust)
        put("exhaust_temp_right", exhaust + 12.0)
        lam = 0.88 + 0.12 * (1.0 - thr)
        put("lambda_left", lam)
        put("lambda_right", lam + 0.01)
        put("ignition_advance", (18.0 + 14.0 * rpm_rel - 5.0 * thr) * running)
        torque = (thr * (430.0 + 120.0 * rpm_rel) - (1.0 - thr) * 60.0 * (rpm > 2000)) * running
        put("engine_torque", torque)
        put("engine_power", torque * rpm * (2 * math.pi / 60.0 / 1000.0))
        put("engine_hours", x[S["engine_h"]])
        # drivetrain
        put("gearbox_oil_temp", oil - 12.0 + 4.0 * v_rel)
        put("diff_oil_temp", oil - 8.0 + 6.0 * v_rel)
        put("clutch_temp", 180.0 + 120.0 * on_pit)
        wheel_rpm = v * (60.0 / (2 * math.pi * WHEEL_RADIUS_M))
        put("driveshaft_rpm", wheel_rpm * self._fd)
        mph = v * MPS_TO_MPH
        for code, side in (("lf", -0.8), ("rf", 0.8), ("lr", -0.8), ("rr", 0.8)):
            put(f"wheel_speed_{code}", mph * (1.0 + side * k))
        # chassis: downforce and load transfer compress the springs; the track has bumps
        bumps = np.sin(s * 0.41) + 0.5 * np.sin(s * 1.13)
        bump_rate = v * (0.41 * np.cos(s * 0.41) + 0.565 * np.cos(s * 1.13))
        for c, code in enumerate(CORNERS):
            side = 1.0 if c % 2 else -1.0
            base = 105.0 if c < 2 else 125.0
            rh = base - 0.0035 * v * v - 6.0 * (g_vert - 1.0) - side * 3.0 * g_lat + 1.5 * bumps
            travel = 60.0 + (base - rh)
            put(f"ride_height_{code}", rh)
            put(f"shock_travel_{code}", travel)
            put(f"shock_velocity_{code}", 1.5 * bump_rate)
            put(f"spring_load_{code}", travel * (170.0 if c < 2 else 140.0))
        put("track_bar_height", self.track_bar)
        put("wedge", self.wedge)
        # tyres
        for c, code in enumerate(CORNERS):
            tmid = x[S[f"tyre_t_{code}"]]
            spread = 3.0 + 2.5 * np.abs(g_lat)
            put(f"tyre_temp_{code}_inner", tmid + spread)
            put(f"tyre_temp_{code}_middle", tmid)
            put(f"tyre_temp_{code}_outer", tmid - spread)
            put(f"tyre_pressure_{code}", self.p_cold[c] * (273.0 + tmid) / 303.0)
            put(f"tyre_wear_{code}", 100.0 * x[S[f"wear_{code}"]])
        put("tyre_age_laps", h[S["tyre_age"] - H])
        # brakes
        for code in CORNERS:
            put(f"brake_temp_{code}", x[S[f"brake_t_{code}"]])
            put(f"brake_wear_{code}", x[S[f"pad_{code}"]])
        put("brake_pressure_front", 9000.0 * brk)
        put("brake_pressure_rear", 5500.0 * brk)
        # imu
        put("g_lat", g_lat)
        put("g_long", g_long)
        put("g_vert", g_vert)
        put("yaw_rate", np.degrees(v * k))
        put("pitch_rate", 0.0)
        put("roll_rate", 0.0)
        put("pitch", -0.8 * g_long)
        put("roll", 1.1 * g_lat)
        put("g_peak", np.sqrt(g_lat * g_lat + g_long * g_long + g_vert * g_vert))
        # position
        lat, lon = track.gps(px, py)
        put("speed", mph)
        put("lap_distance", s)
        put("track_x", px)
        put("track_y", py)
        put("gps_lat", lat)
        put("gps_lon", lon)
        put("gps_alt", spec.alt_m + (5.0 - lane) * np.sin(bank))
        put("heading", np.mod(90.0 - np.degrees(head), 360.0))
        put("lane", lane)
        put("on_pit_road", on_pit)
        # timing: the lap count follows the distance run (frozen once finished or out)
        frozen = (finished > 0) | (running < 1)
        laps_run = np.maximum(np.floor(d / L), 0.0)
        put("lap", np.where(frozen, h[S["laps"] - H], laps_run))
        put("lap_fraction", s / L)
        put("race_position", h[S["position"] - H])
        put("gap_to_leader", x[S["gap_leader"]])
        put("gap_ahead", x[S["gap_ahead"]])
        put("last_lap_time", h[S["last_lap"] - H])
        put("best_lap_time", h[S["best_lap"] - H])
        put("laps_led", h[S["laps_led"] - H])
        put("pit_stops", h[S["pit_stops"] - H])
        put("laps_down", h[S["laps_down"] - H])
        put("pit_status", h[S["pit_status"] - H])
        put("flag", h[S["flag"] - H])
        put("sector", np.minimum(np.floor(4.0 * s / L), 3.0))
        # fuel
        fuel = x[S["fuel"]]
        flow = spec.fuel_gal_per_km * v * 3.6 * (0.2 + 0.8 * thr) * running
        put("fuel_level", fuel)
        put("fuel_flow", flow)
        put("fuel_used", x[S["fuel_used"]])
        put("fuel_laps_left", h[S["fuel_laps"] - H])
        put("fuel_temp", 32.0 + 10.0 * (1.0 - fuel / 18.0))
        put("fuel_mileage", np.where(flow > 0.5, mph / np.maximum(flow, 0.5), 0.0))
        # electrical
        charging = rpm > 2000
        put("battery_voltage", 12.6 + 1.3 * charging)
        put("alternator_current", (35.0 + 10.0 * rpm_rel) * charging)
        put("ecu_temp", 40.0 + 0.15 * oil)
        put("ecu_voltage", 12.5 + 1.2 * charging)
        put("fan_current", np.maximum(water - 85.0, 0.0) * 0.8 + 6.0 * running)
        put("radio_signal", -55.0 - 0.02 * np.hypot(px, py + 600.0))
        put("logger_load", 30.0 + 15.0 * v_rel)
        put("ignition_on", running)
        # aero
        put("airspeed", (v + 4.0 * np.cos(head - 0.7)) * MPS_TO_MPH)
        draft_red = x[S["drag_red"]]
        put("draft_distance", x[S["draft_m"]])
        put("drag_reduction", draft_red)
        put("downforce_front", 0.9 * v * v)
        put("downforce_rear", 1.1 * v * v * (1.0 - draft_red / 200.0))
        put("yaw_angle", 1.2 * g_lat * (v > 1.0))
        # driver
        yellow = h[S["flag"] - H] == 1
        put("heart_rate", self.hr_base + 30.0 * v_rel + 4.0 * np.abs(g_lat) - 12.0 * yellow)
        put("breathing_rate", 16.0 + 14.0 * v_rel)
        put("cockpit_temp", 42.0 + 8.0 * v_rel)
        put("cool_suit_temp", 16.0 + 2.0 * v_rel)
        put("helmet_temp", 32.0 + 4.0 * v_rel)
        put("hydration", np.maximum(2000.0 - 0.08 * t_s, 0.0))
        return out
