"""Event-time windows of one raw partition: the pure core of the downsampler.

:class:`PartitionWindows` takes the records of one ``slipstream.raw``
partition in offset order and returns 2 Hz frames and dead letters.  It has
no I/O and no clock: the adapter passes wall time in where it matters (idle
flush only).

Semantics (docs/pipeline.md has the long form):

* A race's *watermark* in a partition is the latest sample time seen there
  minus the allowed lateness.  Window ``tick`` (``[tick, tick+1) x 500 ms`` of
  race time) is *closed* once the watermark reaches its end; its frames are
  final and samples for it arriving later are ``late``.
* Every decision depends on the records' content and order only, never on
  how they were batched, so a replay from a checkpoint recomputes the same
  frames byte for byte.
* Samples of a window are sorted by (time, sequence) before reduction, so
  re-ordered input gives the same frame as ordered input.
* The commit point is the lowest offset whose samples still sit in an open
  window; :meth:`checkpoint` captures the state as it was *at* that offset.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from downsample.kernel import AggregationPlan, reduce_segments, segment_starts
from ingest.dedup import SeenSeqs, Status
from ingest.dlq import DeadLetter
from ingest.errors import Rejected
from ingest.validate import Validator
from slipstream.bus.base import Record
from slipstream.catalogue import CATALOGUE, Catalogue
from slipstream.records import TICK_NS, Frame, RawBatch

__all__ = ["Counts", "PartitionWindows", "RaceSnapshot", "Snapshot", "WindowRules"]

_NS_PER_S = 1_000_000_000


@dataclass(frozen=True, slots=True)
class WindowRules:
    """The windowing parameters (a subset of the service config)."""

    allowed_lateness_ns: int = 1_000_000_000
    max_skew_ns: int = 60 * _NS_PER_S
    dedup_horizon: int = 256


@dataclass(slots=True)
class Counts:
    """What a call processed; the adapter adds it to the metrics."""

    records: int = 0
    samples: int = 0
    frames: int = 0
    late_samples: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)

    def add(self, other: Counts) -> None:
        """Add ``other`` into this."""
        self.records += other.records
        self.samples += other.samples
        self.frames += other.frames
        self.late_samples += other.late_samples
        self.duplicates += other.duplicates
        for reason, n in other.rejected.items():
            self.rejected[reason] = self.rejected.get(reason, 0) + n


@dataclass(frozen=True, slots=True)
class RaceSnapshot:
    """A race's watermark state in a partition (what a checkpoint stores)."""

    race: str
    max_ts_ns: int
    closed: int
    suppress_through: int


