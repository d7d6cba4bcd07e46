"""Track geometry: centre line, curvature, banking, map and GPS, speed profile.

A track is a closed oval built from its curvature along the centre line:
straights (curvature 0), 180-degree turns of radius ``R`` entered and left
through linear transitions (clothoids), integrated to heading and to an x/y
map in metres.  Everything is tabulated on a grid of ``GRID_M`` metres and
looked up by distance from the start/finish line.

Positive curvature turns left (cars run counter-clockwise, as on US ovals);
positive lateral offset ("lane") is to the left of the direction of travel,
towards the infield where pit road lies.

The reference speed profile is what a median car on fresh tyres, alone on the
track, does: corner speed from banked-turn grip, capped by a drag-limited top
speed, joined by acceleration and braking limits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

__all__ = ["GRID_M", "TRACKS", "Track", "TrackSpec", "build_track", "get_track"]

#: Spacing of the tabulated geometry, metres.
GRID_M = 1.0
G = 9.80665
MPH = 0.44704


@dataclass(frozen=True, slots=True)
class TrackSpec:
    """The parameters of an oval.

    Attributes:
        name: Short name (used in race ids).
        title: Name for people.
        length_m: Lap length along the centre line.
        turn_radius_m: Radius of the turns at their apex.
        transition_m: Length of each curvature ramp into and out of a turn.
        banking_turn_deg: Banking in the turns.
        banking_straight_deg: Banking on the straights.
        grip: Effective tyre friction coefficient (with downforce).
        top_speed_mps: Drag-limited speed of a car alone.
        accel_mps2: Full-throttle acceleration from low speed.
        brake_mps2: Maximum braking deceleration.
        corner_drag: Fraction of speed scrubbed at the apex of a flat-out turn.
        draft_gain: Speed gained right behind another car (fraction).
        pace_speed_mps: Pace car speed under caution.
        pit_speed_mps: Pit-road speed limit.
        laps: Default race length.
        tyre_wear_per_km: Fraction of tread worn per km at racing load.
        fuel_gal_per_km: Fuel burnt per km at full throttle.
        cautions_per_hour: Hazard of an incident under green, per hour of racing.
        lat0_deg: GPS latitude of the map origin.
        lon0_deg: GPS longitude of the map origin.
        alt_m: Altitude of the track.
    """

    name: str
    title: str
    length_m: float
    turn_radius_m: float
    transition_m: float
    banking_turn_deg: float
    banking_straight_deg: float
    grip: float
    top_speed_mps: float
    accel_mps2: float
    brake_mps2: float
    corner_drag: float
    draft_gain: float
    pace_speed_mps: float
    pit_speed_mps: float
    laps: int
    tyre_wear_per_km: float
    fuel_gal_per_km: float
    cautions_per_hour: float
    lat0_deg: float
    lon0_deg: float
    alt_m: float


TRACKS: dict[str, TrackSpec] = {
    "daytona": TrackSpec(
        "daytona", "superspeedway, 2.5 mi", 4023.4, 305.0, 150.0, 31.0, 3.0,
        1.0, 85.0, 6.0, 14.0, 0.025, 0.035, 40.0, 24.6, 200,
        0.0006, 0.11, 4.0, 29.1852, -81.0705, 10.0,
    ),
    "charlotte": TrackSpec(
        "charlotte", "intermediate oval, 1.5 mi", 2414.0, 200.0, 100.0, 24.0, 5.0,
        1.13, 92.0, 7.0, 14.0, 0.01, 0.012, 35.0, 20.1, 267,
        0.0011, 0.15, 4.5, 35.3525, -80.6833, 210.0,
    ),
    "martinsville": TrackSpec(
        "martinsville", "short track, 0.526 mi", 846.5, 50.8, 20.0, 12.0, 0.0,
        1.35, 58.0, 12.0, 20.0, 0.0, 0.004, 18.0, 13.4, 500,
        0.0045, 0.19, 6.0, 36.6341, -79.8517, 250.0,
    ),
}  # fmt: skip


@dataclass(frozen=True, eq=False)
class Track:
    """A tabulated oval; arrays are indexed by grid point ``round(s / GRID_M)``.

    Attributes:
        spec: The parameters it was built from.
        points: Number of grid points (the lap length in grid steps).
        curvature: Curvature of the centre line, 1/m, shape (points,).
        banking_rad: Banking angle, shape (points,).
        heading_rad: Direction of travel, counter-clockwise from +x, shape (points,).
        x_m: Map x of the centre line, shape (points,).
        y_m: Map y of the centre line, shape (points,).
        speed_mps: Reference speed profile, shape (points,).
        lap_time_s: Lap time of the reference profile.
    """

    spec: TrackSpec
    points: int
    curvature: NDArray[np.float64]
    banking_rad: NDArray[np.float64]
    heading_rad: NDArray[np.float64]
    x_m: NDArray[np.float64]
    y_m: NDArray[np.float64]
    speed_mps: NDArray[np.float64]
    lap_time_s: float
    pit_entry_m: float = field(default=0.0)
    pit_exit_m: float = field(default=0.0)

    @property
    def name(self) -> str:
        """Short name."""
        return self.spec.name

    @property
    def length_m(self) -> float:
        """Lap length, metres."""
        return self.points * GRID_M

    def index(self, lap_distance_m: NDArray[np.float64]) -> NDArray[np.intp]:
        """Grid index of distances in [0, length), any shape (no negative distances)."""
        idx = (lap_distance_m * (1.0 / GRID_M)).astype(np.intp)
        np.minimum(idx, self.points - 1, out=idx)
        return idx

    def gps(
        self, x_m: NDArray[np.float64], y_m: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Latitude and longitude in degrees of map points (local flat-earth projection)."""
        lat0 = self.spec.lat0_deg
        lat = lat0 + y_m * (1.0 / 111_320.0)
        lon = self.spec.lon0_deg + x_m * (1.0 / (111_320.0 * math.cos(math.radians(lat0))))
        return lat, lon


