"""Restart checkpoints: the little state a partition needs to resume exactly.

Before the downsampler commits offset ``O`` of a raw partition it writes a
checkpoint to partition ``p`` of the checkpoint topic (one writer per
partition, the group member that owns it).  A member that is assigned the
partition later reads the last checkpoint there, restores it and resumes at
``O``.  The record is a msgpack map (version 1)::

    {"v": 1, "group": str, "topic": str, "partition": int,
     "offset": int,          # commit point O: resume reading here
     "read": int,            # records below this were fully handled (no dead letters again)
     "races": [[race, max_ts_ns, closed_tick, suppress_through_tick], ...],
     "cars": [[race, car, horizon, seqs <i8 bytes>, offsets <i8 bytes>], ...]}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from downsample.windows import PartitionWindows, RaceSnapshot
from ingest.dedup import SeenSeqs

__all__ = ["Checkpoint", "decode_checkpoint", "encode_checkpoint"]

CHECKPOINT_VERSION = 1


@dataclass(frozen=True, slots=True, eq=False)
class Checkpoint:
    """A partition's restart state (see the module docstring)."""

    group: str
    topic: str
    partition: int
    offset: int
    read_mark: int
    races: tuple[RaceSnapshot, ...]
    cars: tuple[tuple[str, int, SeenSeqs], ...]

    @classmethod
    def of(cls, group: str, windows: PartitionWindows) -> Checkpoint:
        """The checkpoint of ``windows`` at its current commit point."""
        offset, read_mark, races, cars = windows.snapshot()
        return cls(
            group, windows.topic, windows.partition, offset, read_mark, tuple(races), tuple(cars)
        )

    def apply(self, windows: PartitionWindows) -> None:
        """Load this state into ``windows``."""
        windows.restore(self.offset, self.read_mark, self.races, self.cars)


def encode_checkpoint(checkpoint: Checkpoint) -> bytes:
    """Encode a checkpoint."""
    cars = []
    for race, car, seen in checkpoint.cars:
        seqs, offsets = seen.before(checkpoint.offset)
        cars.append(
            [race, car, seen.horizon, seqs.astype("<i8").tobytes(), offsets.astype("<i8").tobytes()]
        )
    packed: bytes = msgpack.packb(
        {
            "v": CHECKPOINT_VERSION,
            "group": checkpoint.group,
            "topic": checkpoint.topic,
            "partition": checkpoint.partition,
            "offset": checkpoint.offset,
            "read": checkpoint.read_mark,
            "races": [
                [r.race, r.max_ts_ns, r.closed, r.suppress_through] for r in checkpoint.races
            ],
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
                    np.frombuffer(seqs, dtype="<i8").astype(np.int64),
                    np.frombuffer(offsets, dtype="<i8").astype(np.int64),
                    int(horizon),
                ),
            )
            for race, car, horizon, seqs, offsets in obj["cars"]
        )
        return Checkpoint(
            str(obj["group"]),
            str(obj["topic"]),
            int(obj["partition"]),
            int(obj["offset"]),
            int(obj["read"]),
            races,
            cars,
        )
    except (KeyError, TypeError, AttributeError, ValueError, msgpack.UnpackException) as exc:
        raise ValueError(f"not a valid checkpoint: {exc}") from exc
