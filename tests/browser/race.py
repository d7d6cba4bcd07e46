"""A small, deterministic race written straight to the frames and events topics.

It stands in for simulate -> ingest -> downsample in the browser tests: a field
of cars on an oval whose pace drifts, so the order, the gaps and the map change,
tyres heat up, pedals and g follow the track; plus race_start (entry list with
drivers), flags, laps, lead changes and pit stops.  Ticks are written at
``ticks_per_s`` of wall time (2 = real time).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any

import numpy as np

from slipstream.bus import Bus
from slipstream.catalogue import CATALOGUE
from slipstream.config import EVENTS_TOPIC, FRAMES_TOPIC
from slipstream.records import TICK_NS, Frame, RaceEvent, car_key, encode_event, encode_frame

LENGTH_M = 2400.0
_INDEX = {c.name: i for i, c in enumerate(CATALOGUE)}
_FIRST = ("Ana", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun")
_LAST = ("Moreno", "Okafor", "Lindqvist", "Tanaka", "Rossi", "Novak", "Haddad", "Silva")


class SyntheticRace:
    """A race of ``cars`` cars on ``bus`` (see module doc)."""

    def __init__(
        self,
        bus: Bus,
        race: str = "test-race",
        cars: int = 40,
        laps: int = 50,
        ticks_per_s: float = 8.0,
        seed: int = 7,
    ) -> None:
        self.bus = bus
        self.race = race
        self.numbers = [int(n) for n in 2 + np.arange(cars) * 2]
        self.laps = laps
        self.ticks_per_s = ticks_per_s
        rng = np.random.default_rng(seed)
        n = cars
        self.pace = 62.0 + rng.normal(0, 0.6, n)
        self.phase = rng.uniform(0, 2 * math.pi, n)
        self.period_s = rng.uniform(15, 40, n)
        self.dist = -np.arange(n) * 9.0
        self.tyre = np.full((4, n), 55.0)
        self.lap_start = np.zeros(n)
        self.last_lap = np.zeros(n)
        self.pit_until = np.full(n, -1.0)
        self.leader = -1
        self.tick = -1
        self.ticks_written = 0
        self._task: asyncio.Task[None] | None = None
        self._producer: Any = None
        self.entries = [
            {
                "car": car,
                "driver": f"{_FIRST[i % len(_FIRST)]} {_LAST[(i * 3) % len(_LAST)]}",
                "team": f"Team {i % 8 + 1}",
            }
            for i, car in enumerate(self.numbers)
        ]

    async def __aenter__(self) -> SyntheticRace:
        await self.bus.ensure_topic(FRAMES_TOPIC, 4)
        await self.bus.ensure_topic(EVENTS_TOPIC, 1)
        self._producer = await self.bus.producer()
        self._task = asyncio.create_task(self._run(), name="synthetic-race")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()

    async def _event(self, t_s: float, kind: str, cars: tuple[int, ...] = (), **data: Any) -> None:
        event = RaceEvent(self.race, int(t_s * 1e9) + 1, kind, cars, data)
        await self._producer.send(EVENTS_TOPIC, encode_event(event), key=self.race.encode())

    async def _run(self) -> None:
        await self._event(0, "race_start", (), track="Test Oval", title="Slipstream Test 50",
                          length_m=LENGTH_M, laps=self.laps, entries=self.entries)  # fmt: skip
        await self._event(0, "flag", (), flag="green", lap=0)
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            self.tick += 1
            await self._step(self.tick)
            self.ticks_written += 1
            await asyncio.sleep(max(0.0, start + (self.tick + 1) / self.ticks_per_s - loop.time()))

    async def _step(self, tick: int) -> None:
        dt = TICK_NS / 1e9
        t = (tick + 1) * dt
        n = len(self.numbers)
        u = np.mod(self.dist, LENGTH_M) / LENGTH_M
        in_turn = np.abs(np.sin(2 * math.pi * u)) > 0.7
        pace = self.pace + 3.0 * np.sin(2 * math.pi * t / self.period_s + self.phase)
        speed = np.where(in_turn, pace * 0.88, pace * 1.08)
        pitting = self.pit_until > t
        speed = np.where(pitting, 20.0, speed)
        before = self.dist.copy()
        self.dist = self.dist + speed * dt
        events: list[tuple[str, tuple[int, ...], dict[str, Any]]] = []
        laps_before = np.floor(before / LENGTH_M)
        laps_now = np.floor(self.dist / LENGTH_M)
        order = np.argsort(-self.dist, kind="stable")
        position = np.empty(n, dtype=np.int64)
        position[order] = np.arange(1, n + 1)
        for i in np.nonzero(laps_now > laps_before)[0].tolist():
            lap = int(laps_now[i])
            if lap >= 1:
                self.last_lap[i] = t - self.lap_start[i]
                events.append(("lap", (self.numbers[i],), {"lap": lap, "lap_time_s": round(
                    float(self.last_lap[i]), 3), "position": int(position[i])}))  # fmt: skip
            self.lap_start[i] = t
            if lap >= 1 and (lap + i) % 7 == 0 and not pitting[i]:
                self.pit_until[i] = t + 6.0
                events.append(("pit_in", (self.numbers[i],), {"lap": lap}))
        for i in np.nonzero((self.pit_until > 0) & (self.pit_until <= t))[0].tolist():
            self.pit_until[i] = -1.0
            events.append(("pit_out", (self.numbers[i],), {"lap": int(laps_now[i]),
                                                             "stationary_s": 4.5}))  # fmt: skip
        leader = int(order[0])
        if leader != self.leader:
            if self.leader >= 0:
                events.append(("lead_change", (self.numbers[leader], self.numbers[self.leader]),
                               {"lap": int(laps_now[leader])}))  # fmt: skip
            self.leader = leader
        # Tyres heat towards a working temperature that rises with speed and load.
        target = 70 + 0.45 * speed + np.where(in_turn, 18.0, 0.0)
        load = np.array([0.9, 1.2, 0.85, 1.05])[:, None]
        self.tyre += (target * load - self.tyre) * 0.04
        values = self._channels(t, speed, in_turn, position, laps_now, pitting, order)
        q = CATALOGUE.quantise(values)
        items = [
            (car_key(car), encode_frame(Frame(self.race, tick, car, q[i], 25)))
            for i, car in enumerate(self.numbers)
        ]
        await self._producer.send_many(FRAMES_TOPIC, items)
        for kind, cars, data in events:
            await self._event(tick * dt, kind, cars, **data)

    def _channels(
        self,
        t: float,
        speed: np.ndarray,
        in_turn: np.ndarray,
        position: np.ndarray,
        laps: np.ndarray,
        pitting: np.ndarray,
        order: np.ndarray,
    ) -> np.ndarray:
        n = len(self.numbers)
        out = np.full((n, len(CATALOGUE)), np.nan)

        def put(name: str, value: Any) -> None:
            out[:, _INDEX[name]] = value

        theta = 2 * math.pi * np.mod(self.dist, LENGTH_M) / LENGTH_M
        lead = self.dist[order[0]]
        mph = speed * 2.23694
        put("speed", mph)
        put("track_x", 800 * np.cos(theta))
        put("track_y", 380 * np.sin(theta))
        put("lap_distance", np.mod(self.dist, LENGTH_M))
        put("heading", np.mod(np.degrees(theta) + 90, 360))
        put("throttle", np.where(in_turn, 55.0, 100.0) - 10 * np.sin(theta * 3) ** 2)
        put("brake", np.where(in_turn, 18.0 + 10 * np.cos(theta * 5) ** 2, 0.0))
        put("gear", np.clip(np.floor(mph / 35), 1, 6))
        put("rpm", np.clip(2500 + (mph % 35) * 180 + 1500, 0, 9900))
        put("g_lat", np.where(in_turn, speed**2 / 300 / 9.81, 0.05 * np.sin(theta * 7)))
        put("g_long", np.where(in_turn, -0.4, 0.3))
        put("lap", np.maximum(laps, 0) + 1)
        put("lap_fraction", np.mod(self.dist, LENGTH_M) / LENGTH_M)
        put("race_position", position)
        gap = np.maximum(0.0, (lead - self.dist) / np.maximum(speed, 1.0))
        put("gap_to_leader", gap)
        put("laps_down", np.floor((lead - self.dist) / LENGTH_M))
        put("last_lap_time", np.where(self.last_lap > 0, self.last_lap, np.nan))
        put("pit_status", np.where(pitting, 1, 0))
        put("flag", 0)
        for k, corner in enumerate(("lf", "rf", "lr", "rr")):
            for b, band in enumerate(("inner", "middle", "outer")):
                put(f"tyre_temp_{corner}_{band}", self.tyre[k] + (4 - 4 * b))
            put(f"tyre_pressure_{corner}", 150 + 0.8 * self.tyre[k])
        del t
        return out
