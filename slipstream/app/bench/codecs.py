"""``slipstream bench codecs``: bytes and encode/decode time per car-update of each codec.

Frames (:func:`race_frames`) are 2 Hz quantised frames of every car, measured
codec by codec on the same ticks:

* ``simulator`` (default): the project's simulator kernel (race model, sensor
  model, noise, dropouts) at 120 Hz, reduced to 500 ms windows by the
  downsampler's kernel with each channel's aggregation rule, then quantised —
  what the broadcast node receives, without the bus in between;
* ``synthetic``: a smooth generator (:func:`synthetic_race`): per channel a few
  sinusoids at lap and sub-lap periods plus noise of the order of the channel's
  resolution, piecewise-constant state channels, monotone counters and rare
  dropouts; noisier than the simulator (three channels in four change per tick).

The Debian ``xdelta3`` tool is measured on the same (car, group) parts (a
subprocess per part: a measurement of its output size, and of its cost as a
tool, not a hot path).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from downsample.kernel import AggregationPlan, reduce_segments
from simulator.config import SimulatorConfig
from simulator.kernel import Simulation
from slipstream.catalogue import CATALOGUE, MISSING
from slipstream.codecs import CODECS
from slipstream.codecs.vcdiff import to_planes

__all__ = ["FRAME_SOURCES", "BenchConfig", "run_bench", "simulated_race", "synthetic_race"]

TICK_S = 0.5
FRAME_SOURCES = ("simulator", "synthetic")


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """What ``slipstream bench codecs`` measures.

    Attributes:
        frames: Where frames come from: "simulator" or "synthetic".
        start_s: Race time of the first measured tick (simulator frames), past the start.
        ticks: Ticks of race (2 Hz) to encode; the first is the keyframe.
        cars: Cars on track.
        seed: Seed of the race generator.
        decode_ticks: Delta ticks whose parts are decoded to time the decoders.
        xdelta3_ticks: Delta ticks whose parts go through the ``xdelta3`` tool (0: skip).
        xdelta3: The ``xdelta3`` executable.
    """

    frames: str = "simulator"
    start_s: float = 60.0
    ticks: int = 120
    cars: int = 40
    seed: int = 1
    decode_ticks: int = 10
    xdelta3_ticks: int = 1
    xdelta3: str = "xdelta3"

    def __post_init__(self) -> None:
        if self.ticks < 2:
            raise ValueError("ticks must be at least 2 (a keyframe and a delta)")
        if self.cars < 1:
            raise ValueError("cars must be at least 1")
        if self.frames not in FRAME_SOURCES:
            raise ValueError(f"frames must be one of {', '.join(FRAME_SOURCES)}")
        if self.start_s < 0:
            raise ValueError("start_s must be >= 0")
        if self.decode_ticks < 1 or self.xdelta3_ticks < 0:
            raise ValueError("decode_ticks must be >= 1 and xdelta3_ticks >= 0")


def synthetic_race(cars: int, ticks: int, seed: int) -> NDArray[np.int32]:
    """Quantised 2 Hz frames of a smooth synthetic race, shape (ticks, cars, channels)."""
    rng = np.random.default_rng(seed)
    channels = len(CATALOGUE)
    lo, hi, res = CATALOGUE.minimum, CATALOGUE.maximum, CATALOGUE.resolution
    span = hi - lo
    t = np.arange(ticks)[:, None, None] * TICK_S
    lap_s = rng.uniform(29.0, 31.0, (1, cars, 1))
    phase = rng.uniform(0, 2 * np.pi, (1, cars, 1))
    lap = 2 * np.pi * t / lap_s + phase  # (ticks, cars, 1)

    centre = lo + span * rng.uniform(0.3, 0.7, channels)
    amp = span * rng.uniform(0.01, 0.15, channels)
    harmonic = rng.integers(1, 6, channels)
    ch_phase = rng.uniform(0, 2 * np.pi, channels)
    noise = res * rng.uniform(0.1, 3.0, channels)
    values = centre + amp * np.sin(harmonic * lap + ch_phase)
    values = values + rng.normal(0.0, 1.0, values.shape) * noise

    is_last = CATALOGUE.agg_codes == 1  # "last": state, setup, position or counter
    kind = rng.integers(0, 3, channels)
    state = is_last & (kind == 0)  # piecewise constant, rare steps
    counter = is_last & (kind == 1)  # monotone, slow
    smooth = is_last & (kind == 2)  # follows the lap without sensor noise
    steps = (rng.random((ticks, cars, channels)) < 0.01) * rng.choice(
        [-1, 1], (ticks, cars, channels)
    )
    values[..., state] = (centre + np.cumsum(steps, axis=0) * 4 * res)[..., state]
    rate = res * rng.uniform(0.05, 0.5, channels)
    values[..., counter] = (lo + span * 0.1 + t * rate)[..., counter]
    values[..., smooth] = (centre + amp * np.sin(harmonic * lap + ch_phase))[..., smooth]

    q = CATALOGUE.quantise(values)
    # Dropouts: a sensor goes silent for a few ticks now and then.
    start = rng.random((ticks, cars, channels)) < 0.0005
    silent = np.zeros_like(start)
    for lag in range(4):
        silent[lag:] |= start[: ticks - lag]
    q[silent] = MISSING
    return q


def simulated_race(
    cars: int, ticks: int, seed: int, start_s: float = 60.0, dropout_rate: float = 0.01
) -> NDArray[np.int32]:
    """Quantised 2 Hz frames of a simulated race, shape (ticks, cars, channels).

    Args:
        cars: Field size.
        ticks: Frames per car.
        seed: Seed of the race.
        start_s: Race time of the first frame (the start is skipped).
        dropout_rate: Fraction of raw records with sensor dropouts.
    """

    config = SimulatorConfig(
        cars=cars,
        seed=seed,
        speed=0.0,
        duration_s=start_s + ticks * TICK_S + 1.0,
        dropout_rate=dropout_rate,
    )
    per_tick = round(config.rate_hz * TICK_S)
    first = round(start_s * config.rate_hz)
    need = first + ticks * per_tick
    simulation = Simulation(config)
    chunks: list[NDArray[np.float32]] = []
    have = 0
    while have < need:
        chunk = simulation.next_chunk()
        if chunk is None:
            raise ValueError(f"the race ended before {need / config.rate_hz:.0f} s")
        chunks.append(chunk.values)
        have += chunk.values.shape[1]
    samples = np.concatenate(chunks, axis=1)[:, first:need]  # (cars, ticks * per_tick, channels)
    rows = samples.reshape(cars * ticks * per_tick, len(CATALOGUE))
    starts = np.arange(cars * ticks, dtype=np.intp) * per_tick
    values = reduce_segments(rows, starts, AggregationPlan.from_catalogue(CATALOGUE))
    return CATALOGUE.quantise(values.reshape(cars, ticks, -1).transpose(1, 0, 2))


def race_frames(config: BenchConfig) -> tuple[str, NDArray[np.int32]]:
    """Frames to measure on, shape (ticks, cars, channels), and where they come from."""
    if config.frames == "simulator":
        return "simulator", simulated_race(config.cars, config.ticks, config.seed, config.start_s)
    return "synthetic", synthetic_race(config.cars, config.ticks, config.seed)


def _parts_bytes(parts: list[list[bytes]]) -> int:
    return sum(len(p) for row in parts for p in row)


def _measure_codec(name: str, frames: NDArray[np.int32], config: BenchConfig) -> dict[str, Any]:
    codec = CODECS[name]
    groups = CATALOGUE.groups
    ticks, cars, _ = frames.shape
    keyframes = codec.encode_keyframes(frames[0], groups)
    encode_ns: list[int] = []
    total_bytes = 0
    decode_ns = 0
    decoded_updates = 0
    for tick in range(1, ticks):
        prev, q = frames[tick - 1], frames[tick]
        began = time.perf_counter_ns()
        parts = codec.encode_deltas(prev, q, groups)
        encode_ns.append(time.perf_counter_ns() - began)
        total_bytes += _parts_bytes(parts)
        if tick <= config.decode_ticks:
            began = time.perf_counter_ns()
            for car in range(cars):
                for gi, group in enumerate(groups):
                    out = codec.decode_delta(prev[car, group.start : group.stop], parts[car][gi])
            decode_ns += time.perf_counter_ns() - began
            decoded_updates += cars
            if not np.array_equal(out, q[cars - 1, groups[-1].start : groups[-1].stop]):
                raise RuntimeError(f"{name} did not round-trip in the benchmark")
    updates = (ticks - 1) * cars
    return {
        "bytes_per_car_update": total_bytes / updates,
        "encode_us_per_car_update": sum(encode_ns) / 1e3 / updates,
        "decode_us_per_car_update": decode_ns / 1e3 / decoded_updates,
        "keyframe_bytes_per_car": _parts_bytes(keyframes) / cars,
        "encode_us_per_tick_p50": float(np.median(encode_ns)) / 1e3,
        "_encode_ns": encode_ns,
    }


def _run(args: list[str]) -> tuple[bytes, int]:
    began = time.perf_counter_ns()
    done = subprocess.run(args, capture_output=True, check=True)
    return done.stdout, time.perf_counter_ns() - began


def _measure_xdelta3(frames: NDArray[np.int32], config: BenchConfig) -> dict[str, Any]:
    """The xdelta3 tool and our vcdiff encoder on the same parts of the first ticks."""
    groups = CATALOGUE.groups
    ticks = min(config.xdelta3_ticks, frames.shape[0] - 1)
    cars = frames.shape[1]
    tool_bytes = ours_bytes = 0
    encode_ns = decode_ns = 0
    encode = [config.xdelta3, "-e", "-S", "none", "-A", "-n", "-f", "-c"]
    with tempfile.TemporaryDirectory(prefix="slipstream-bench-") as tmp:
        base_path, target_path, delta_path = (os.path.join(tmp, n) for n in "btd")
        for tick in range(1, ticks + 1):
            prev, q = frames[tick - 1], frames[tick]
            ours = CODECS["vcdiff"].encode_deltas(prev, q, groups)
            for car in range(cars):
                for gi, group in enumerate(groups):
                    base = to_planes(prev[car, group.start : group.stop])
                    target = to_planes(q[car, group.start : group.stop])
                    with open(base_path, "wb") as f:
                        f.write(base)
                    with open(target_path, "wb") as f:
                        f.write(target)
                    delta, ns = _run([*encode, "-s", base_path, target_path])
                    encode_ns += ns
                    with open(delta_path, "wb") as f:
                        f.write(delta)
                    rebuilt, ns = _run(
                        [config.xdelta3, "-d", "-f", "-c", "-s", base_path, delta_path]
                    )
                    decode_ns += ns
                    if rebuilt != target:
                        raise RuntimeError("xdelta3 did not round-trip in the benchmark")
                    tool_bytes += len(delta)
                    ours_bytes += len(ours[car][gi])
    updates = ticks * cars
    return {
        "bytes_per_car_update": tool_bytes / updates,
        "encode_us_per_car_update": encode_ns / 1e3 / updates,
        "decode_us_per_car_update": decode_ns / 1e3 / updates,
        "ticks_measured": ticks,
        "vcdiff_bytes_per_car_update_same_ticks": ours_bytes / updates,
        "note": "one subprocess per (car, group) part, process start included",
    }


def run_bench(config: BenchConfig) -> dict[str, Any]:
    """Measure every codec (and the xdelta3 tool) on one race; the JSON document.

    Raises:
        ValueError: The xdelta3 tool is not found (and ``xdelta3_ticks`` > 0), or
            the simulated race ends before the ticks asked for.
    """
    if config.xdelta3_ticks and shutil.which(config.xdelta3) is None:
        raise ValueError(
            f"{config.xdelta3} not found: install Debian's xdelta3, name it with --xdelta3, "
            "or skip it with --xdelta3-ticks 0"
        )
    source, frames = race_frames(config)
    result: dict[str, Any] = {}
    for name in CODECS:
        result[name] = _measure_codec(name, frames, config)
    per_tick = np.sum([result[name].pop("_encode_ns") for name in CODECS], axis=0) / 1e3
    if config.xdelta3_ticks:
        result["xdelta3"] = _measure_xdelta3(frames, config)
    full, sparse = result["full"], result["sparse"]
    changed = frames[1:] != frames[:-1]
    result["frames"] = {
        "source": source,
        "start_s": config.start_s if source == "simulator" else None,
        "ticks": config.ticks,
        "cars": config.cars,
        "channels": len(CATALOGUE),
        "groups": len(CATALOGUE.groups),
        "seed": config.seed,
        "changed_channel_fraction": float(changed.mean()),
    }
    result["tick"] = {
        "encode_all_codecs_us_p50": float(np.median(per_tick)),
        "encode_all_codecs_us_p99": float(np.percentile(per_tick, 99)),
        "encode_all_codecs_us_max": float(per_tick.max()),
    }
    goals: dict[str, Any] = {
        "sparse_over_full_bytes": sparse["bytes_per_car_update"] / full["bytes_per_car_update"],
        "sparse_at_most_one_eighth_of_full": sparse["bytes_per_car_update"]
        <= full["bytes_per_car_update"] / 8,
        "tick_encode_all_codecs_within_2ms_p50": float(np.median(per_tick)) <= 2000.0,
    }
    if "xdelta3" in result:
        x = result["xdelta3"]
        goals["vcdiff_no_larger_than_xdelta3"] = (
            x["vcdiff_bytes_per_car_update_same_ticks"] <= x["bytes_per_car_update"]
        )
    result["goals"] = goals
    return result