class _Race:
    """One race's open windows in one partition."""

    __slots__ = (
        "carry",
        "carry_values",
        "cars",
        "chunks",
        "closed",
        "emitted",
        "last_seen_s",
        "max_ts_ns",
        "race",
        "suppress_through",
    )

    def __init__(self, race: str) -> None:
        self.race = race
        self.max_ts_ns = -1
        self.closed = -1  # ticks <= closed are final
        self.emitted = -1  # ticks <= emitted have been reduced
        self.suppress_through = -1  # ticks <= this were emitted before a restart
        self.last_seen_s = 0.0
        self.cars: dict[int, SeenSeqs] = {}
        # Accepted samples: one entry per record (car, seq, offset, ts, values),
        # plus the rows carried over from the previous close, as arrays.
        self.chunks: list[tuple[int, int, int, NDArray[np.int64], NDArray[np.float32]]] = []
        self.carry: tuple[NDArray[np.int64], ...] | None = None  # car, seq, offset, ts
        self.carry_values: NDArray[np.float32] | None = None

    def buffered(self) -> bool:
        return bool(self.chunks) or self.carry is not None

    def min_offset(self) -> int | None:
        offsets = [c[2] for c in self.chunks]
        if self.carry is not None:
            offsets.append(int(self.carry[2].min()))
        return min(offsets) if offsets else None

    def max_tick(self) -> int:
        ticks = [int(c[3][-1]) // TICK_NS for c in self.chunks]
        if self.carry is not None:
            ticks.append(int(self.carry[3].max()) // TICK_NS)
        return max(ticks)


@dataclass(frozen=True, slots=True, eq=False)
class Snapshot:
    """A partition's state at its commit point (what a checkpoint stores).

    Attributes:
        offset: Commit point: reading resumes here.
        read_mark: Records below this were fully handled (dead letters sent).
        midstream: Reading began after the partition's first record.
        races: Per race: watermark state at the commit point, and the last
            tick whose frames were emitted.
        cars: Per (race, car): sequence numbers read below the commit point.
    """

    offset: int
    read_mark: int
    midstream: bool
    races: tuple[RaceSnapshot, ...]
    cars: tuple[tuple[str, int, SeenSeqs], ...]


#: What :meth:`PartitionWindows.process` returns: ready frames and dead letters.
Output = tuple[list[Frame], list[DeadLetter]]


class PartitionWindows:
    """Windowing state of one raw partition.

    Args:
        topic: Source topic (for dead letters).
        partition: Source partition.
        rules: Lateness, skew and de-duplication parameters.
        validator: Stateless record checks.
        catalogue: Channel catalogue (column order, rules, quantisation).
    """

    def __init__(
        self,
        topic: str,
        partition: int,
        rules: WindowRules | None = None,
        validator: Validator | None = None,
        catalogue: Catalogue = CATALOGUE,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.rules = rules or WindowRules()
        self.validator = validator or Validator(catalogue=catalogue)
        self.catalogue = catalogue
        self.plan = AggregationPlan.from_catalogue(catalogue)
        self.next_offset: int | None = None
        self.replay_until = -1  # records below were fully handled by an earlier run
        #: Reading began mid-partition: races may be joined after their start.
        self.midstream = False
        self.counts = Counts()
        self._races: dict[str, _Race] = {}
        # Race states as they were just before each record that is still buffered.
        self._before: dict[int, tuple[tuple[str, int, int], ...]] = {}
        self._offset_cache: dict[tuple[int, int], NDArray[np.int64]] = {}

    # -- processing ----------------------------------------------------------

    def process(self, records: Iterable[Record], now_s: float = 0.0) -> Output:
        """Take records of this partition (offset order); return ready frames and dead letters.

        Records below :attr:`next_offset` (already processed) are skipped.
        """
        dead: list[DeadLetter] = []
        for record in records:
            if self.next_offset is not None and record.offset < self.next_offset:
                continue
            if self.next_offset is None and record.offset > 0:
                self.midstream = True  # the start of the partition is not ours to see
            self.next_offset = record.offset + 1
            letter = self._take(record, now_s)
            if letter is not None and record.offset >= self.replay_until:
                dead.append(letter)
                self.counts.rejected[letter.reason] = self.counts.rejected.get(letter.reason, 0) + 1
        return self.close_ready(), dead

    def _take(self, record: Record, now_s: float) -> DeadLetter | None:
        replay = record.offset < self.replay_until
        if not replay:
            self.counts.records += 1
        try:
            batch = self.validator.check(record.value, record.key)
        except Rejected as exc:
            return DeadLetter.from_rejection(
                exc, record.topic, record.partition, record.offset, record.key, record.value
            )
        samples = batch.values.shape[0]
        ident = (batch.race, batch.car, batch.seq)
        race = self._races.get(batch.race)
        if race is None:
            # A race starts in a partition with some car's first batch; a damaged
            # race id in one record must not open a phantom race.
            if batch.seq != 0 and not self.midstream:
                return self._letter(
                    record, "unknown_race", f"race {batch.race!r} has not started here", ident
                )
            race = self._races[batch.race] = _Race(batch.race)
        race.last_seen_s = now_s
        if race.max_ts_ns >= 0 and batch.t0_ns > race.max_ts_ns + self.rules.max_skew_ns:
            return self._letter(
                record, "bad_timestamp", f"t0 {batch.t0_ns} ns is ahead of the race", ident
            )
        seen = race.cars.get(batch.car)
        if seen is None:
            seen = race.cars[batch.car] = SeenSeqs(self.rules.dedup_horizon)
        status = seen.status(batch.seq, record.offset)
        if status is Status.DUPLICATE:
            if not replay:
                self.counts.duplicates += 1
            return self._letter(record, "duplicate", f"seq {batch.seq} seen before", ident)
        if status is Status.NEW:
            last_ns = batch.t0_ns + ((samples - 1) * _NS_PER_S) // batch.rate_hz
            problem = seen.inconsistency(batch.seq, batch.t0_ns, last_ns, batch.rate_hz)
            if problem is not None:
                return self._letter(record, *problem, ident)
            seen.add(batch.seq, record.offset, batch.t0_ns, last_ns, batch.rate_hz)
        if not replay:
            self.counts.samples += samples
        return self._accept(record, race, batch, ident, replay)

    def _accept(
        self,
        record: Record,
        race: _Race,
        batch: RawBatch,
        ident: tuple[str, int, int],
        replay: bool,
    ) -> DeadLetter | None:
        samples = batch.values.shape[0]
        ts = batch.t0_ns + self._offsets_ns(samples, batch.rate_hz)
        cut = (race.closed + 1) * TICK_NS
        late = 0 if batch.t0_ns >= cut else int(np.searchsorted(ts, cut, side="left"))
        if late < samples:
            if record.offset not in self._before:
                self._before[record.offset] = self._race_states()
            race.chunks.append(
                (batch.car, batch.seq, record.offset, ts[late:], batch.values[late:])
            )
        last = int(ts[-1])
        if last > race.max_ts_ns:
            race.max_ts_ns = last
            race.closed = max(race.closed, (last - self.rules.allowed_lateness_ns) // TICK_NS - 1)
        if late == 0:
            return None
        if not replay:
            self.counts.late_samples += late
        letter = self._letter(
            record, "late", f"{late} of {samples} samples in closed windows", ident
        )
        return replace(letter, samples=late)

    def _letter(
        self, record: Record, reason: str, detail: str, ident: tuple[str, int, int]
    ) -> DeadLetter:
        return DeadLetter(
            reason, detail, record.topic, record.partition, record.offset, record.key,
            record.value, *ident,
        )  # fmt: skip

    def _race_states(self) -> tuple[tuple[str, int, int], ...]:
        return tuple((r.race, r.max_ts_ns, r.closed) for r in self._races.values())

    def _offsets_ns(self, samples: int, rate_hz: int) -> NDArray[np.int64]:
        """Sample times relative to the first sample (cached: batches repeat their shape)."""
        key = (samples, rate_hz)
        offsets = self._offset_cache.get(key)
        if offsets is None:
            offsets = (np.arange(samples, dtype=np.int64) * _NS_PER_S) // rate_hz
            if len(self._offset_cache) < 64:
                self._offset_cache[key] = offsets
        return offsets

    # -- closing windows -----------------------------------------------------

    def close_ready(self) -> list[Frame]:
        """Frames of every window closed by the watermark and not emitted yet."""
        frames: list[Frame] = []
        for race in self._races.values():
            if race.closed > race.emitted:
                frames.extend(self._close(race, race.closed))
        self._prune_before()
        return frames

    def flush_idle(self, now_s: float, idle_s: float) -> list[Frame]:
        """Close every window of races silent since ``now_s - idle_s`` (end of race)."""
        frames: list[Frame] = []
        for race in self._races.values():
            if race.buffered() and now_s - race.last_seen_s >= idle_s:
                race.closed = max(race.closed, race.max_tick())
                frames.extend(self._close(race, race.closed))
        self._prune_before()
        return frames

    def flush_all(self) -> list[Frame]:
        """Close every open window now (end of input)."""
        return self.flush_idle(float("inf"), 0.0)

    def _close(self, race: _Race, through: int) -> list[Frame]:
        race.emitted = through
        if not race.buffered():
            return []
        cars, seqs, offsets, ts, values = self._gather(race)
        ticks = ts // TICK_NS
        done = ticks <= through
        if not done.all():
            keep = ~done
            race.carry = (cars[keep], seqs[keep], offsets[keep], ts[keep])
            race.carry_values = values[keep]
        else:
            race.carry = None
            race.carry_values = None
        # Windows a previous run already emitted are not emitted again.
        done &= ticks > race.suppress_through
        rows = np.flatnonzero(done)
        if len(rows) == 0:
            return []
        # One gather of the value rows, in (tick, car, time, seq) order.
        order = rows[np.lexsort((seqs[rows], ts[rows], cars[rows], ticks[rows]))]
        cars, ticks, values = cars[order], ticks[order], values[order]
        starts = segment_starts(ticks, cars)
        q = self.catalogue.quantise(reduce_segments(values, starts, self.plan))
        counts = np.diff(np.append(starts, len(ticks)))
        seg_ticks = ticks[starts].tolist()
        seg_cars = cars[starts].tolist()
        frames = [
            Frame(race.race, tick, car, q[i], int(n))
            for i, (tick, car, n) in enumerate(zip(seg_ticks, seg_cars, counts, strict=True))
        ]
        self.counts.frames += len(frames)
        return frames

    def _gather(
        self, race: _Race
    ) -> tuple[
        NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64],
        NDArray[np.float32],
    ]:  # fmt: skip
        """Every buffered row of ``race``: car, seq, offset, ts, values (and clear chunks)."""
        chunks = race.chunks
        race.chunks = []
        lengths = np.array([len(c[3]) for c in chunks], dtype=np.int64)
        parts_meta = [
            np.repeat(np.array([c[i] for c in chunks], dtype=np.int64), lengths) for i in range(3)
        ]
        ts_parts = [c[3] for c in chunks]
        value_parts = [c[4] for c in chunks]
        if race.carry is not None and race.carry_values is not None:
            parts_meta = [np.concatenate((race.carry[i], parts_meta[i])) for i in range(3)]
            ts_parts.insert(0, race.carry[3])
            value_parts.insert(0, race.carry_values)
        ts = np.concatenate(ts_parts) if ts_parts else np.zeros(0, dtype=np.int64)
        values = np.concatenate(value_parts) if value_parts else np.zeros((0, 0), np.float32)
        return parts_meta[0], parts_meta[1], parts_meta[2], ts, values

    # -- commit points and checkpoints ---------------------------------------

    def commit_offset(self) -> int | None:
        """Lowest offset whose samples are still in an open window, else the next offset."""
        lows = [o for r in self._races.values() if (o := r.min_offset()) is not None]
        return min(lows) if lows else self.next_offset

    def _prune_before(self) -> None:
        low = self.commit_offset()
        if low is not None and self._before and min(self._before) < low:
            self._before = {o: s for o, s in self._before.items() if o >= low}

    def snapshot(self) -> Snapshot:
        """State at the commit point (see :class:`Snapshot`).

        Offsets below the commit point are fully accounted for; on restart the
        state returned here, with reading resumed at the commit point,
        recomputes exactly the frames an uninterrupted run would emit.
        """
        offset = self.commit_offset()
        if offset is None:
            raise ValueError("nothing processed yet")
        at_offset = offset in self._before
        before = {race: (max_ts, closed) for race, max_ts, closed in self._before.get(offset, ())}
        races: list[RaceSnapshot] = []
        cars: list[tuple[str, int, SeenSeqs]] = []
        for race in self._races.values():
            if at_offset and race.race not in before:
                continue  # began after the commit point: the replay starts it again
            max_ts, closed = before[race.race] if at_offset else (race.max_ts_ns, race.closed)
            suppress = max(race.emitted, race.suppress_through)
            races.append(RaceSnapshot(race.race, max_ts, closed, suppress))
            for car, seen in race.cars.items():
                rows = seen.before(offset)
                if len(rows):
                    cars.append((race.race, car, SeenSeqs.restore(rows, seen.horizon)))
        read_mark = max(self.next_offset or 0, self.replay_until)
        return Snapshot(offset, read_mark, self.midstream, tuple(races), tuple(cars))

    def restore(self, snapshot: Snapshot) -> None:
        """Load a :meth:`snapshot`; reading resumes at its offset."""
        self._races.clear()
        self._before.clear()
        for snap in snapshot.races:
            race = self._races[snap.race] = _Race(snap.race)
            race.max_ts_ns = snap.max_ts_ns
            race.closed = race.emitted = snap.closed
            race.suppress_through = snap.suppress_through
        for race_id, car, seen in snapshot.cars:
            self._races.setdefault(race_id, _Race(race_id)).cars[car] = seen
        self.next_offset = snapshot.offset
        self.replay_until = snapshot.read_mark
        self.midstream = snapshot.midstream
