"""Resumes past the replay ring: re-read the frames topic from the bus.

:class:`TickIndex` (pure) notes, while the node consumes, where each tick of
the current race starts in every partition of the frames topic, and which
events were delivered with which tick.  :class:`BusHistory` uses it to rebuild
ticks ``after+1 .. until`` for a resuming fan: it seeks a fresh consumer (no
group) to the offsets of tick ``after``, re-assembles the frames from there
(tick ``after`` only seeds the cars' previous values, so deltas get their
right base; a car with no frame at ``after`` comes as a keyframe part) and
attaches the events the live stream delivered with each tick.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from broadcast.fanout import EncodedTick, FanoutStats
from broadcast.protocol import BroadcastError
from broadcast.ticks import TickAssembler, TickData
from slipstream.bus import Bus, Consumer, Record, TopicPartition
from slipstream.records import RaceEvent, RecordError, decode_frame

__all__ = ["BusHistory", "HistoryUnavailable", "TickIndex"]


class HistoryUnavailable(BroadcastError):
    """The ticks asked for cannot be re-read from the bus."""


@dataclass(slots=True)
class _PartitionIndex:
    ticks: list[int] = field(default_factory=list)  # ascending
    offsets: list[int] = field(default_factory=list)  # first offset of each tick
    next_offset: int = 0


class TickIndex:
    """Tick → offset per partition of the frames topic, for the current race."""

    def __init__(self) -> None:
        self.race: str | None = None
        self._partitions: dict[int, _PartitionIndex] = {}
        self._events: dict[int, tuple[RaceEvent, ...]] = {}
        self.first_tick: int | None = None

    def add_frame(self, race: str, tick: int, partition: int, offset: int) -> None:
        """Note a frame record read by the node."""
        if race != self.race:
            self.race = race
            self._partitions = {}
            self._events = {}
            self.first_tick = None
        index = self._partitions.setdefault(partition, _PartitionIndex())
        if not index.ticks or tick > index.ticks[-1]:
            index.ticks.append(tick)
            index.offsets.append(offset)
        index.next_offset = max(index.next_offset, offset + 1)
        if self.first_tick is None or tick < self.first_tick:
            self.first_tick = tick

    def add_tick(self, data: TickData) -> None:
        """Note the events delivered with an emitted tick."""
        if data.race == self.race and data.events:
            self._events[data.tick] = data.events

    def events(self, tick: int) -> tuple[RaceEvent, ...]:
        """Events the live stream delivered with ``tick``."""
        return self._events.get(tick, ())

    def covers(self, race: str, tick: int) -> bool:
        """Whether frames from ``tick`` on of ``race`` can be found."""
        # Tick -1 (nothing of the race yet) is covered when the node saw the race's first tick.
        return race == self.race and self.first_tick is not None and tick >= self.first_tick - 1

    def span(self, tick: int, until: int) -> dict[int, tuple[int, int]]:
        """Per partition, ``(start, stop)`` offsets of the frames of ticks ``tick..until``."""
        out: dict[int, tuple[int, int]] = {}
        for partition, index in self._partitions.items():
            i = bisect.bisect_left(index.ticks, tick)
            j = bisect.bisect_right(index.ticks, until)
            if i == j:
                continue
            stop = index.offsets[j] if j < len(index.offsets) else index.next_offset
            out[partition] = (index.offsets[i], stop)
        return out


class BusHistory:
    """Rebuilds ticks of the current race from the frames topic.

    Args:
        bus: The node's bus.
        frames_topic: Topic of the frames.
        index: The node's :class:`TickIndex`.
        stats: Encode counters shared with the live ticks.
        timeout_s: Longest time re-reading one chunk may take before the
            resume falls back to a keyframe and a notice.
        chunk_ticks: Ticks re-read and held at a time (bounds the memory of a
            long resume; also the most a long-poll answer carries from the bus).
    """

    def __init__(
        self,
        bus: Bus,
        frames_topic: str,
        index: TickIndex,
        stats: FanoutStats,
        timeout_s: float = 5.0,
        chunk_ticks: int = 240,
    ) -> None:
        if chunk_ticks < 1:
            raise ValueError("chunk_ticks must be at least 1")
        self.timeout_s = timeout_s
        self.chunk_ticks = chunk_ticks
        self.bus = bus
        self.frames_topic = frames_topic
        self.index = index
        self.stats = stats

    async def chunks(
        self, race: str, after: int, until: int
    ) -> AsyncGenerator[list[EncodedTick], None]:
        """Ticks ``after+1 .. until`` of ``race``, in order, ``chunk_ticks`` at a time.

        Memory stays bounded by one chunk however long the gap.  Use with
        :func:`contextlib.aclosing` when stopping early.

        Raises:
            HistoryUnavailable: The bus (or the index) no longer has them; the
                chunks already yielded are valid.
        """
        index = self.index
        if until <= after or not index.covers(race, after):
            raise HistoryUnavailable(f"ticks after {after} of race {race} are not indexed")
        consumer = await self.bus.consumer([self.frames_topic], group_id=None)
        try:
            assembler = TickAssembler(0.0, lambda car: 0)
            low, following = after, after + 1  # the first window also reads tick `after`
            while following <= until:
                high = min(until, following + self.chunk_ticks - 1)
                await self._read(consumer, assembler, race, low, high)
                out: list[EncodedTick] = []
                for data in assembler.emit_through(high):
                    if data.tick > after:
                        events = index.events(data.tick)
                        out.append(EncodedTick(_with_events(data, events), self.stats))
                if not out or out[0].tick != following or out[-1].tick != high:
                    raise HistoryUnavailable(f"ticks {following}..{high} are not all on the bus")
                yield out
                low = following = high + 1
        finally:
            await consumer.stop()

    async def _read(
        self, consumer: Consumer, assembler: TickAssembler, race: str, low: int, high: int
    ) -> None:
        span = self.index.span(low, high)
        for partition, (start, _) in span.items():
            consumer.seek(TopicPartition(self.frames_topic, partition), start)
        remaining = {p for p, (start, stop) in span.items() if start < stop}
        positions = {p: start for p, (start, _) in span.items()}
        try:
            async with asyncio.timeout(self.timeout_s):
                while remaining:
                    records = await consumer.getmany(timeout_ms=200)
                    _take(records, span, positions, assembler, race, low, high)
                    remaining = {p for p in remaining if positions[p] < span[p][1]}
        except TimeoutError:
            raise HistoryUnavailable("the bus did not return the frames in time") from None


def _take(
    records: list[Record],
    span: dict[int, tuple[int, int]],
    positions: dict[int, int],
    assembler: TickAssembler,
    race: str,
    after: int,
    until: int,
) -> None:
    for record in records:
        if record.partition not in span:
            continue  # a partition with nothing to re-read
        start, stop = span[record.partition]
        if record.offset < start:
            continue
        positions[record.partition] = max(positions[record.partition], record.offset + 1)
        if record.offset >= stop:
            continue
        try:
            frame = decode_frame(record.value)
        except RecordError:
            continue
        if frame.race == race and after <= frame.tick <= until:
            assembler.add_frame(frame, record.partition, 0.0)


def _with_events(data: TickData, events: tuple[RaceEvent, ...]) -> TickData:
    if not events:
        return data
    return TickData(
        data.race, data.tick, data.cars, data.q, data.base, data.prev_q,
        data.state_cars, data.state_q, data.state_tick, data.stale, events,
    )  # fmt: skip
