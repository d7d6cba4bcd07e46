"""Simulator kernels under pytest-benchmark: the physics step and one second of the field.

Skipped in the ordinary test run (addopts has --benchmark-skip).  Run::

    pytest benchmarks/test_simulator_kernels.py -o addopts="" --benchmark-only \\
        --benchmark-json benchmarks/results/simulator_kernels.json

Each chunk test records its figures (car-samples/s, channel-values/s and the
multiple of real time for its field) in ``extra_info``.  The end-to-end
figure, also through Kafka, is ``slipstream bench simulator``; see
docs/simulator.md.
"""

from __future__ import annotations

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from simulator.config import SimulatorConfig
from simulator.kernel import Simulation
from simulator.model import RaceModel
from simulator.recording_file import RecordWriter
from simulator.track import get_track
from slipstream.catalogue import CATALOGUE
from slipstream.config import RAW_TOPIC
from slipstream.records import RawBatch, car_key, encode_raw


@pytest.mark.benchmark(group="simulator-step")
@pytest.mark.parametrize("track", ["daytona", "martinsville"])
def test_physics_step(benchmark: BenchmarkFixture, track: str) -> None:
    """One physics step (0.1 s) of a 40-car field."""
    model = RaceModel(get_track(track), 40, 200, seed=1, race=f"{track}-1")
    for _ in range(300):  # past the start, cars spread out
        model.step(0.1)

    def step() -> None:
        model.step(0.1)
        model.log.drain()

    benchmark(step)
    assert model.t > 30


@pytest.mark.benchmark(group="simulator-chunk")
@pytest.mark.parametrize(("cars", "rate_hz"), [(40, 120), (40, 50), (10, 1000)])
def test_one_second_of_the_field(benchmark: BenchmarkFixture, cars: int, rate_hz: int) -> None:
    """One second of race: physics, sensors, noise and quantisation for every car."""
    sim = Simulation(SimulatorConfig(cars=cars, rate_hz=rate_hz, speed=0, seed=1))
    for _ in range(20):
        sim.next_chunk()
    chunk = benchmark(sim.next_chunk)
    assert chunk is not None and chunk.values.shape == (cars, rate_hz, len(CATALOGUE))
    seconds = benchmark.stats.stats.mean
    benchmark.extra_info.update(
        {
            "car_samples_per_s": cars * rate_hz / seconds,
            "channel_values_per_s": cars * rate_hz * len(CATALOGUE) / seconds,
            "real_time_multiple": 1.0 / seconds,
        }
    )


@pytest.mark.benchmark(group="simulator-records")
def test_encode_one_second_of_records(benchmark: BenchmarkFixture) -> None:
    """msgpack records of one second of 40 cars at 120 Hz (400 records)."""
    sim = Simulation(SimulatorConfig(speed=0, seed=1))
    chunk = sim.next_chunk()
    assert chunk is not None
    n = sim.samples_per_batch

    def encode() -> int:
        size = 0
        for b, t0 in enumerate(chunk.batch_t0_ns):
            for i, car in enumerate(sim.numbers):
                values = chunk.values[i, b * n : (b + 1) * n]
                size += len(encode_raw(RawBatch(sim.race, int(car), b, t0, 120, values)))
        return size

    assert benchmark(encode) > 400 * 12 * len(CATALOGUE) * 4


@pytest.mark.benchmark(group="simulator-records")
def test_record_one_second(benchmark: BenchmarkFixture, tmp_path: object) -> None:
    """Compact one second of 40 cars into a recording (delta, zigzag, zlib)."""
    sim = Simulation(SimulatorConfig(speed=0, seed=1))
    n = sim.samples_per_batch
    seconds = [sim.next_chunk() for _ in range(5)]
    records = [
        (car_key(int(car)), encode_raw(RawBatch(sim.race, int(car), c.first_batch + b, t0, 120,
                                                c.values[i, b * n : (b + 1) * n])))
        for c in seconds if c is not None
        for b, t0 in enumerate(c.batch_t0_ns)
        for i, car in enumerate(sim.numbers)
    ]  # fmt: skip
    writer = RecordWriter(f"{tmp_path}/bench.slip")
    position = np.zeros(1, dtype=np.int64)

    def record() -> None:
        start = int(position[0]) % 5 * 400
        for key, value in records[start : start + 400]:
            writer.write(0, RAW_TOPIC, key, value)
        position[0] += 1

    benchmark(record)
    writer.close()
