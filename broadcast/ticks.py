"""Tick assembly: frames and race events in, whole ticks out, in order (pure core).

Frames arrive per partition in tick order, partitions interleaved.  Tick ``T``
of the current race is emitted once every expected car (the race_start entry
list plus every car seen, minus cars that went quiet) has sent its frame for
``T`` or its partition has moved past ``T``; or, failing that, the current
wait after the first frame of ``T`` arrived (cars that held it up stop being
expected until they send again).  Ticks are emitted without holes: a tick
that nobody sent is emitted empty (every car stale).

The wait adapts, like a jitter buffer.  It starts at ``wait_s``.  A car's
frame that arrives after its tick went out without it (the car was listed
stale) shows the pipeline lags more than the wait: the wait grows to 1.5 x
that frame's lateness (twice the wait when the tick is too old to tell), at
most ``max_wait_s``.  While ticks complete on their own it decays back towards
``wait_s`` with a half-life of two minutes of wall time (slow release: a
pipeline that lagged once tends to lag again, and catching up emits ticks
faster than 2 Hz).  The
wait only holds back a tick that is missing a car, so a longer one costs
latency only while a car is late or has stopped sending.

Duplicates (same race, car, tick) are dropped, and so are frames of a tick
already emitted (late, or a repeat of a frame it carried) and of a race
already left.  Frames of another race than the current one are held back
until that race's ``race_start`` (which the events topic orders after the
current race's ``race_end``) or for the wait: only then does the current race
end.  Events are delivered with the first tick emitted at or after their own
tick; ``race_end`` flushes the race (and is carried by one more, empty, tick
when nothing is pending).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from slipstream.catalogue import CATALOGUE
from slipstream.records import TICK_NS, Frame, RaceEvent

__all__ = ["MAX_TICK_JUMP", "TickAssembler", "TickData"]

#: Frames this far ahead of the last emitted tick are rejected as bogus.
MAX_TICK_JUMP = 10_000
#: Frames of a next race held back (see module doc) before it starts anyway.
MAX_EARLY_FRAMES = 20_000
#: Factor of the lateness of a late frame the wait grows to.
WAIT_MARGIN = 1.5
#: Half-life of the wait's decay towards ``wait_s`` while ticks complete on their own.
WAIT_HALF_LIFE_S = 120.0
#: Emitted ticks whose arrival time and stale cars are kept to judge late frames.
RECENT_TICKS = 256
_CHANNELS = len(CATALOGUE)


@dataclass(frozen=True, slots=True, eq=False)
class TickData:
    """Everything a node knows about one tick.

    Attributes:
        race: Race id.
        tick: Tick number.
        cars: Cars with a frame at this tick, ascending, shape (n,).
        q: Their quantised values, shape (n, channels).
        base: Tick of each car's previous frame (-1: first frame), shape (n,).
        prev_q: Values at ``base`` (zeros where base is -1), shape (n, channels).
        state_cars: Every car known at this tick, ascending, shape (m,).
        state_q: Latest values of each, shape (m, channels).
        state_tick: Tick of those values, shape (m,).
        stale: Cars of the race (entry list or seen) without a frame at this
            tick, ascending.
        events: Race events delivered with this tick.
    """

    race: str
    tick: int
    cars: NDArray[np.int64]
    q: NDArray[np.int32]
    base: NDArray[np.int64]
    prev_q: NDArray[np.int32]
    state_cars: NDArray[np.int64]
    state_q: NDArray[np.int32]
    state_tick: NDArray[np.int64]
    stale: NDArray[np.int64]
    events: tuple[RaceEvent, ...] = ()


@dataclass(slots=True)
class _Race:
    race: str
    expected: set[int] = field(default_factory=set)
    quiet: set[int] = field(default_factory=set)
    partition_of: dict[int, int] = field(default_factory=dict)
    high: dict[int, int] = field(default_factory=dict)  # partition -> highest tick seen
    pending: dict[int, dict[int, NDArray[np.int32]]] = field(default_factory=dict)
    first_seen: dict[int, float] = field(default_factory=dict)
    events: list[RaceEvent] = field(default_factory=list)
    state: dict[int, tuple[int, NDArray[np.int32]]] = field(default_factory=dict)
    # emitted tick -> (when its first frame arrived, cars it went out without)
    recent: dict[int, tuple[float, frozenset[int]]] = field(default_factory=dict)
    emitted: int = -1
    started: bool = False


class TickAssembler:
    """Turns frames and events into ordered :class:`TickData`.

    Args:
        wait_s: Wait for missing cars of a tick when the pipeline keeps pace
            (see module doc).
        partition_of_car: Partition of a car that has not sent a frame yet
            (so an entry-list car's partition can release a tick).
        max_wait_s: Longest the wait grows to when frames come late (None:
            ``wait_s``, a fixed wait).

    Attributes:
        current_wait_s: The wait now.
        late_frames: Frames dropped because their tick had gone out without
            them (or their race had ended, or they were malformed).
        duplicate_frames: Frames dropped as repeats of a frame already taken.
    """

    def __init__(
        self,
        wait_s: float,
        partition_of_car: Callable[[int], int],
        max_wait_s: float | None = None,
    ) -> None:
        if wait_s < 0:
            raise ValueError("wait_s must be >= 0")
        if max_wait_s is not None and max_wait_s < wait_s:
            raise ValueError("max_wait_s must be >= wait_s")
        self.wait_s = wait_s
        self.max_wait_s = wait_s if max_wait_s is None else max_wait_s
        self.current_wait_s = wait_s
        self._decayed_at: float | None = None  # when the wait last grew or decayed
        self._partition_of_car = partition_of_car
        self._race: _Race | None = None
        self._left: set[str] = set()
        self._early: dict[str, list[tuple[Frame, int, float]]] = {}
        self.late_frames = 0
        self.duplicate_frames = 0

    @property
    def race(self) -> str | None:
        """Current race id."""
        return self._race.race if self._race else None

    @property
    def known_cars(self) -> frozenset[int]:
        """Cars of the current race (entry list and cars seen)."""
        if self._race is None:
            return frozenset()
        return frozenset(self._race.expected | self._race.quiet | set(self._race.state))

    def _switch(self, race: str, now_s: float) -> list[TickData]:
        out: list[TickData] = []
        if self._race is not None:
            out = self._flush(now_s)
            self._left.add(self._race.race)
        self._race = _Race(race)
        return out

    def add_frame(self, frame: Frame, partition: int, now_s: float) -> list[TickData]:
        """Take one frame; returns ticks of a race it ends (call :meth:`poll` after a batch)."""
        if frame.race in self._left:
            self.late_frames += 1
            return []
        current = self._race
        if current is not None and frame.race != current.race and current.race not in self._left:
            # A next race's frame may overtake the current race's race_end (the
            # topics are not ordered with each other): hold it until that race's
            # race_start, or for wait_s.
            early = self._early.setdefault(frame.race, [])
            early.append((frame, partition, now_s))
            if sum(map(len, self._early.values())) <= MAX_EARLY_FRAMES:
                return []
            return self._switch_to_early(frame.race, now_s)
        out: list[TickData] = []
        if current is None or frame.race != current.race:
            out = self._switch(frame.race, now_s)
        self._add(frame, partition, now_s)
        return out

    def _add(self, frame: Frame, partition: int, now_s: float) -> None:
        r = self._race
        assert r is not None
        if frame.tick <= r.emitted:
            self._late(r, frame, now_s)
            return
        if r.emitted >= 0 and frame.tick - r.emitted > MAX_TICK_JUMP:
            self.late_frames += 1
            return
        if frame.q.shape != (_CHANNELS,):
            self.late_frames += 1
            return
        cars = r.pending.setdefault(frame.tick, {})
        if frame.car in cars:
            self.duplicate_frames += 1
            return
        cars[frame.car] = frame.q
        r.first_seen.setdefault(frame.tick, now_s)
        r.partition_of[frame.car] = partition
        r.high[partition] = max(r.high.get(partition, -1), frame.tick)
        r.quiet.discard(frame.car)
        r.expected.add(frame.car)

    def _late(self, r: _Race, frame: Frame, now_s: float) -> None:
        """A frame of an emitted tick: a repeat of one it carried, or late (the wait grows)."""
        seen = r.recent.get(frame.tick)
        if seen is not None and frame.car not in seen[1]:
            self.duplicate_frames += 1  # e.g. re-emitted by a restarted downsampler
            return
        self.late_frames += 1
        r.quiet.discard(frame.car)  # late, not gone: wait for it again
        r.expected.add(frame.car)
        # A tick long gone, or one that went out empty: no arrival time to go by.
        grown = self.current_wait_s * 2 if seen is None else (now_s - seen[0]) * WAIT_MARGIN
        self.current_wait_s = min(self.max_wait_s, max(self.current_wait_s, grown))
        self._decayed_at = now_s

    def _switch_to_early(self, race: str, now_s: float) -> list[TickData]:
        """Start ``race`` and take its held frames."""
        out = self._switch(race, now_s)
        for frame, partition, seen_s in self._early.pop(race, []):
            self._add(frame, partition, seen_s)
        return out

    def add_event(self, event: RaceEvent, now_s: float) -> list[TickData]:
        """Take one race event; returns ticks of a race it ends or flushes."""
        if event.race in self._left:
            return []
        out: list[TickData] = []
        if self._race is None or event.race != self._race.race:
            out = self._switch_to_early(event.race, now_s)
        r = self._race
        assert r is not None
        if event.kind == "race_start":
            r.expected.update(event.cars)
            entries = event.data.get("entries")
            if isinstance(entries, list):
                for entry in entries:
                    car = entry.get("car") if isinstance(entry, dict) else entry
                    if isinstance(car, int) and not isinstance(car, bool):
                        r.expected.add(car)
        r.events.append(event)
        if event.kind == "race_end":
            out += self._flush(now_s)
            self._left.add(r.race)
            return out
        if event.kind == "race_start":
            r.started = True
        return out

    def poll(self, now_s: float) -> list[TickData]:
        """Ticks complete by now (call after each batch of frames and events)."""
        out: list[TickData] = []
        for race, early in list(self._early.items()):
            if race in self._early and now_s - early[0][2] >= self.current_wait_s:
                # No race_start came: the current race is over all the same.
                out += self._switch_to_early(race, now_s)
        return out + self._ready(now_s)

    def flush(self) -> list[TickData]:
        """Emit every pending tick of the current race now, complete or not."""
        r = self._race
        out: list[TickData] = []
        while r is not None and r.pending:
            out += self._emit_through(r, min(r.pending))
        return out

    def emit_through(self, tick: int) -> list[TickData]:
        """Emit every tick up to ``tick`` now, complete or not (empty ones too)."""
        r = self._race
        out: list[TickData] = []
        while r is not None and r.pending and min(r.pending) <= tick:
            out += self._emit_through(r, min(r.pending))
        if r is not None and 0 <= r.emitted < tick:
            out += self._emit_through(r, tick)
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`poll` may next emit something (None: nothing pending)."""
        r = self._race
        wait_s = self.current_wait_s
        deadlines = [early[0][2] + wait_s for early in self._early.values()]
        if r is not None and r.pending:
            deadlines.append(r.first_seen[min(r.pending)] + wait_s)
        return min(deadlines, default=None)

    def _complete(self, r: _Race, tick: int) -> bool:
        if not r.started and r.emitted < 0:
            return False  # no entry list: the first tick waits to learn the field
        have = r.pending.get(tick, {})
        for car in r.expected:
            if car in have:
                continue
            partition = r.partition_of.get(car)
            if partition is None:
                partition = self._partition_of_car(car)
            if r.high.get(partition, -1) <= tick:
                return False
        return True

    def _ready(self, now_s: float) -> list[TickData]:
        r = self._race
        out: list[TickData] = []
        while r is not None and r.pending:
            tick = min(r.pending)
            if not self._complete(r, tick):
                if now_s - r.first_seen[tick] < self.current_wait_s:
                    break
                # The cars that held the tick up stop being expected until they send.
                missing = r.expected - set(r.pending[tick])
                r.quiet |= missing
                r.expected -= missing
            elif self.current_wait_s > self.wait_s and self._decayed_at is not None:
                decay = 0.5 ** (max(0.0, now_s - self._decayed_at) / WAIT_HALF_LIFE_S)
                self.current_wait_s = max(self.wait_s, self.current_wait_s * decay)
                self._decayed_at = now_s
            out += self._emit_through(r, tick)
        return out

    def _flush(self, now_s: float) -> list[TickData]:
        r = self._race
        if r is None:
            return []
        out: list[TickData] = []
        while r.pending:
            out += self._emit_through(r, min(r.pending))
        if r.events:
            last = max(e.t_ns // TICK_NS for e in r.events)
            out += self._emit_through(r, max(r.emitted + 1, min(last, r.emitted + MAX_TICK_JUMP)))
        return out

    def _emit_through(self, r: _Race, tick: int) -> list[TickData]:
        out: list[TickData] = []
        start = tick if r.emitted < 0 else r.emitted + 1
        for t in range(start, tick + 1):
            out.append(self._emit(r, t))
        return out

    def _emit(self, r: _Race, tick: int) -> TickData:
        frames = r.pending.pop(tick, {})
        first_seen = r.first_seen.pop(tick, None)
        cars = np.array(sorted(frames), dtype=np.int64)
        q = np.empty((len(cars), _CHANNELS), dtype=np.int32)
        prev_q = np.zeros_like(q)
        base = np.full(len(cars), -1, dtype=np.int64)
        for i, car in enumerate(cars.tolist()):
            q[i] = frames[car]
            previous = r.state.get(car)
            if previous is not None:
                base[i], prev_q[i] = previous
            r.state[car] = (tick, q[i].copy())
        state_cars = np.array(sorted(r.state), dtype=np.int64)
        state_q = np.empty((len(state_cars), _CHANNELS), dtype=np.int32)
        state_tick = np.empty(len(state_cars), dtype=np.int64)
        for i, car in enumerate(state_cars.tolist()):
            state_tick[i], state_q[i] = r.state[car]
        due = [e for e in r.events if e.t_ns // TICK_NS <= tick]
        r.events = [e for e in r.events if e.t_ns // TICK_NS > tick]
        r.emitted = tick
        known = r.expected | r.quiet | set(r.state)
        stale_cars = known - set(frames)
        if first_seen is not None:
            r.recent[tick] = (first_seen, frozenset(stale_cars))
            if len(r.recent) > RECENT_TICKS:
                del r.recent[next(iter(r.recent))]  # ticks go out in order
        stale = np.array(sorted(stale_cars), dtype=np.int64)
        return TickData(
            r.race, tick, cars, q, base, prev_q, state_cars, state_q, state_tick, stale, tuple(due)
        )
