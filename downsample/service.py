"""The downsampler as a service: consumer group on the raw topic, frames and dead letters out.

One loop, in this order, which is what makes "exactly once in effect" true:

1. poll a batch of raw records (at least once: a restart re-reads from the
   commit point);
2. hand each partition's records to its :class:`~downsample.windows.PartitionWindows`
   (validate, de-duplicate, window, reduce);
3. send the frames and dead letters and wait until the bus has stored them;
4. every ``commit_interval_ms``: write each partition's checkpoint, wait for
   it, then commit the offsets below which everything is accounted for.

A partition newly assigned (start, restart, rebalance) is restored from its
last checkpoint and read from its commit point; a revoked one is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict, deque

from downsample.checkpoint import Checkpoint, decode_checkpoint, encode_checkpoint
from downsample.config import DownsampleConfig
from downsample.outage import QuietTracker
from downsample.windows import Counts, PartitionWindows, WindowRules
from ingest.dlq import DeadLetter, encode_dead_letter
from ingest.validate import REASONS, Validator
from slipstream.bus.base import Bus, Consumer, Producer, Record, TopicPartition
from slipstream.catalogue import CATALOGUE, Catalogue
from slipstream.errors import BusError
from slipstream.metrics import Registry
from slipstream.records import Frame, car_key, encode_frame

__all__ = ["DownsampleService"]

logger = logging.getLogger(__name__)

#: Polls whose output may be in flight to the broker at once.
_MAX_IN_FLIGHT = 4
#: Window close lag: the allowed lateness (1 s by default) plus the pipeline's delay.
CLOSE_LAG_BUCKETS_S = (0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)


async def _send_after(
    previous: asyncio.Task[None] | None,
    producer: Producer,
    batches: list[tuple[str, list[tuple[bytes | None, bytes]]]],
) -> None:
    """Send ``batches`` once ``previous`` is done, so per-partition order is kept."""
    if previous is not None:
        await asyncio.shield(previous)
    await asyncio.gather(*(producer.send_many(topic, items) for topic, items in batches))


class DownsampleService:
    """Consumes ``slipstream.raw`` in a group, produces 2 Hz frames and dead letters.

    Args:
        config: Service settings.
        bus: A started bus.
        registry: Metrics registry (a private one when None).
        catalogue: Channel catalogue.

    Attributes:
        idle: Set while the service has caught up: nothing left to read,
            every window closed and every offset committed.  Cleared when
            records arrive.
        counts: Totals since start.
    """

    def __init__(
        self,
        config: DownsampleConfig,
        bus: Bus,
        registry: Registry | None = None,
        catalogue: Catalogue = CATALOGUE,
    ) -> None:
        self.config = config
        self.bus = bus
        self.catalogue = catalogue
        self.idle = asyncio.Event()
        self.counts = Counts()
        self._validator = Validator(config.validator, catalogue)
        self._rules = WindowRules(
            allowed_lateness_ns=config.allowed_lateness_ms * 1_000_000,
            max_skew_ns=config.max_skew_ms * 1_000_000,
            dedup_horizon=config.dedup_horizon,
        )
        self._windows: dict[int, PartitionWindows] = {}
        self._in_flight: deque[asyncio.Task[None]] = deque()
        self._committed: dict[int, int] = {}
        self._quiet = QuietTracker(config.idle_flush_ms / 1000)
        registry = registry or Registry()
        self._m_records = registry.counter(
            "slipstream_raw_records_total", "Raw records read by the downsampler"
        )
        self._m_samples = registry.counter(
            "slipstream_raw_samples_total", "Raw samples in valid, non-duplicate records"
        )
        self._m_frames = registry.counter("slipstream_frames_total", "2 Hz frames produced")
        self._m_dlq = registry.counter(
            "slipstream_dlq_records_total", "Raw records dead-lettered, by reason", ("reason",)
        )
        for reason in REASONS:  # every reason's series exists before its first dead letter
            self._m_dlq.init(reason=reason)
        self._m_late = registry.counter(
            "slipstream_late_samples_total", "Samples that arrived after their window closed"
        )
        self._m_dups = registry.counter(
            "slipstream_duplicates_total", "Raw records dropped as duplicates"
        )
        self._m_lag = registry.gauge(
            "slipstream_consumer_lag_records", "Raw records not yet read by this member", ()
        )
        self._m_close_lag = registry.histogram(
            "slipstream_downsample_window_close_lag_seconds",
            "From the bus timestamp of the oldest record of the batch that closed a window "
            "(or of a partition's last record, for an idle flush) to the window's frames",
            CLOSE_LAG_BUCKETS_S,
            labels=(),
        )
        self._last_record_ms: dict[int, int] = {}

    async def run(self) -> None:
        """Run until cancelled; nothing is committed that is not accounted for."""
        cfg = self.config
        await self.bus.ensure_topic(cfg.raw_topic, cfg.partitions)
        partitions = await self.bus.partitions(cfg.raw_topic)
        for topic in (cfg.frames_topic, cfg.dlq_topic, cfg.checkpoints):
            await self.bus.ensure_topic(topic, partitions)
        producer = await self.bus.producer()
        consumer: Consumer | None = None
        try:
            consumer = await self.bus.consumer([cfg.raw_topic], group_id=cfg.group_id)
            logger.info(
                "downsampling %s -> %s in group %s", cfg.raw_topic, cfg.frames_topic, cfg.group_id
            )
            await self._loop(consumer, producer)
        finally:
            for task in self._in_flight:  # not acknowledged, so never committed
                task.cancel()
            await asyncio.gather(*self._in_flight, return_exceptions=True)
            self._in_flight.clear()
            if consumer is not None:
                await consumer.stop()
            await producer.stop()

    async def _loop(self, consumer: Consumer, producer: Producer) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        last_commit = loop.time()
        me = asyncio.current_task()
        while True:
            # On Python 3.11 asyncio.wait_for (used inside bus clients) can swallow a
            # cancellation that races with its result; honour a pending cancel anyway.
            if me is not None and me.cancelling():
                raise asyncio.CancelledError
            records = await consumer.getmany(timeout_ms=cfg.poll_ms, max_records=cfg.max_batch)
            fresh = await self._sync_assignment(consumer)
            now = loop.time()
            if records:
                self.idle.clear()
            quiet = await self._quiet_partitions(consumer, now)
            frames, dead = self._process(records, fresh, now, quiet)
            await self._send(producer, frames, dead)
            if not records or now - last_commit >= cfg.commit_interval_ms / 1000:
                await self._commit(consumer, producer)
                last_commit = now
            if not records and self._caught_up():
                self.idle.set()

    async def _quiet_partitions(self, consumer: Consumer, now: float) -> set[int]:
        """Partitions the broker has said, for ``idle_flush_ms``, have nothing more to read.

        Asks the broker for its end offsets when :class:`~downsample.outage.QuietTracker`
        says it is time, and feeds it the answer (or the outage); only the
        returned partitions' silent races are flushed.
        """
        tracker = self._quiet
        if not tracker.due(now):
            return tracker.quiet
        assigned = [TopicPartition(self.config.raw_topic, p) for p in self._windows]
        try:
            ends = await consumer.end_offsets(assigned) if assigned else {}
        except BusError:
            return tracker.no_answer(now)
        positions = {p: w.next_offset or 0 for p, w in self._windows.items()}
        return tracker.answer(now, {tp.partition: end for tp, end in ends.items()}, positions)

    def _process(
        self, records: list[Record], fresh: set[int], now: float, quiet: set[int]
    ) -> tuple[list[Frame], list[DeadLetter]]:
        by_partition: dict[int, list[Record]] = defaultdict(list)
        for record in records:
            by_partition[record.partition].append(record)
        frames: list[Frame] = []
        dead: list[DeadLetter] = []
        idle_s = self.config.idle_flush_ms / 1000
        wall_s = time.time()
        for partition, windows in self._windows.items():
            batch = by_partition.get(partition)
            if batch and partition not in fresh:
                f, d = windows.process(batch, now)
                self._observe_close_lag(f, wall_s - batch[0].timestamp_ms / 1000)
                self._last_record_ms[partition] = batch[-1].timestamp_ms
                frames += f
                dead += d
            if partition in quiet:
                flushed = windows.flush_idle(now, idle_s)
                last_ms = self._last_record_ms.get(partition)
                if last_ms is not None:
                    self._observe_close_lag(flushed, wall_s - last_ms / 1000)
                frames += flushed
        return frames, dead

    def _observe_close_lag(self, frames: list[Frame], lag_s: float) -> None:
        """One observation per window closed (a window is one tick of one race)."""
        for _ in range(len({(f.race, f.tick) for f in frames})):
            self._m_close_lag.observe(max(0.0, lag_s))

    async def _send(self, producer: Producer, frames: list[Frame], dead: list[DeadLetter]) -> None:
        """Queue frames and dead letters behind the previous sends (order kept per topic).

        Sending overlaps the next poll's processing; at most ``_MAX_IN_FLIGHT``
        polls' worth are outstanding, and :meth:`_flush` waits for all of them
        before anything is committed.
        """
        self._publish_counts()
        batches: list[tuple[str, list[tuple[bytes | None, bytes]]]] = []
        if frames:
            items: list[tuple[bytes | None, bytes]] = [
                (car_key(f.car), encode_frame(f)) for f in frames
            ]
            batches.append((self.config.frames_topic, items))
        if dead:
            letters = [(d.key, encode_dead_letter(d)) for d in dead]
            batches.append((self.config.dlq_topic, letters))
        if not batches:
            return
        previous = self._in_flight[-1] if self._in_flight else None
        self._in_flight.append(asyncio.create_task(_send_after(previous, producer, batches)))
        while len(self._in_flight) > _MAX_IN_FLIGHT:
            await self._in_flight.popleft()

    async def _flush(self) -> None:
        """Wait until every queued frame and dead letter is acknowledged (raises if one failed)."""
        while self._in_flight:
            await self._in_flight[0]
            self._in_flight.popleft()

    def _publish_counts(self) -> None:
        total = Counts()
        for windows in self._windows.values():
            total.add(windows.counts)
            windows.counts = Counts()
        self.counts.add(total)
        if total.records:
            self._m_records.inc(total.records)
        if total.samples:
            self._m_samples.inc(total.samples)
        if total.frames:
            self._m_frames.inc(total.frames)
        if total.late_samples:
            self._m_late.inc(total.late_samples)
        if total.duplicates:
            self._m_dups.inc(total.duplicates)
        for reason, n in total.rejected.items():
            self._m_dlq.inc(n, reason=reason)

    def _caught_up(self) -> bool:
        if self._in_flight:
            return False
        return all(
            w.commit_offset() == w.next_offset and self._committed.get(p) == w.next_offset
            for p, w in self._windows.items()
            if w.next_offset is not None
        )

    async def _commit(self, consumer: Consumer, producer: Producer) -> None:
        cfg = self.config
        await self._flush()
        offsets: dict[TopicPartition, int] = {}
        writes = []
        for partition, windows in self._windows.items():
            offset = windows.commit_offset()
            if offset is None or offset == self._committed.get(partition):
                continue
            data = encode_checkpoint(Checkpoint.of(cfg.group_id, windows))
            writes.append(producer.send(cfg.checkpoints, data, partition=partition))
            offsets[TopicPartition(cfg.raw_topic, partition)] = offset
        if not offsets:
            return
        await asyncio.gather(*writes)
        try:
            await consumer.commit(offsets)
        except BusError as exc:  # e.g. a rebalance took the partition away meanwhile
            logger.warning("commit failed, will retry: %s", exc)
            return
        for tp, offset in offsets.items():
            self._committed[tp.partition] = offset
        with contextlib.suppress(BusError):
            assigned = [TopicPartition(cfg.raw_topic, p) for p in self._windows]
            ends = await consumer.end_offsets(assigned)
            lag = 0
            for tp, end in ends.items():
                lag += max(0, end - (self._windows[tp.partition].next_offset or 0))
            self._m_lag.set(lag)

    async def _sync_assignment(self, consumer: Consumer) -> set[int]:
        """Restore newly assigned partitions, drop revoked ones; returns the new ones."""
        current = {
            tp.partition for tp in consumer.assignment() if tp.topic == self.config.raw_topic
        }
        for partition in set(self._windows) - current:
            logger.info("partition %d revoked", partition)
            del self._windows[partition]
            self._committed.pop(partition, None)
        fresh = current - set(self._windows)
        for partition in sorted(fresh):
            self._windows[partition] = await self._restore(consumer, partition)
        return fresh

    async def _restore(self, consumer: Consumer, partition: int) -> PartitionWindows:
        cfg = self.config
        tp = TopicPartition(cfg.raw_topic, partition)
        windows = PartitionWindows(
            cfg.raw_topic, partition, self._rules, self._validator, self.catalogue
        )
        committed = await consumer.committed(tp)
        checkpoint = await self._read_checkpoint(partition)
        if checkpoint is not None and (committed is None or checkpoint.offset >= committed):
            checkpoint.apply(windows)
            start: int | None = checkpoint.offset
        else:
            start = committed
            windows.next_offset = committed
            windows.midstream = committed is not None and committed > 0
        if start is not None:
            consumer.seek(tp, start)
            self._committed[partition] = start
        else:  # records of this poll are dropped: read them again
            await consumer.seek_to_beginning([tp])
        logger.info("partition %d assigned, resuming at offset %s", partition, start)
        return windows

    async def _read_checkpoint(self, partition: int) -> Checkpoint | None:
        """The last checkpoint of ``partition`` written by this group, or None."""
        topic = self.config.checkpoints
        tp = TopicPartition(topic, partition)
        reader = await self.bus.consumer([topic])
        try:
            ends = await reader.end_offsets(reader.assignment())
            end = ends.get(tp, 0)
            if end == 0:
                return None
            for other, other_end in ends.items():
                reader.seek(other, other_end)
            reader.seek(tp, end - 1)
            async with asyncio.timeout(30):
                while True:
                    for record in await reader.getmany(timeout_ms=500):
                        if record.partition == partition and record.offset == end - 1:
                            checkpoint = decode_checkpoint(record.value)
                            if checkpoint.group != self.config.group_id:
                                return None
                            return checkpoint
        except ValueError as exc:
            logger.warning("ignoring an unreadable checkpoint of partition %d: %s", partition, exc)
            return None
        finally:
            await reader.stop()
