"""The simulation kernel: race model + sensor model + noise + quantisation, chunk by chunk.

Pure and deterministic: no clock, no I/O.  :meth:`Simulation.next_chunk`
advances the race by a few batch intervals and returns every car's samples
for them and the race events that happened, all in race time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from simulator.config import SimulatorConfig
from simulator.model import SNAPSHOT_FIELDS, RaceModel
from simulator.sensors import NOISE_RESOLUTIONS, SensorModel
from simulator.track import get_track
from slipstream.catalogue import CATALOGUE
from slipstream.records import RaceEvent

__all__ = ["Chunk", "Simulation", "quantise_values"]

_RES = CATALOGUE.resolution
_INV_RES = 1.0 / _RES
_QLO = np.ceil(CATALOGUE.minimum / _RES - 1e-9) + 0.0
_QHI = np.floor(CATALOGUE.maximum / _RES + 1e-9)
_NOISE = np.array([NOISE_RESOLUTIONS.get(c.name, 0.0) for c in CATALOGUE], dtype=np.float32)
_POOL = 1 << 14
CHUNK_MS = 1000


def quantise_values(
    values: NDArray[np.float64], noise: NDArray[np.float32] | None = None
) -> NDArray[np.float32]:
    """Quantise channel values in place and return them as float32.

    Args:
        values: Values in channel units, shape (..., channels); overwritten.
        noise: Noise to add, in units of each channel's resolution, same shape.

    Returns:
        ``float32(clip(rint(v / resolution + noise)) * resolution)``, same shape.
    """
    values *= _INV_RES
    if noise is not None:
        values += noise
    np.rint(values, out=values)
    values += 0.0  # -0.0 -> 0.0: one bit pattern per value
    np.clip(values, _QLO, _QHI, out=values)
    values *= _RES
    return values.astype(np.float32)


@dataclass(frozen=True, slots=True, eq=False)
class Chunk:
    """A few batch intervals of the race.

    Attributes:
        first_batch: Index of the first batch interval (its records' ``seq``).
        batch_t0_ns: Race time of each batch's first sample, shape (batches,).
        end_ns: Race time at the end of the last batch interval.
        values: Quantised samples, shape (cars, batches * samples_per_batch, channels).
        events: Race events up to ``end_ns``, in time order.
    """

    first_batch: int
    batch_t0_ns: tuple[int, ...]
    end_ns: int
    values: NDArray[np.float32]
    events: list[RaceEvent]


class Simulation:
    """A whole race, produced chunk by chunk.

    Args:
        config: The race to simulate (faults on records are applied elsewhere;
            sensor dropouts, being in the values, are applied here).
    """

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.race = config.race_id
        self.track = get_track(config.track)
        self.model = RaceModel(self.track, config.cars, config.race_laps, config.seed, self.race)
        self.entries = self.model.entries
        self.numbers = self.model.numbers
        self.sensors = SensorModel(
            self.track, config.cars, config.physics_hz, np.random.default_rng([config.seed, 2])
        )
        self._rng = np.random.default_rng([config.seed, 3])
        self.samples_per_batch = config.samples_per_batch
        self.batches_per_chunk = max(1, CHUNK_MS // config.batch_ms)
        self._columns = config.cars * self.batches_per_chunk * self.samples_per_batch
        pool = max(_POOL, 4 * self._columns)
        self._noise = self._rng.standard_normal((pool, len(CATALOGUE)), dtype=np.float32)
        self._noise *= _NOISE
        self._batch = 0
        self._step = 0
        self._snaps = np.empty((1, len(SNAPSHOT_FIELDS), config.cars))
        self.model.snapshot(self._snaps[0])
        self._end_ns: int | None = None
        self.done = False

    def _batch_t0_ns(self, batch: int) -> int:
        return batch * self.samples_per_batch * 1_000_000_000 // self.config.rate_hz

    def next_chunk(self) -> Chunk | None:
        """The next chunk, or None once the race (or ``duration_s``) has ended."""
        if self.done:
            return None
        cfg = self.config
        hz = cfg.physics_hz
        n = self.samples_per_batch
        first = self._batch
        t0s = [self._batch_t0_ns(b) for b in range(first, first + self.batches_per_chunk)]
        end_ns = self._batch_t0_ns(first + self.batches_per_chunk)
        if cfg.duration_s is not None:
            t0s = [t for t in t0s if t < round(cfg.duration_s * 1e9)]
        if self._end_ns is not None:
            t0s = [t for t in t0s if t <= self._end_ns]
        if not t0s:
            self.done = True
            return None
        end_ns = self._batch_t0_ns(first + len(t0s))
        offsets = (np.arange(n, dtype=np.int64) * 1_000_000_000) // cfg.rate_hz
        times = (np.asarray(t0s, dtype=np.int64)[:, None] + offsets[None, :]).reshape(-1)
        # Physics up to the step after the last sample.
        last_step = int(times[-1] * hz // 1_000_000_000) + 1
        first_step = self._step
        new = last_step - first_step
        snaps = np.empty((new + 1, len(SNAPSHOT_FIELDS), cfg.cars))
        snaps[0] = self._snaps[-1]
        dt = 1.0 / hz
        model = self.model
        limit_ns = None if cfg.duration_s is None else round(cfg.duration_s * 1e9)
        for k in range(1, new + 1):
            if not model.over:
                model.step(dt)
                # Race time from the integer step count: no drift from adding dt.
                model.t = (first_step + k) / hz
                if limit_ns is not None and (first_step + k) * 1_000_000_000 >= limit_ns * hz:
                    model.control.end("duration")
            model.snapshot(snaps[k])
        self._step = last_step
        self._snaps = snaps[-1:]
        events = model.log.drain()
        if model.over and self._end_ns is None:
            self._end_ns = max((e.t_ns for e in events if e.kind == "race_end"), default=end_ns)
            # No samples of a finished race: keep the batches that started before its end.
            keep = max(1, sum(1 for t in t0s if t <= self._end_ns))
            t0s = t0s[:keep]
            times = times[: keep * n]
            end_ns = self._batch_t0_ns(first + keep)
        values = self.sensors.channels(snaps, times, first_step)
        rows = values.shape[0] * values.shape[1]
        off = int(self._rng.integers(0, self._noise.shape[0] - rows + 1))
        out = quantise_values(values, self._noise[off : off + rows].reshape(values.shape))
        if cfg.dropout_rate > 0:
            self._dropouts(out, len(t0s))
        self._batch = first + len(t0s)
        return Chunk(first, tuple(t0s), end_ns, out, events)

    def _dropouts(self, values: NDArray[np.float32], batches: int) -> None:
        """Blank a few channels for a run of samples in a fraction of the records."""
        n = self.samples_per_batch
        rng = self._rng
        hit = np.argwhere(rng.random((values.shape[0], batches)) < self.config.dropout_rate)
        for car, b in hit.tolist():
            channels = rng.choice(values.shape[2], size=int(rng.integers(1, 5)), replace=False)
            start = int(rng.integers(0, n))
            stop = int(rng.integers(start + 1, n + 1))
            values[car, b * n + start : b * n + stop, channels] = np.nan
