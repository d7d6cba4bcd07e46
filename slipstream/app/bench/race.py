"""Pre-computed 2 Hz frames of a simulated race, to feed a broadcast node in benchmarks.

The frames come from the real pipeline's pure cores: the simulator's kernel
makes raw batches, the downsampler's partition windows reduce them to 2 Hz
frames.  Computing them before the run keeps simulation and downsampling out
of the server's CPU figures, so the fan-out is what is measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from downsample.windows import PartitionWindows
from simulator.config import SimulatorConfig
from simulator.kernel import Simulation
from slipstream.bus import Record
from slipstream.catalogue import CATALOGUE
from slipstream.config import RAW_TOPIC
from slipstream.records import (
    TICK_NS,
    Frame,
    RaceEvent,
    RawBatch,
    car_key,
    decode_event,
    encode_event,
    encode_raw,
)

__all__ = ["RaceFrames", "simulate_race"]


@dataclass(frozen=True, slots=True, eq=False)
class RaceFrames:
    """Every car's frame of every tick of a race.

    Attributes:
        race: Race id.
        cars: Car numbers, shape (cars,).
        q: Quantised values, shape (ticks, cars, channels), int32; tick ``i``
            of the race is row ``i``.
        start: The ``race_start`` event (its entry list tells the node which
            cars to expect each tick).
    """

    race: str
    cars: NDArray[np.int64]
    q: NDArray[np.int32]
    start: RaceEvent

    @property
    def ticks(self) -> int:
        """Number of ticks."""
        return int(self.q.shape[0])

    def frames(self, tick: int) -> list[Frame]:
        """The frames of ``tick``, one per car."""
        if not 0 <= tick < self.ticks:
            raise ValueError(f"tick {tick} out of range 0..{self.ticks - 1}")
        row = self.q[tick]
        return [
            Frame(self.race, tick, int(car), row[i], 1) for i, car in enumerate(self.cars.tolist())
        ]

    def save(self, path: Path) -> None:
        """Write to an ``.npz`` file (see :meth:`load`)."""
        start = np.frombuffer(encode_event(self.start), dtype=np.uint8)
        np.savez(path, race=np.array(self.race), cars=self.cars, q=self.q, start=start)

    @classmethod
    def load(cls, path: Path) -> RaceFrames:
        """Read a file written by :meth:`save`."""
        with np.load(path) as data:
            start = decode_event(data["start"].tobytes())
            return cls(
                str(data["race"]), data["cars"].astype(np.int64), data["q"].astype(np.int32), start
            )


def simulate_race(cars: int, seconds: float, seed: int = 1, rate_hz: int = 50) -> RaceFrames:
    """Simulate ``seconds`` of a race of ``cars`` cars and downsample it to 2 Hz frames.

    Raises:
        ValueError: Arguments out of range (see :class:`simulator.config.SimulatorConfig`).
    """

    if seconds <= 0:
        raise ValueError("seconds must be positive")
    config = SimulatorConfig(cars=cars, rate_hz=rate_hz, speed=0, seed=seed, duration_s=seconds)
    sim = Simulation(config)
    windows = PartitionWindows(RAW_TOPIC, 0)
    numbers = [int(c) for c in sim.numbers]
    per_batch = sim.samples_per_batch
    offset = 0
    frames: list[Frame] = []
    start: RaceEvent | None = None
    while (chunk := sim.next_chunk()) is not None:
        records = []
        for b, t0_ns in enumerate(chunk.batch_t0_ns):
            for i, car in enumerate(numbers):
                batch = RawBatch(
                    sim.race, car, chunk.first_batch + b, t0_ns, rate_hz,
                    chunk.values[i, b * per_batch : (b + 1) * per_batch],
                )  # fmt: skip
                records.append(Record(RAW_TOPIC, 0, offset, car_key(car), encode_raw(batch), 0))
                offset += 1
        ready, _ = windows.process(records)
        frames += ready
        start = start or next((e for e in chunk.events if e.kind == "race_start"), None)
    frames += windows.flush_all()
    ticks = round(seconds * 1e9 / TICK_NS)
    order = {car: i for i, car in enumerate(sorted(numbers))}
    q = np.full((ticks, len(numbers), len(CATALOGUE)), 0, dtype=np.int32)
    seen = np.zeros((ticks, len(numbers)), dtype=bool)
    for frame in frames:
        if frame.tick < ticks:
            q[frame.tick, order[frame.car]] = frame.q
            seen[frame.tick, order[frame.car]] = True
    if not seen.all():
        raise ValueError("the simulated race lacks frames of some cars; simulate longer")
    if start is None:
        start = RaceEvent(sim.race, 0, "race_start", tuple(numbers), {})
    return RaceFrames(sim.race, np.array(sorted(numbers), dtype=np.int64), q, start)
