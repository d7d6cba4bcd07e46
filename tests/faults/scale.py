"""Scale of the fault suite: ``SLIPSTREAM_FAULT_SCALE=ci`` (default) or ``full``.

Single figures can be overridden with ``SLIPSTREAM_FAULT_<FIELD>`` (upper case),
e.g. ``SLIPSTREAM_FAULT_CUT_FANS=300``.  docs/resilience.md has the full-scale
command and its figures.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FaultScale:
    name: str
    #: simulator: cars, samples per second per car, multiple of real time
    cars: int
    rate_hz: int
    speed: float
    #: fault 3: fans behind the proxy; short and long cuts (s); replay ring (ticks)
    cut_fans: int
    cut_short_s: float
    cut_long_s: float
    replay_ticks: int
    #: fault 1: fans downstream of the downsampler that is killed
    kill_fans: int
    #: fault 2: fans on the node that is killed
    failover_fans: int
    #: fault 5: how long the broker is unreachable (s)
    broker_outage_s: float
    #: fault 4: fans that reconnect at once, and the window they reconnect in (s)
    storm_fans: int
    storm_window_s: float
    #: soak: race seconds, its multiple of real time, fans, samples per second per car
    soak_race_s: float
    soak_speed: float
    soak_fans: int
    soak_rate_hz: int


CI = FaultScale(
    name="ci", cars=8, rate_hz=50, speed=2.0,
    cut_fans=40, cut_short_s=1.0, cut_long_s=3.0, replay_ticks=24,
    kill_fans=30, failover_fans=100, broker_outage_s=12.0,
    storm_fans=300, storm_window_s=1.0, soak_race_s=60.0, soak_speed=4.0, soak_fans=50,
    soak_rate_hz=50,
)  # fmt: skip
FULL = FaultScale(
    name="full", cars=20, rate_hz=100, speed=1.0,
    cut_fans=1000, cut_short_s=1.0, cut_long_s=30.0, replay_ticks=80,
    kill_fans=1000, failover_fans=1000, broker_outage_s=20.0,
    storm_fans=5000, storm_window_s=1.0, soak_race_s=1800.0, soak_speed=3.0, soak_fans=1000,
    soak_rate_hz=50,
)  # fmt: skip


def scale() -> FaultScale:
    """The scale chosen by the environment."""
    name = os.environ.get("SLIPSTREAM_FAULT_SCALE", "ci")
    if name not in ("ci", "full"):
        raise ValueError(f"SLIPSTREAM_FAULT_SCALE must be ci or full, got {name!r}")
    base = CI if name == "ci" else FULL
    changes: dict[str, object] = {}
    for f in dataclasses.fields(base):
        raw = os.environ.get(f"SLIPSTREAM_FAULT_{f.name.upper()}")
        if raw is not None and f.name != "name":
            changes[f.name] = type(getattr(base, f.name))(raw)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def record(fault: str, figures: dict[str, object]) -> None:
    """Print a fault's figures as one JSON line; also append it to ``$SLIPSTREAM_FAULT_REPORT``."""
    import json

    line = json.dumps({"fault": fault, "scale": scale().name, **figures}, default=str)
    print(line)
    path = os.environ.get("SLIPSTREAM_FAULT_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(line + "\n")
