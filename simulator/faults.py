"""Fault injection on encoded raw records, for testing the rest of the pipeline.

Applied to the stream of ``(car, key, value)`` records in send order, with a
seeded generator of its own (the race is the same with or without faults):

* duplicate: the record is sent twice in a row;
* reorder: the record is held back and sent right after the same car's next
  record (so the car's partition sees ``seq`` n+1 before n);
* corrupt: the bytes are damaged (truncated, a wrong version, or flipped
  bytes in the header) so that decoding fails or yields nonsense;
* silent car: from ``silent_after_s`` of race time one car sends nothing.

Sensor dropouts are in the values and are made by :mod:`simulator.kernel`.
"""

from __future__ import annotations

import numpy as np

from simulator.config import SimulatorConfig

__all__ = ["FaultInjector", "OutRecord"]

#: One record to send: (car number, key, value).
OutRecord = tuple[int, bytes, bytes]


class FaultInjector:
    """Applies the fault knobs of a config to records; a no-op with the defaults."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self._rng = np.random.default_rng([config.seed, 4])
        self._held: dict[int, OutRecord] = {}
        self.counts = {"duplicated": 0, "reordered": 0, "corrupted": 0, "silenced": 0}
        self.active = (
            config.dup_rate > 0
            or config.reorder_rate > 0
            or config.corrupt_rate > 0
            or config.silent_car is not None
        )

    def apply(self, records: list[OutRecord], t_ns: int) -> list[OutRecord]:
        """The records to send for ``records`` produced at race time ``t_ns``."""
        if not self.active:
            return records
        cfg = self.config
        rng = self._rng
        out: list[OutRecord] = []
        silent_from = round(cfg.silent_after_s * 1e9)
        for record in records:
            car = record[0]
            if car == cfg.silent_car and t_ns >= silent_from:
                self.counts["silenced"] += 1
                continue
            if cfg.corrupt_rate and rng.random() < cfg.corrupt_rate:
                record = (car, record[1], self._corrupt(record[2]))
                self.counts["corrupted"] += 1
            held = self._held.pop(car, None)
            if held is None and cfg.reorder_rate and rng.random() < cfg.reorder_rate:
                self._held[car] = record
                self.counts["reordered"] += 1
                continue
            out.append(record)
            if cfg.dup_rate and rng.random() < cfg.dup_rate:
                out.append(record)
                self.counts["duplicated"] += 1
            if held is not None:
                out.append(held)
        return out

    def flush(self) -> list[OutRecord]:
        """Records still held back (at the end of the race)."""
        held = [self._held[car] for car in sorted(self._held)]
        self._held.clear()
        return held

    def _corrupt(self, value: bytes) -> bytes:
        rng = self._rng
        mode = int(rng.integers(0, 3))
        if mode == 0:  # truncated
            return value[: int(rng.integers(1, max(2, len(value) // 2)))]
        data = bytearray(value)
        if mode == 1:  # an unknown format version (the "v" field's value follows its key)
            at = data.find(b"\xa1v")
            if at >= 0:
                data[at + 2] = 0x7F
                return bytes(data)
        for at in rng.integers(0, min(len(data), 64), size=4).tolist():
            data[at] ^= int(rng.integers(1, 256))
        return bytes(data)
