"""The entry list: car numbers, drivers and teams, drawn from the seed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Entry", "make_entries"]

_FIRST = (
    "Alex", "Blake", "Casey", "Dale", "Eli", "Finn", "Grace", "Hank", "Ivy", "Jett",
    "Kyle", "Lena", "Mason", "Nora", "Owen", "Parker", "Quinn", "Riley", "Sam", "Tess",
    "Uma", "Vince", "Wade", "Xavi", "Yara", "Zane", "Bubba", "Chase", "Denny", "Erik",
)  # fmt: skip
_LAST = (
    "Allison", "Baker", "Carter", "Dawson", "Ellis", "Foster", "Garrett", "Hayes",
    "Irwin", "Jarrett", "Keller", "Logan", "Marlin", "Nash", "Owens", "Petty", "Quarles",
    "Rudd", "Sadler", "Turner", "Underwood", "Vaughn", "Waltrip", "Yates", "Zeller",
    "Bodine", "Craven", "Labonte", "Wallace", "Burton", "Harvick", "Kenseth", "Martin",
)  # fmt: skip
_TEAMS = (
    "Apex Motorsports", "Blue Oval Racing", "Crescent Racing", "Delta Speed",
    "Eagle Point", "Firebird Racing", "Granite State Motorsports", "Harbor Racing",
    "Ironworks Racing", "Junction Motorsports", "Keystone Racing", "Lone Star Speed",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Entry:
    """One car of the field.

    Attributes:
        car: Car number (1-99, unique in the field).
        driver: Driver name.
        team: Team name.
    """

    car: int
    driver: str
    team: str

    def to_json(self) -> dict[str, object]:
        """The entry as a plain object (the ``race_start`` event form)."""
        return {"car": self.car, "driver": self.driver, "team": self.team}


def make_entries(cars: int, rng: np.random.Generator) -> tuple[Entry, ...]:
    """Draw ``cars`` entries with unique numbers and driver names.

    Raises:
        ValueError: ``cars`` is not within 1..99.
    """
    if not 1 <= cars <= 99:
        raise ValueError(f"a field holds 1 to 99 cars, got {cars}")
    numbers = rng.choice(np.arange(1, 100), size=cars, replace=False)
    pairs = [(f, last) for f in _FIRST for last in _LAST]
    picks = rng.choice(len(pairs), size=cars, replace=False)
    teams = rng.integers(0, len(_TEAMS), size=cars)
    return tuple(
        Entry(int(n), f"{pairs[p][0]} {pairs[p][1]}", _TEAMS[t])
        for n, p, t in zip(numbers, picks, teams, strict=True)
    )
