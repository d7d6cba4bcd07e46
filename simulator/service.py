"""SimulatorService: runs the kernel and produces its records into the bus.

The thin asyncio adapter around :class:`simulator.kernel.Simulation`: each
batch interval's records (one per car, keyed by car number) go to
``slipstream.raw`` and the race events to ``slipstream.events`` (keyed by race
id), paced by ``speed`` against the event loop's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable

from simulator.config import SimulatorConfig
from simulator.faults import FaultInjector, OutRecord
from simulator.kernel import Simulation
from simulator.recording_file import RecordWriter
from simulator.summary import RaceSummary, SummaryBuilder
from slipstream.bus import Bus, Producer
from slipstream.config import DEFAULT_PARTITIONS, EVENTS_TOPIC, RAW_TOPIC
from slipstream.errors import ConfigError
from slipstream.metrics import Registry
from slipstream.records import RaceEvent, RawBatch, car_key, encode_event, encode_raw

__all__ = ["SimulatorService"]

logger = logging.getLogger(__name__)


class SimulatorService:
    """Simulates a race into the bus (and/or a recording).

    Args:
        config: The race and how to send it.
        bus: A started bus, or None to only write ``recorder``.
        registry: Where to count records and samples.
        recorder: Also write every record sent to this recording.
        partitions: Partitions of the topics when this service creates them.
        raw_topic: Topic of the raw records.
        events_topic: Topic of the race events.

    Raises:
        ConfigError: ``silent_car`` is not a car of the race.
    """

    def __init__(
        self,
        config: SimulatorConfig,
        bus: Bus | None,
        registry: Registry | None = None,
        *,
        recorder: RecordWriter | None = None,
        partitions: int = DEFAULT_PARTITIONS,
        raw_topic: str = RAW_TOPIC,
        events_topic: str = EVENTS_TOPIC,
    ) -> None:
        if bus is None and recorder is None:
            raise ValueError("SimulatorService needs a bus, a recorder or both")
        self.config = config
        self.bus = bus
        self.recorder = recorder
        self.partitions = partitions
        self.raw_topic = raw_topic
        self.events_topic = events_topic
        self.sim = Simulation(config)
        numbers = [int(c) for c in self.sim.numbers]
        if config.silent_car is not None and config.silent_car not in numbers:
            raise ConfigError(
                f"--silent-car {config.silent_car} is not in this race; its cars are "
                f"{', '.join(str(c) for c in sorted(numbers))}"
            )
        self._numbers = numbers
        self._keys = [car_key(c) for c in numbers]
        self._race_key = config.race_id.encode()
        self.faults = FaultInjector(config)
        self.summary = SummaryBuilder()
        self.records_sent = 0
        self._pending_raw: list[tuple[bytes | None, bytes]] = []
        self._pending_events: list[tuple[bytes | None, bytes]] = []
        self.samples = 0
        registry = registry or Registry()
        self._records_total = registry.counter(
            "slipstream_sim_records_total", "Raw records the simulator sent"
        )
        self._samples_total = registry.counter(
            "slipstream_sim_samples_total", "Car-samples the simulator produced"
        )
        self._events_total = registry.counter(
            "slipstream_sim_events_total", "Race events the simulator sent"
        )
        self._wall_start = time.perf_counter()
        self._race_time_s = 0.0
        self._race_time = registry.gauge(
            "slipstream_sim_race_time_seconds", "Race time the simulator has reached"
        )

    async def run(self) -> RaceSummary:
        """Run the race to its end (or ``duration_s``); returns the summary."""
        cfg = self.config
        producer: Producer | None = None
        if self.bus is not None:
            await self.bus.ensure_topic(self.raw_topic, self.partitions)
            await self.bus.ensure_topic(self.events_topic, self.partitions)
            producer = await self.bus.producer()
        loop = asyncio.get_running_loop()
        start = loop.time()
        self._wall_start = time.perf_counter()
        batch_ns = cfg.samples_per_batch * 1_000_000_000 // cfg.rate_hz
        n = cfg.samples_per_batch
        logger.info(
            "simulating race %s: %d cars at %d Hz, speed %s", cfg.race_id, cfg.cars, cfg.rate_hz,
            cfg.speed or "flat out",
        )  # fmt: skip
        inflight: asyncio.Future[None] | None = None
        try:
            while (chunk := self.sim.next_chunk()) is not None:
                raw: list[OutRecord] = []
                events = list(chunk.events)
                for b, t0 in enumerate(chunk.batch_t0_ns):
                    t_send = t0 + batch_ns
                    records = [
                        (car, self._keys[i], encode_raw(RawBatch(
                            cfg.race_id, car, chunk.first_batch + b, t0, cfg.rate_hz,
                            chunk.values[i, b * n : (b + 1) * n],
                        )))
                        for i, car in enumerate(self._numbers)
                    ]  # fmt: skip
                    raw += self.faults.apply(records, t0)
                    self.samples += n * len(records)
                    self._samples_total.inc(n * len(records))
                    due = [e for e in events if e.t_ns < t_send]
                    events = events[len(due) :]
                    if cfg.speed > 0:
                        delay = start + t_send / 1e9 / cfg.speed - loop.time()
                        if delay > 0:
                            await asyncio.sleep(delay)
                    self._emit(raw, due, t_send)
                    raw = []
                    if cfg.speed > 0:
                        await self._flush(producer)
                    else:
                        await asyncio.sleep(0)  # let the other stages run
                    self._race_time_s = t_send / 1e9
                    self._race_time.set(self._race_time_s)
                if events:
                    self._emit([], events, chunk.end_ns)
                # Flat out, a chunk's records go to the bus in one pipelined request,
                # acknowledged while the next chunk is computed (one in flight keeps
                # the order of each partition).
                if inflight is not None:
                    await inflight
                inflight = asyncio.ensure_future(self._flush(producer))
            if inflight is not None:
                await inflight
                inflight = None
            self._emit(self.faults.flush(), [], self.summary.last_t_ns)
            await self._flush(producer)
        finally:
            if inflight is not None and not inflight.done():
                inflight.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await inflight
            if producer is not None:
                await producer.stop()
        result = self.summary_so_far()
        logger.info(
            "race %s done: %d laps, %d records in %.1f s", cfg.race_id, result.laps,
            result.records, result.wall_s,
        )  # fmt: skip
        return result

    def summary_so_far(self) -> RaceSummary:
        """The race summary up to now (the full one once :meth:`run` has returned)."""
        wall = time.perf_counter() - self._wall_start
        race_time_s = max(self._race_time_s, self.summary.last_t_ns / 1e9)
        return self.summary.result(self.records_sent, self.samples, wall, race_time_s)

    def _emit(self, raw: list[OutRecord], events: list[RaceEvent], t_ns: int) -> None:
        """Record, count and queue for the bus what is sent at race time ``t_ns``."""
        recorder = self.recorder
        if raw:
            items = [(key, value) for _, key, value in raw]
            if self.bus is not None:
                self._pending_raw += items
            if recorder is not None:
                for key, value in items:
                    recorder.write(t_ns, RAW_TOPIC, key, value)
            self.records_sent += len(items)
            self._records_total.inc(len(items))
        if events:
            encoded = [(self._race_key, encode_event(e)) for e in events]
            if self.bus is not None:
                self._pending_events += encoded
            if recorder is not None:
                for key, value in encoded:
                    recorder.write(t_ns, EVENTS_TOPIC, key, value)
            for event in events:
                self.summary.add(event)
            self._events_total.inc(len(events))

    def _flush(self, producer: Producer | None) -> Awaitable[None]:
        """Send what :meth:`_emit` has queued so far; await it for the bus's acks."""
        raw, events = self._pending_raw, self._pending_events
        self._pending_raw, self._pending_events = [], []
        return self._send(producer, raw, events)

    async def _send(
        self,
        producer: Producer | None,
        raw: list[tuple[bytes | None, bytes]],
        events: list[tuple[bytes | None, bytes]],
    ) -> None:
        if producer is None:
            return
        if raw:
            await producer.send_many(self.raw_topic, raw)
        if events:
            await producer.send_many(self.events_topic, events)