def _curvature(spec: TrackSpec, points: int) -> NDArray[np.float64]:
    k0 = 1.0 / spec.turn_radius_m
    ramp = spec.transition_m
    turn_const = math.pi * spec.turn_radius_m - ramp  # constant-radius arc length
    if turn_const <= 0:
        raise ValueError(f"track {spec.name}: transitions too long for the turn radius")
    turn = turn_const + 2 * ramp
    straight = (spec.length_m - 2 * turn) / 2
    if straight <= 0:
        raise ValueError(f"track {spec.name}: turns longer than the lap")
    s = (np.arange(points) + 0.5) * GRID_M
    # Lap starts in the middle of the front straight.
    pos = np.mod(s + straight / 2, straight + turn)

    def in_turn(u: NDArray[np.float64]) -> NDArray[np.float64]:
        t = u - straight
        k = np.where(t < ramp, t / ramp, np.where(t < ramp + turn_const, 1.0, (turn - t) / ramp))
        return np.where(t < 0, 0.0, k * k0)

    return in_turn(pos)


def _speed_profile(
    spec: TrackSpec, curvature: NDArray[np.float64], banking: NDArray[np.float64]
) -> NDArray[np.float64]:
    tan_b = np.tan(banking)
    mu = spec.grip
    a_lat = G * (mu + tan_b) / np.maximum(1 - mu * tan_b, 0.05)
    corner = np.sqrt(a_lat / np.maximum(curvature, 1e-9))
    k_rel = curvature / curvature.max()
    top = spec.top_speed_mps * (1.0 - spec.corner_drag * k_rel)
    limit = np.minimum(corner, top)
    v = limit.copy()
    n = len(v)
    # Forward (acceleration) and backward (braking) passes, twice round the lap.
    for _ in range(2):
        for i in range(1, 2 * n):
            j, p = i % n, (i - 1) % n
            vp = v[p]
            acc = spec.accel_mps2 * max(0.0, 1.0 - (vp / spec.top_speed_mps) ** 2)
            v[j] = min(v[j], math.sqrt(vp * vp + 2 * acc * GRID_M))
        for i in range(2 * n - 2, -1, -1):
            j, nx = i % n, (i + 1) % n
            v[j] = min(v[j], math.sqrt(v[nx] * v[nx] + 2 * spec.brake_mps2 * GRID_M))
    return np.asarray(v, dtype=np.float64)


def build_track(spec: TrackSpec) -> Track:
    """Tabulate a track from its parameters."""
    points = round(spec.length_m / GRID_M)
    k = _curvature(spec, points)
    k *= 2 * math.pi / (k.sum() * GRID_M)  # exactly one turn per lap
    heading = np.cumsum(k) * GRID_M - k * GRID_M / 2
    dx = np.cos(heading) * GRID_M
    dy = np.sin(heading) * GRID_M
    # Remove the small closure error of the discrete integration.
    dx -= dx.sum() / points
    dy -= dy.sum() / points
    x = np.concatenate(([0.0], np.cumsum(dx)[:-1]))
    y = np.concatenate(([0.0], np.cumsum(dy)[:-1]))
    x -= (x.max() + x.min()) / 2
    y -= (y.max() + y.min()) / 2
    k_rel = k / k.max()
    banking = np.radians(
        spec.banking_straight_deg + (spec.banking_turn_deg - spec.banking_straight_deg) * k_rel
    )
    speed = _speed_profile(spec, k, banking)
    lap_time = float(np.sum(GRID_M / speed))
    length = points * GRID_M
    return Track(
        spec=spec,
        points=points,
        curvature=k,
        banking_rad=banking,
        heading_rad=np.mod(heading, 2 * math.pi),
        x_m=x,
        y_m=y,
        speed_mps=speed,
        lap_time_s=lap_time,
        pit_entry_m=length - 0.12 * length,
        pit_exit_m=0.10 * length,
    )


_CACHE: dict[str, Track] = {}


def get_track(name: str) -> Track:
    """The built track called ``name`` (cached).

    Raises:
        KeyError: No such track.
    """
    track = _CACHE.get(name)
    if track is None:
        track = _CACHE[name] = build_track(TRACKS[name])
    return track
