"""Restart checkpoints: the little state a partition needs to resume exactly.

Before the downsampler commits offset ``O`` of a raw partition it writes a
checkpoint to partition ``p`` of the checkpoint topic (one writer per
partition, the group member that owns it).  A member that is assigned the
partition later reads the last checkpoint there, restores it and resumes at
``O``.  The record is a msgpack map (version 1)::

    {"v": 1, "group": str, "topic": str, "partition": int,
     "offset": int,          # commit point O: resume reading here
     "read": int,            # records below this were fully handled (no dead letters again)
     "midstream": bool,      # reading began after the partition's first record
     "races": [[race, max_ts_ns, closed_tick, suppress_through_tick], ...],
     "cars": [[race, car, horizon, rows], ...]}
        # rows: little-endian int64 (seq, offset, first_ns, last_ns, rate_hz) per seq
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from downsample.windows import PartitionWindows, RaceSnapshot, Snapshot
from ingest.dedup import SeenSeqs

__all__ = ["Checkpoint", "decode_checkpoint", "encode_checkpoint"]

CHECKPOINT_VERSION = 1


@dataclass(frozen=True, slots=True, eq=False)
class Checkpoint:
    """A partition's restart state (see the module docstring)."""

    group: str
    topic: str
    partition: int
    state: Snapshot

    @property
    def offset(self) -> int:
        """Commit point: resume reading here."""
        return self.state.offset

    @classmethod
    def of(cls, group: str, windows: PartitionWindows) -> Checkpoint:
        """The checkpoint of ``windows`` at its current commit point."""
        return cls(group, windows.topic, windows.partition, windows.snapshot())

    def apply(self, windows: PartitionWindows) -> None:
        """Load this state into ``windows``."""
        windows.restore(self.state)


def encode_checkpoint(checkpoint: Checkpoint) -> bytes:
    """Encode a checkpoint."""
    state = checkpoint.state
    cars = [
        [race, car, seen.horizon, seen.before(state.offset).astype("<i8").tobytes()]
        for race, car, seen in state.cars
    ]
    packed: bytes = msgpack.packb(
        {
            "v": CHECKPOINT_VERSION,
            "group": checkpoint.group,
            "topic": checkpoint.topic,
            "partition": checkpoint.partition,
            "offset": state.offset,
            "read": state.read_mark,
            "midstream": state.midstream,
            "races": [[r.race, r.max_ts_ns, r.closed, r.suppress_through] for r in state.races],
            "cars": cars,
        },
        use_bin_type=True,
    )
    return packed


def decode_checkpoint(data: bytes) -> Checkpoint:
    """Decode a checkpoint.

    Raises:
        ValueError: Not a version-1 checkpoint.
    """
    try:
        obj: Any = msgpack.unpackb(data, raw=False)
        if obj.get("v") != CHECKPOINT_VERSION:
            raise ValueError(f"checkpoint version {obj.get('v')!r}")
        races = tuple(RaceSnapshot(str(r), int(m), int(c), int(s)) for r, m, c, s in obj["races"])
        cars = tuple(
            (
                str(race),
                int(car),
                SeenSeqs.restore(
                    np.frombuffer(rows, dtype="<i8").astype(np.int64).reshape(-1, 5), int(horizon)
                ),
            )
            for race, car, horizon, rows in obj["cars"]
        )
        state = Snapshot(int(obj["offset"]), int(obj["read"]), bool(obj["midstream"]), races, cars)
        return Checkpoint(str(obj["group"]), str(obj["topic"]), int(obj["partition"]), state)
    except (KeyError, TypeError, AttributeError, ValueError, msgpack.UnpackException) as exc:
        raise ValueError(f"not a valid checkpoint: {exc}") from exc
