"""Dead-letter records on ``slipstream.dlq``: the original bytes and why they were refused.

A dead letter is a msgpack map (version 1)::

    {"v": 1, "reason": str, "detail": str,
     "topic": str, "partition": int, "offset": int,   # where the record was read
     "key": bytes | None, "value": bytes,             # the original record, untouched
     "race": str | None, "car": int | None, "seq": int | None,
     "samples": int}                                  # samples concerned (late), else 0

It is keyed like the original record (the car), so a car's dead letters stay
in order in one partition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from ingest.errors import Rejected

__all__ = ["DeadLetter", "decode_dead_letter", "encode_dead_letter"]

DLQ_VERSION = 1


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One refused record.

    Attributes:
        reason: Machine-readable reason.
        detail: Explanation for people.
        topic: Source topic.
        partition: Source partition.
        offset: Source offset.
        key: Original key.
        value: Original bytes.
        race: Race id, when known.
        car: Car number, when known.
        seq: Batch sequence number, when known.
        samples: For ``late``: how many of the record's samples were late.
    """

    reason: str
    detail: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    race: str | None = None
    car: int | None = None
    seq: int | None = None
    samples: int = 0

    @classmethod
    def from_rejection(
        cls,
        rejected: Rejected,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes,
    ) -> DeadLetter:
        """A dead letter for a record that failed validation."""
        return cls(
            rejected.reason,
            rejected.detail,
            topic,
            partition,
            offset,
            key,
            value,
            rejected.race,
            rejected.car,
            rejected.seq,
        )


def encode_dead_letter(letter: DeadLetter) -> bytes:
    """Encode a dead letter (deterministic bytes)."""
    packed: bytes = msgpack.packb(
        {
            "v": DLQ_VERSION,
            "reason": letter.reason,
            "detail": letter.detail,
            "topic": letter.topic,
            "partition": letter.partition,
            "offset": letter.offset,
            "key": letter.key,
            "value": letter.value,
            "race": letter.race,
            "car": letter.car,
            "seq": letter.seq,
            "samples": letter.samples,
        },
        use_bin_type=True,
    )
    return packed


def decode_dead_letter(data: bytes) -> DeadLetter:
    """Decode a dead letter.

    Raises:
        ValueError: Not a version-1 dead letter.
    """
    try:
        obj: Any = msgpack.unpackb(data, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ValueError(f"not a dead letter: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("v") != DLQ_VERSION:
        raise ValueError("not a version-1 dead letter")
    try:
        return DeadLetter(
            str(obj["reason"]),
            str(obj["detail"]),
            str(obj["topic"]),
            int(obj["partition"]),
            int(obj["offset"]),
            obj["key"],
            bytes(obj["value"]),
            obj["race"],
            obj["car"],
            obj["seq"],
            int(obj["samples"]),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"dead letter lacks a field: {exc}") from exc
