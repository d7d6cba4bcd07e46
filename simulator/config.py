"""Configuration of the simulator, from flags (shared by ``simulate`` and ``run``)."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, fields
from typing import Any

from simulator.track import TRACKS
from slipstream.errors import ConfigError

__all__ = ["SimulatorConfig", "add_simulator_arguments"]


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """What race to simulate and how to send it.

    Attributes:
        cars: Field size, 1-99.
        rate_hz: Samples per second per car, 10-1000.
        speed: Multiple of real time; 0 = as fast as possible.
        track: Track name (see :data:`simulator.track.TRACKS`).
        seed: Seed of the race; the same seed gives a byte-identical stream.
        duration_s: Stop after this much race time (None = run the race to its end).
        laps: Race length in laps (None = the track's usual distance).
        batch_ms: Length of one record's batch of samples, per car.
        dup_rate: Fraction of records sent twice.
        reorder_rate: Fraction of records sent after the car's next record.
        corrupt_rate: Fraction of records whose bytes are damaged.
        dropout_rate: Fraction of records with sensor dropouts (NaN values).
        silent_car: Number of a car that stops sending (None = none).
        silent_after_s: Race time at which ``silent_car`` goes silent.
        physics_hz: Rate of the internal physics step.
    """

    cars: int = 40
    rate_hz: int = 120
    speed: float = 1.0
    track: str = "daytona"
    seed: int = 1
    duration_s: float | None = None
    laps: int | None = None
    batch_ms: int = 100
    dup_rate: float = 0.0
    reorder_rate: float = 0.0
    corrupt_rate: float = 0.0
    dropout_rate: float = 0.0
    silent_car: int | None = None
    silent_after_s: float = 30.0
    physics_hz: int = 10

    def __post_init__(self) -> None:
        if not 1 <= self.cars <= 99:
            raise ConfigError(
                f"--cars must be between 1 and 99 (car numbers are 1-99), got {self.cars}"
            )
        if not 10 <= self.rate_hz <= 1000:
            raise ConfigError(f"--rate must be between 10 and 1000 Hz, got {self.rate_hz}")
        if not math.isfinite(self.speed) or self.speed < 0:
            raise ConfigError(
                f"--speed must be 0 (flat out) or a positive multiple of real time, "
                f"got {self.speed}"
            )
        if self.track not in TRACKS:
            raise ConfigError(f"unknown --track {self.track!r}; known tracks: {', '.join(TRACKS)}")
        if self.seed < 0:
            raise ConfigError(f"--seed must be 0 or more, got {self.seed}")
        if self.duration_s is not None and not (
            math.isfinite(self.duration_s) and self.duration_s > 0
        ):
            raise ConfigError(
                f"--duration must be a positive number of seconds, got {self.duration_s}"
            )
        if self.laps is not None and not 1 <= self.laps <= 1000:
            raise ConfigError(f"--laps must be between 1 and 1000, got {self.laps}")
        if not 10 <= self.batch_ms <= 1000:
            raise ConfigError(f"--batch-ms must be between 10 and 1000, got {self.batch_ms}")
        for name in ("dup_rate", "reorder_rate", "corrupt_rate", "dropout_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} is a fraction of records, between 0 and 1; got {value}")
        if self.silent_car is not None and not 1 <= self.silent_car <= 99:
            raise ConfigError(f"--silent-car must be a car number 1-99, got {self.silent_car}")
        if not (math.isfinite(self.silent_after_s) and self.silent_after_s >= 0):
            raise ConfigError(
                f"--silent-after must be 0 or more seconds, got {self.silent_after_s}"
            )
        if not 5 <= self.physics_hz <= 200:
            raise ConfigError(
                f"the physics rate must be between 5 and 200 Hz, got {self.physics_hz}"
            )

    @property
    def race_id(self) -> str:
        """Deterministic race id from track and seed, e.g. ``daytona-42``."""
        return f"{self.track}-{self.seed}"

    @property
    def race_laps(self) -> int:
        """Race length in laps."""
        return self.laps if self.laps is not None else TRACKS[self.track].laps

    @property
    def samples_per_batch(self) -> int:
        """Samples in one record."""
        return max(1, round(self.rate_hz * self.batch_ms / 1000))

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SimulatorConfig:
        """Build from the flags added by :func:`add_simulator_arguments`."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            if hasattr(args, f"sim_{f.name}"):
                value = getattr(args, f"sim_{f.name}")
                # A flag left unset (None) keeps the field's default.
                if value is not None or f.default is None:
                    values[f.name] = value
        return cls(**values)


def add_simulator_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every simulator flag to ``parser`` (destinations are prefixed ``sim_``)."""
    group = parser.add_argument_group("race simulator")
    add = group.add_argument
    add(
        "--track",
        dest="sim_track",
        metavar="NAME",
        default="daytona",
        help=f"track: {', '.join(f'{k} ({v.title})' for k, v in TRACKS.items())} (default daytona)",
    )
    add(
        "--cars",
        dest="sim_cars",
        metavar="N",
        type=int,
        default=40,
        help="field size, 1-99 (default 40)",
    )
    add(
        "--rate",
        dest="sim_rate_hz",
        type=int,
        default=120,
        metavar="HZ",
        help="samples per second per car, 10-1000 (default 120)",
    )
    add(
        "--speed",
        dest="sim_speed",
        type=float,
        default=None,
        metavar="X",
        help="multiple of real time; 0 = as fast as possible (default 1)",
    )
    add(
        "--seed",
        dest="sim_seed",
        metavar="SEED",
        type=int,
        default=1,
        help="race seed; the same seed gives a byte-identical stream (default 1)",
    )
    add(
        "--duration",
        dest="sim_duration_s",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop after this much race time (default: run the whole race)",
    )
    add(
        "--laps",
        dest="sim_laps",
        metavar="N",
        type=int,
        default=None,
        help="race length in laps (default: the track's usual distance)",
    )
    add(
        "--batch-ms",
        dest="sim_batch_ms",
        type=int,
        default=100,
        metavar="MS",
        help="samples of one car per record, as milliseconds of race time (default 100)",
    )
    for name, what in (
        ("dup", "sent twice"),
        ("reorder", "sent after the same car's next record"),
        ("corrupt", "with damaged bytes"),
        ("dropout", "with sensor dropouts (NaN values)"),
    ):
        add(
            f"--{name}-rate",
            dest=f"sim_{name}_rate",
            type=float,
            default=0.0,
            metavar="FRACTION",
            help=f"fault injection: fraction of records {what} (default 0)",
        )
    add(
        "--silent-car",
        dest="sim_silent_car",
        type=int,
        default=None,
        metavar="CAR",
        help="fault injection: this car number stops sending records (default none)",
    )
    add("--silent-after", dest="sim_silent_after_s", type=float, default=30.0, metavar="SECONDS",
        help="race time at which --silent-car goes silent (default 30)")  # fmt: skip
