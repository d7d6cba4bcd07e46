"""Race events: flag codes, pit states and the event log the race model fills.

Kinds (``RaceEvent.kind``) and their ``data``:

* ``race_start``: ``track``, ``title``, ``length_m``, ``laps``, ``entries``
  (list of ``{"car", "driver", "team"}`` in starting order), ``outline`` (200
  ``[x, y]`` map points of the centre line, metres, from the start line in the
  direction of travel), ``pit_entry_m`` and ``pit_exit_m`` (lap distances).
* ``flag``: ``flag`` (green, yellow, red, white, checkered), ``lap`` (leader's
  laps completed).
* ``pit_in`` / ``pit_out``: ``lap``; ``pit_out`` adds ``stationary_s``.
* ``lap``: one per car and completed lap: ``lap``, ``lap_time_s``, ``position``.
* ``lead_change``: ``cars`` = (new leader, previous leader), ``lap``; decided
  at the start/finish line like official scoring.
* ``incident``: ``cars`` involved, ``lap``, ``lap_distance_m``, ``retired``.
* ``race_end``: ``reason`` (checkered, duration), ``laps``, ``order`` (car
  numbers in finishing order).
"""

from __future__ import annotations

from typing import Any

from slipstream.records import RaceEvent

__all__ = [
    "CHECKERED",
    "FLAG_NAMES",
    "GREEN",
    "PIT_OUT_LAP",
    "PIT_ROAD",
    "PIT_STALLED",
    "PIT_TRACK",
    "RED",
    "WHITE",
    "YELLOW",
    "EventLog",
]

GREEN, YELLOW, RED, WHITE, CHECKERED = 0, 1, 2, 3, 4
FLAG_NAMES = ("green", "yellow", "red", "white", "checkered")

PIT_TRACK, PIT_ROAD, PIT_STALLED, PIT_OUT_LAP = 0, 1, 2, 3


class EventLog:
    """Collects the events of a race in time order; :meth:`drain` returns and clears."""

    def __init__(self, race: str) -> None:
        self.race = race
        self._events: list[RaceEvent] = []

    def add(self, t_s: float, kind: str, cars: tuple[int, ...] = (), **data: Any) -> None:
        """Record one event at race time ``t_s`` (seconds)."""
        self._events.append(RaceEvent(self.race, round(t_s * 1e9), kind, cars, data))

    def drain(self) -> list[RaceEvent]:
        """The events recorded since the last call, sorted by time (stable)."""
        events = sorted(self._events, key=lambda e: e.t_ns)
        self._events = []
        return events
