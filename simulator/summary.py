"""The end-of-race summary, built from the race events (so a replay gets one too)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slipstream.records import RaceEvent

__all__ = ["RaceSummary", "SummaryBuilder"]


@dataclass(frozen=True, slots=True)
class RaceSummary:
    """What happened in a race, and how much was sent.

    Attributes:
        race: Race id.
        track: Track name and description.
        laps: Laps completed by the leader.
        race_time_s: Race time covered.
        finish: Car numbers in running order at the end (winner first).
        leaders: Car numbers that led a lap at the line, in order of first lead.
        lead_changes: Lead changes at the line.
        cautions: Yellow flags.
        incidents: Incidents.
        pit_stops: Pit stops of each car (car number -> stops).
        fastest_lap: (car, lap, seconds) of the fastest lap, or None.
        drivers: Car number -> driver name.
        end_reason: ``checkered``, ``duration`` or ``stopped``.
        records: Raw records sent (after faults).
        samples: Car-samples produced.
        wall_s: Wall-clock seconds the run took.
    """

    race: str
    track: str
    laps: int
    race_time_s: float
    finish: tuple[int, ...]
    leaders: tuple[int, ...]
    lead_changes: int
    cautions: int
    incidents: int
    pit_stops: dict[int, int]
    fastest_lap: tuple[int, int, float] | None
    drivers: dict[int, str] = field(default_factory=dict)
    end_reason: str = "stopped"
    records: int = 0
    samples: int = 0
    wall_s: float = 0.0

    def _name(self, car: int) -> str:
        driver = self.drivers.get(car)
        return f"#{car} {driver}" if driver else f"#{car}"

    def format(self) -> str:
        """A short human summary, several lines."""
        stops = sum(self.pit_stops.values())
        lines = [
            f"race {self.race} ({self.track}): {self.laps} laps in {self.race_time_s:.0f} s "
            f"of race time, ended by {self.end_reason}",
        ]
        if self.finish:
            top = ", ".join(self._name(c) for c in self.finish[:5])
            lines.append(f"  winner {self._name(self.finish[0])}; top 5: {top}")
        lines.append(
            f"  leaders: {len(self.leaders)} ({', '.join(f'#{c}' for c in self.leaders[:12])}"
            f"{', ...' if len(self.leaders) > 12 else ''}); lead changes: {self.lead_changes}"
        )
        lines.append(
            f"  cautions: {self.cautions}; incidents: {self.incidents}; pit stops: {stops} "
            f"({len(self.pit_stops)} cars)"
        )
        if self.fastest_lap is not None:
            car, lap, seconds = self.fastest_lap
            lines.append(f"  fastest lap: {self._name(car)}, lap {lap}, {seconds:.3f} s")
        if self.wall_s > 0:
            multiple = self.race_time_s / self.wall_s
            samples = f", {self.samples} car-samples" if self.samples else ""
            lines.append(
                f"  sent {self.records} records{samples} in {self.wall_s:.1f} s "
                f"({multiple:.1f}x real time)"
            )
        return "\n".join(lines)


class SummaryBuilder:
    """Folds race events into a :class:`RaceSummary`."""

    def __init__(self) -> None:
        self.race = ""
        self.track = ""
        self.drivers: dict[int, str] = {}
        self.leaders: list[int] = []
        self.lead_changes = 0
        self.cautions = 0
        self.incidents = 0
        self.pit_stops: dict[int, int] = {}
        self.fastest: tuple[int, int, float] | None = None
        self.laps = 0
        self.last_t_ns = 0
        self.finish: tuple[int, ...] = ()
        self.end_reason = "stopped"
        self._positions: dict[int, int] = {}
        self._flag = "green"

    def add(self, event: RaceEvent) -> None:
        """Take one event into account."""
        data: dict[str, Any] = event.data
        self.race = event.race
        self.last_t_ns = max(self.last_t_ns, event.t_ns)
        kind = event.kind
        if kind == "race_start":
            self.track = f"{data.get('track', '?')}, {data.get('title', '')}".rstrip(", ")
            for entry in data.get("entries", []):
                self.drivers[int(entry["car"])] = str(entry["driver"])
        elif kind == "lap":
            car, lap, seconds = event.cars[0], int(data["lap"]), float(data["lap_time_s"])
            self.laps = max(self.laps, lap)
            self._positions[car] = int(data.get("position", 0))
            if self.fastest is None or seconds < self.fastest[2]:
                self.fastest = (car, lap, seconds)
            if not self.leaders and int(data.get("position", 0)) == 1:
                self.leaders.append(car)
        elif kind == "lead_change":
            self.lead_changes += 1
            if not self.leaders:
                self.leaders.append(event.cars[1])
            if event.cars[0] not in self.leaders:
                self.leaders.append(event.cars[0])
        elif kind == "flag":
            # A caution starts at a yellow from green (not back from a red flag).
            if data.get("flag") == "yellow" and self._flag in ("green", "white"):
                self.cautions += 1
            self._flag = str(data.get("flag"))
        elif kind == "incident":
            self.incidents += 1
        elif kind == "pit_out":
            for car in event.cars:
                self.pit_stops[car] = self.pit_stops.get(car, 0) + 1
        elif kind == "race_end":
            self.end_reason = str(data.get("reason", "stopped"))
            self.finish = tuple(int(c) for c in data.get("order", ()))
            self.laps = max(self.laps, int(data.get("laps", 0)))

    def result(
        self,
        records: int = 0,
        samples: int = 0,
        wall_s: float = 0.0,
        race_time_s: float | None = None,
    ) -> RaceSummary:
        """The summary so far (``race_time_s`` defaults to the last event's time)."""
        finish = self.finish or tuple(sorted(self._positions, key=lambda c: self._positions[c]))
        return RaceSummary(
            race=self.race,
            track=self.track,
            laps=self.laps,
            race_time_s=self.last_t_ns / 1e9 if race_time_s is None else race_time_s,
            finish=finish,
            leaders=tuple(self.leaders),
            lead_changes=self.lead_changes,
            cautions=self.cautions,
            incidents=self.incidents,
            pit_stops=dict(sorted(self.pit_stops.items())),
            fastest_lap=self.fastest,
            drivers=dict(self.drivers),
            end_reason=self.end_reason,
            records=records,
            samples=samples,
            wall_s=wall_s,
        )
