"""ReplayService: plays a recording into the bus, byte for byte, at any speed.

The recording format is :mod:`simulator.recording`; its file reader and writer are in
:mod:`simulator.recording_file`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from simulator.recording import RecordedRecord
from simulator.recording_file import RecordReader
from simulator.summary import RaceSummary, SummaryBuilder
from slipstream.bus import Bus, Producer
from slipstream.config import DEFAULT_PARTITIONS, EVENTS_TOPIC, RAW_TOPIC
from slipstream.metrics import Registry
from slipstream.records import RecordError, decode_event

__all__ = ["RecordReader", "ReplayService"]

logger = logging.getLogger(__name__)

_MAX_GROUP = 1000


class ReplayService:
    """Sends every record of a recording to its topic with its key, in file order.

    Args:
        path: The recording.
        bus: A started bus.
        speed: Multiple of real time (race time of the recording); 0 = flat out.
        registry: Where to count records (``slipstream_replay_records_total``).
        partitions: Partitions of the topics when this service creates them.
        raw_topic: Topic of the raw records.
        events_topic: Topic of the race events.

    Raises:
        ValueError: ``speed`` is negative.
    """

    def __init__(
        self,
        path: str | Path,
        bus: Bus,
        speed: float = 1.0,
        registry: Registry | None = None,
        *,
        partitions: int = DEFAULT_PARTITIONS,
        raw_topic: str = RAW_TOPIC,
        events_topic: str = EVENTS_TOPIC,
    ) -> None:
        if not speed >= 0:
            raise ValueError(f"replay speed must be 0 (flat out) or positive, got {speed}")
        self.path = Path(path)
        self.bus = bus
        self.speed = speed
        self.partitions = partitions
        self.raw_topic = raw_topic
        self.events_topic = events_topic
        self.records = 0
        self._summary = SummaryBuilder()
        self._wall_start = time.perf_counter()
        registry = registry or Registry()
        self._records_total = registry.counter(
            "slipstream_replay_records_total", "Records replayed from a recording"
        )

    async def run(self) -> RaceSummary:
        """Replay the whole file; returns the race summary rebuilt from its events.

        Raises:
            RecordingError: The file is not a readable recording.
        """
        summary = self._summary = SummaryBuilder()
        with RecordReader(self.path) as reader:
            await self.bus.ensure_topic(self.raw_topic, self.partitions)
            await self.bus.ensure_topic(self.events_topic, self.partitions)
            producer = await self.bus.producer()
            loop = asyncio.get_running_loop()
            start = loop.time()
            wall = self._wall_start = time.perf_counter()
            logger.info("replaying %s at speed %s", self.path, self.speed or "flat out")
            group: list[RecordedRecord] = []
            try:
                for record in reader:
                    if group and (
                        record.t_ns != group[0].t_ns
                        or record.topic != group[0].topic
                        or len(group) >= _MAX_GROUP
                    ):
                        await self._send(producer, group, start)
                        group = []
                    group.append(record)
                    if record.topic == EVENTS_TOPIC:
                        with contextlib.suppress(RecordError):
                            summary.add(decode_event(record.value))
                if group:
                    await self._send(producer, group, start)
            finally:
                await producer.stop()
        result = summary.result(self.records, 0, time.perf_counter() - wall)
        logger.info("replayed %d records from %s", self.records, self.path)
        return result

    def summary_so_far(self) -> RaceSummary:
        """The race summary rebuilt from the events replayed so far."""
        return self._summary.result(self.records, 0, time.perf_counter() - self._wall_start)

    async def _send(self, producer: Producer, group: list[RecordedRecord], start: float) -> None:
        if self.speed > 0:
            loop = asyncio.get_running_loop()
            delay = start + group[0].t_ns / 1e9 / self.speed - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        else:
            await asyncio.sleep(0)
        topic = {RAW_TOPIC: self.raw_topic, EVENTS_TOPIC: self.events_topic}.get(
            group[0].topic, group[0].topic
        )
        await producer.send_many(topic, [(r.key, r.value) for r in group])
        self.records += len(group)
        self._records_total.inc(len(group))
