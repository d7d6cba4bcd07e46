"""The channel catalogue: the one source of truth for every telemetry channel.

Every stage and every client agrees on the catalogue: the simulator produces
its channels in catalogue order, ingest validates against its ranges, the
downsampler aggregates each channel by its declared rule, the codecs quantise
at its resolution and the protocol's hello carries its version hash.

Values travel quantised: ``q = round(value / resolution)`` as a signed 32-bit
integer, and ``value = q * resolution``.  :data:`MISSING` marks a channel with
no value (a sensor dropout, or a window with no finite sample).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "AGGREGATIONS",
    "CATALOGUE",
    "MISSING",
    "Catalogue",
    "Channel",
    "Group",
]

Aggregation = Literal["mean", "last", "min", "max", "first", "sum"]
AGGREGATIONS: tuple[Aggregation, ...] = ("mean", "last", "min", "max", "first", "sum")

#: Quantised value that marks "no value" (NaN before quantisation).
MISSING: int = -(2**31)


@dataclass(frozen=True, slots=True)
class Channel:
    """One telemetry channel.

    Attributes:
        name: Unique channel name (snake_case).
        group: Name of the channel group it belongs to.
        unit: Physical unit of the value ("" when dimensionless).
        min: Smallest valid value, in ``unit``.
        max: Largest valid value, in ``unit``.
        resolution: Quantisation step, in ``unit``.
        agg: Rule that reduces a 500 ms window of samples to one 2 Hz value.
        description: One line for people.
    """

    name: str
    group: str
    unit: str
    min: float
    max: float
    resolution: float
    agg: Aggregation
    description: str

    def __post_init__(self) -> None:
        if not self.min < self.max:
            raise ValueError(f"channel {self.name}: min {self.min} must be below max {self.max}")
        if self.resolution <= 0:
            raise ValueError(f"channel {self.name}: resolution must be positive")
        if self.agg not in AGGREGATIONS:
            raise ValueError(f"channel {self.name}: unknown aggregation {self.agg!r}")
        limit = max(abs(self.min), abs(self.max)) / self.resolution
        if limit >= 2**31 - 1:
            raise ValueError(f"channel {self.name}: range does not fit int32 at its resolution")


@dataclass(frozen=True, slots=True)
class Group:
    """A named group of channels, the unit of subscription.

    Attributes:
        name: Group name.
        index: Position of the group in :attr:`Catalogue.groups`.
        start: Index of the group's first channel in the catalogue.
        stop: One past the index of its last channel (channels are contiguous).
        premium: Whether fans need a token that names this group to see it.
        description: One line for people.
    """

    name: str
    index: int
    start: int
    stop: int
    premium: bool
    description: str

    @property
    def size(self) -> int:
        """Number of channels in the group."""
        return self.stop - self.start


@dataclass(frozen=True)
class Catalogue:
    """An ordered, versioned set of channels grouped contiguously.

    Channel ``i`` is column ``i`` of every raw sample array and every frame.
    """

    channels: tuple[Channel, ...]
    group_info: dict[str, tuple[bool, str]] = field(default_factory=dict)
    version: int = 1

    def __post_init__(self) -> None:
        names = [c.name for c in self.channels]
        if len(set(names)) != len(names):
            raise ValueError("channel names must be unique")
        seen: list[str] = []
        for channel in self.channels:
            if not seen or seen[-1] != channel.group:
                if channel.group in seen:
                    raise ValueError(f"group {channel.group} is not contiguous")
                seen.append(channel.group)

    def __len__(self) -> int:
        return len(self.channels)

    def __iter__(self) -> Iterator[Channel]:
        return iter(self.channels)

    @cached_property
    def index(self) -> dict[str, int]:
        """Channel name to column index."""
        return {c.name: i for i, c in enumerate(self.channels)}

    @cached_property
    def groups(self) -> tuple[Group, ...]:
        """The groups in catalogue order."""
        groups: list[Group] = []
        start = 0
        for i, channel in enumerate(self.channels):
            last = i + 1 == len(self.channels) or self.channels[i + 1].group != channel.group
            if last:
                premium, description = self.group_info.get(channel.group, (False, ""))
                groups.append(Group(channel.group, len(groups), start, i + 1, premium, description))
                start = i + 1
        return tuple(groups)

    @cached_property
    def group_by_name(self) -> dict[str, Group]:
        """Group name to group."""
        return {g.name: g for g in self.groups}

    @cached_property
    def minimum(self) -> NDArray[np.float64]:
        """Per-channel minimum, shape (channels,)."""
        return np.array([c.min for c in self.channels], dtype=np.float64)

    @cached_property
    def maximum(self) -> NDArray[np.float64]:
        """Per-channel maximum, shape (channels,)."""
        return np.array([c.max for c in self.channels], dtype=np.float64)

    @cached_property
    def resolution(self) -> NDArray[np.float64]:
        """Per-channel quantisation step, shape (channels,)."""
        return np.array([c.resolution for c in self.channels], dtype=np.float64)

    @cached_property
    def agg_codes(self) -> NDArray[np.int8]:
        """Per-channel index into :data:`AGGREGATIONS`, shape (channels,)."""
        return np.array([AGGREGATIONS.index(c.agg) for c in self.channels], dtype=np.int8)

    def channels_with(self, agg: Aggregation) -> NDArray[np.intp]:
        """Column indices of the channels aggregated by ``agg``."""
        return np.flatnonzero(self.agg_codes == AGGREGATIONS.index(agg))

    def resolve_groups(self, names: Sequence[str] | None) -> tuple[Group, ...]:
        """Groups named in ``names`` (all groups when None), in catalogue order.

        Raises:
            ValueError: A name is not a group of this catalogue.
        """
        if names is None:
            return self.groups
        unknown = sorted(set(names) - set(self.group_by_name))
        if unknown:
            raise ValueError(
                f"unknown channel group(s) {', '.join(unknown)}; "
                f"known: {', '.join(g.name for g in self.groups)}"
            )
        wanted = set(names)
        return tuple(g for g in self.groups if g.name in wanted)

    def quantise(self, values: NDArray[np.floating]) -> NDArray[np.int32]:
        """Quantise values in channel units to int32 counts.

        Args:
            values: Array whose last axis is the channel axis, shape (..., channels).

        Returns:
            Counts of the same shape; non-finite values become :data:`MISSING`.
            Values outside a channel's range are clipped to it.
        """
        v = np.asarray(values, dtype=np.float64)
        finite = np.isfinite(v)
        clipped = np.clip(np.where(finite, v, 0.0), self.minimum, self.maximum)
        q = np.rint(clipped / self.resolution).astype(np.int32)
        q[~finite] = MISSING
        return q

    def dequantise(self, q: NDArray[np.integer]) -> NDArray[np.float64]:
        """Counts back to channel units; :data:`MISSING` becomes NaN."""
        counts = np.asarray(q)
        values = counts.astype(np.float64) * self.resolution
        values[counts == MISSING] = np.nan
        return values

    def to_json(self) -> list[dict[str, object]]:
        """The catalogue as a list of plain objects (the ``--json`` and HTTP form)."""
        rows: list[dict[str, object]] = []
        for channel in self.channels:
            row: dict[str, object] = asdict(channel)
            row["premium"] = self.group_by_name[channel.group].premium
            rows.append(row)
        return rows

    @cached_property
    def hash(self) -> str:
        """Version hash: first 16 hex digits of SHA-256 over the canonical JSON form."""
        canonical = json.dumps(
            {"version": self.version, "channels": self.to_json()},
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _build() -> Catalogue:
    rows: list[Channel] = []
    info: dict[str, tuple[bool, str]] = {}

    def group(name: str, description: str, premium: bool = False) -> None:
        info[name] = (premium, description)

    def ch(
        name: str,
        grp: str,
        unit: str,
        lo: float,
        hi: float,
        res: float,
        agg: Aggregation,
        description: str,
    ) -> None:
        rows.append(Channel(name, grp, unit, lo, hi, res, agg, description))

    corners = (
        ("lf", "left front"),
        ("rf", "right front"),
        ("lr", "left rear"),
        ("rr", "right rear"),
    )

    group("inputs", "driver controls")
    ch("throttle", "inputs", "%", 0, 100, 0.5, "mean", "throttle pedal position")
    ch("brake", "inputs", "%", 0, 100, 0.5, "mean", "brake pedal position")
    ch("steering", "inputs", "deg", -540, 540, 0.5, "mean", "steering wheel angle")
    ch("clutch", "inputs", "%", 0, 100, 1, "mean", "clutch pedal position")
    ch("gear", "inputs", "", 0, 6, 1, "last", "engaged gear (0 = neutral)")
    ch("pit_limiter", "inputs", "", 0, 1, 1, "last", "pit-road speed limiter engaged")
    ch("brake_bias", "inputs", "%", 40, 80, 0.1, "last", "front brake bias")
    ch("radio_ptt", "inputs", "", 0, 1, 1, "max", "driver radio push-to-talk")

    group("engine", "engine sensors")
    ch("rpm", "engine", "rpm", 0, 10000, 10, "mean", "engine speed")
    ch("oil_temp", "engine", "degC", 0, 180, 0.5, "mean", "oil temperature")
    ch("oil_pressure", "engine", "kPa", 0, 1000, 5, "mean", "oil pressure")
    ch("water_temp", "engine", "degC", 0, 150, 0.5, "mean", "coolant temperature")
    ch("water_pressure", "engine", "kPa", 0, 400, 2, "mean", "coolant pressure")
    ch("fuel_pressure", "engine", "kPa", 0, 800, 5, "mean", "fuel rail pressure")
    ch("manifold_pressure", "engine", "kPa", 0, 200, 1, "mean", "intake manifold pressure")
    ch("intake_air_temp", "engine", "degC", -20, 120, 0.5, "mean", "intake air temperature")
    ch("exhaust_temp_left", "engine", "degC", 0, 1100, 5, "mean", "left bank exhaust temperature")
    ch("exhaust_temp_right", "engine", "degC", 0, 1100, 5, "mean", "right bank exhaust temperature")
    ch("lambda_left", "engine", "", 0.5, 1.5, 0.01, "mean", "left bank air-fuel ratio (lambda)")
    ch("lambda_right", "engine", "", 0.5, 1.5, 0.01, "mean", "right bank air-fuel ratio (lambda)")
    ch("ignition_advance", "engine", "deg", -10, 60, 0.5, "mean", "ignition timing advance")
    ch("engine_torque", "engine", "N*m", -200, 900, 5, "mean", "estimated engine torque")
    ch("engine_power", "engine", "kW", -150, 700, 5, "mean", "estimated engine power")
    ch("engine_hours", "engine", "h", 0, 100, 0.01, "last", "engine running time")

    group("drivetrain", "gearbox, clutch and wheel speeds")
    ch("gearbox_oil_temp", "drivetrain", "degC", 0, 180, 0.5, "mean", "gearbox oil temperature")
    ch("diff_oil_temp", "drivetrain", "degC", 0, 180, 0.5, "mean", "rear-end oil temperature")
    ch("clutch_temp", "drivetrain", "degC", 0, 800, 5, "mean", "clutch temperature")
    ch("driveshaft_rpm", "drivetrain", "rpm", 0, 10000, 10, "mean", "driveshaft speed")
    for code, label in corners:
        ch(f"wheel_speed_{code}", "drivetrain", "mph", 0, 260, 0.5, "mean", f"{label} wheel speed")

    group("chassis", "suspension and ride")
    for code, label in corners:
        ch(f"ride_height_{code}", "chassis", "mm", 0, 200, 0.5, "mean", f"{label} ride height")
    for code, label in corners:
        ch(f"shock_travel_{code}", "chassis", "mm", 0, 150, 0.5, "mean", f"{label} shock travel")
    for code, label in corners:
        ch(
            f"shock_velocity_{code}",
            "chassis",
            "mm/s",
            -1000,
            1000,
            5,
            "max",
            f"{label} damper speed",
        )
    for code, label in corners:
        ch(f"spring_load_{code}", "chassis", "N", 0, 30000, 50, "mean", f"{label} spring load")
    ch("track_bar_height", "chassis", "mm", 150, 350, 1, "last", "rear track bar height")
    ch("wedge", "chassis", "%", 40, 60, 0.1, "last", "cross weight")

    group("tyres", "tyre temperatures, pressures and wear")
    for code, label in corners:
        for zone in ("inner", "middle", "outer"):
            ch(
                f"tyre_temp_{code}_{zone}", "tyres", "degC", 0, 200, 1, "mean",
                f"{label} tyre {zone} surface temperature",
            )  # fmt: skip
    for code, label in corners:
        ch(f"tyre_pressure_{code}", "tyres", "kPa", 50, 400, 1, "mean", f"{label} tyre pressure")
    for code, label in corners:
        ch(f"tyre_wear_{code}", "tyres", "%", 0, 100, 0.5, "last", f"{label} tread worn")
    ch("tyre_age_laps", "tyres", "lap", 0, 500, 1, "last", "laps on the current set")

    group("brakes", "brake temperatures and pressures")
    for code, label in corners:
        ch(f"brake_temp_{code}", "brakes", "degC", 0, 1200, 5, "max", f"{label} rotor temperature")
    ch("brake_pressure_front", "brakes", "kPa", 0, 12000, 50, "max", "front line pressure")
    ch("brake_pressure_rear", "brakes", "kPa", 0, 12000, 50, "max", "rear line pressure")
    for code, label in corners:
        ch(f"brake_wear_{code}", "brakes", "mm", 0, 40, 0.1, "last", f"{label} pad thickness")

    group("imu", "accelerations and rotation rates")
    ch("g_lat", "imu", "g", -6, 6, 0.01, "mean", "lateral acceleration (positive = left turn)")
    ch("g_long", "imu", "g", -6, 6, 0.01, "mean", "longitudinal acceleration")
    ch("g_vert", "imu", "g", -6, 8, 0.01, "mean", "vertical acceleration")
    ch("yaw_rate", "imu", "deg/s", -200, 200, 0.1, "mean", "yaw rate")
    ch("pitch_rate", "imu", "deg/s", -100, 100, 0.1, "mean", "pitch rate")
    ch("roll_rate", "imu", "deg/s", -100, 100, 0.1, "mean", "roll rate")
    ch("pitch", "imu", "deg", -20, 20, 0.05, "mean", "pitch angle")
    ch("roll", "imu", "deg", -20, 20, 0.05, "mean", "roll angle")
    ch("g_peak", "imu", "g", 0, 50, 0.05, "max", "peak combined acceleration")

    group("position", "speed and position on track")
    ch("speed", "position", "mph", 0, 260, 0.1, "mean", "ground speed")
    ch("lap_distance", "position", "m", 0, 5000, 0.5, "last", "distance from the start line")
    ch("track_x", "position", "m", -3000, 3000, 0.1, "last", "track map x")
    ch("track_y", "position", "m", -3000, 3000, 0.1, "last", "track map y")
    ch("gps_lat", "position", "deg", -90, 90, 1e-6, "last", "GPS latitude")
    ch("gps_lon", "position", "deg", -180, 180, 1e-6, "last", "GPS longitude")
    ch("gps_alt", "position", "m", -500, 5000, 0.1, "last", "GPS altitude")
    ch("heading", "position", "deg", 0, 360, 0.1, "last", "heading, clockwise from north")
    ch("lane", "position", "m", -20, 20, 0.1, "mean", "lateral offset from the racing line")
    ch("on_pit_road", "position", "", 0, 1, 1, "last", "car is on pit road")

    group("timing", "timing and scoring")
    ch("lap", "timing", "lap", 0, 1000, 1, "last", "laps completed")
    ch("lap_fraction", "timing", "", 0, 1, 0.001, "last", "fraction of the current lap run")
    ch("race_position", "timing", "", 1, 99, 1, "last", "running position")
    ch("gap_to_leader", "timing", "s", 0, 1000, 0.01, "last", "time behind the leader")
    ch("gap_ahead", "timing", "s", 0, 1000, 0.01, "last", "time behind the car ahead")
    ch("last_lap_time", "timing", "s", 0, 600, 0.001, "last", "last lap time (0 before lap 1)")
    ch("best_lap_time", "timing", "s", 0, 600, 0.001, "last", "best lap time (0 before lap 1)")
    ch("laps_led", "timing", "lap", 0, 1000, 1, "last", "laps led")
    ch("pit_stops", "timing", "", 0, 50, 1, "last", "pit stops made")
    ch("laps_down", "timing", "lap", 0, 1000, 1, "last", "laps behind the leader")
    ch("pit_status", "timing", "", 0, 3, 1, "last", "0 on track, 1 pit road, 2 stalled, 3 out lap")
    ch("flag", "timing", "", 0, 4, 1, "last", "flag: 0 green 1 yellow 2 red 3 white 4 chequered")
    ch("sector", "timing", "", 0, 3, 1, "last", "current sector (0-3)")

    group("fuel", "fuel system")
    ch("fuel_level", "fuel", "gal", 0, 20, 0.01, "last", "fuel in the cell")
    ch("fuel_flow", "fuel", "gal/h", 0, 200, 0.1, "mean", "fuel flow to the engine")
    ch("fuel_used", "fuel", "gal", 0, 500, 0.01, "last", "fuel used since the start")
    ch("fuel_laps_left", "fuel", "lap", 0, 200, 0.1, "last", "laps left at the current burn")
    ch("fuel_temp", "fuel", "degC", -10, 80, 0.5, "mean", "fuel temperature")
    ch("fuel_mileage", "fuel", "mpg", 0, 20, 0.01, "mean", "fuel mileage over the last lap")

    group("electrical", "electrical system")
    ch("battery_voltage", "electrical", "V", 0, 18, 0.01, "mean", "battery voltage")
    ch("alternator_current", "electrical", "A", -50, 150, 0.5, "mean", "alternator current")
    ch("ecu_temp", "electrical", "degC", -20, 120, 0.5, "mean", "ECU temperature")
    ch("ecu_voltage", "electrical", "V", 0, 18, 0.01, "mean", "ECU supply voltage")
    ch("fan_current", "electrical", "A", 0, 40, 0.1, "mean", "cooling fan current")
    ch("radio_signal", "electrical", "dBm", -120, 0, 1, "mean", "radio signal strength")
    ch("logger_load", "electrical", "%", 0, 100, 1, "mean", "data logger CPU load")
    ch("ignition_on", "electrical", "", 0, 1, 1, "last", "ignition switched on")

    group("aero", "aerodynamics and draft")
    ch("airspeed", "aero", "mph", 0, 300, 0.1, "mean", "air speed at the nose")
    ch("draft_distance", "aero", "m", 0, 500, 0.1, "mean", "gap to the car ahead on track")
    ch("drag_reduction", "aero", "%", 0, 60, 0.1, "mean", "drag saved by the draft")
    ch("downforce_front", "aero", "N", 0, 20000, 10, "mean", "front downforce")
    ch("downforce_rear", "aero", "N", 0, 20000, 10, "mean", "rear downforce")
    ch("yaw_angle", "aero", "deg", -30, 30, 0.1, "mean", "aerodynamic yaw angle")

    group("driver", "driver biometrics (premium)", premium=True)
    ch("heart_rate", "driver", "bpm", 30, 230, 1, "mean", "driver heart rate")
    ch("breathing_rate", "driver", "1/min", 5, 80, 1, "mean", "driver breathing rate")
    ch("cockpit_temp", "driver", "degC", 0, 80, 0.5, "mean", "cockpit air temperature")
    ch("cool_suit_temp", "driver", "degC", 0, 40, 0.5, "mean", "cool-suit water temperature")
    ch("helmet_temp", "driver", "degC", 0, 60, 0.5, "mean", "air temperature in the helmet")
    ch("hydration", "driver", "ml", 0, 2000, 10, "last", "drink bottle left")

    return Catalogue(tuple(rows), info)


#: The catalogue every stage uses.
CATALOGUE: Catalogue = _build()
