"""Audit a range of raw records: what would ingest accept, and why would it refuse the rest.

The pure core of ``slipstream ingest``: feed it records, read the counts.
Duplicates are judged by (race, car, sequence number) over the audited range;
lateness is not judged (it depends on the windowing, see docs/pipeline.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ingest.dedup import SeenSeqs, Status
from ingest.dlq import DeadLetter
from ingest.errors import Rejected
from ingest.validate import Validator
from slipstream.bus.base import Record

__all__ = ["Audit", "AuditReport"]


@dataclass(slots=True)
class AuditReport:
    """Counts of an audit.

    Attributes:
        records: Records read.
        accepted: Records that pass every check.
        samples: Samples in accepted records.
        rejected: Refused records per reason.
        cars: Accepted records per car.
        races: Accepted records per race.
    """

    records: int = 0
    accepted: int = 0
    samples: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    cars: dict[int, int] = field(default_factory=dict)
    races: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        """Plain-object form (for ``--json``)."""
        return {
            "records": self.records,
            "accepted": self.accepted,
            "samples": self.samples,
            "rejected": dict(sorted(self.rejected.items())),
            "cars": {str(k): v for k, v in sorted(self.cars.items())},
            "races": dict(sorted(self.races.items())),
        }


class Audit:
    """Validates records one by one and counts the outcome."""

    def __init__(self, validator: Validator | None = None, dedup_horizon: int = 1 << 20) -> None:
        self.validator = validator or Validator()
        self.report = AuditReport()
        self._horizon = dedup_horizon
        self._seen: dict[tuple[str, int], SeenSeqs] = {}

    def feed(self, record: Record) -> DeadLetter | None:
        """Check one record; returns its dead letter if it is refused."""
        report = self.report
        report.records += 1
        try:
            batch = self.validator.check(record.value, record.key)
            ident = (batch.race, batch.car, batch.seq)
            seen = self._seen.get((batch.race, batch.car))
            if seen is None:
                seen = self._seen[(batch.race, batch.car)] = SeenSeqs(self._horizon)
            position = record.offset + (record.partition << 48)
            if seen.status(batch.seq, position) is not Status.NEW:
                raise Rejected("duplicate", f"seq {batch.seq} seen before", *ident)
            n = batch.values.shape[0]
            last_ns = batch.t0_ns + ((n - 1) * 1_000_000_000) // batch.rate_hz
            problem = seen.inconsistency(batch.seq, batch.t0_ns, last_ns, batch.rate_hz)
            if problem is not None:
                raise Rejected(problem[0], problem[1], *ident)
            seen.add(batch.seq, position, batch.t0_ns, last_ns, batch.rate_hz)
        except Rejected as exc:
            report.rejected[exc.reason] = report.rejected.get(exc.reason, 0) + 1
            return DeadLetter.from_rejection(
                exc, record.topic, record.partition, record.offset, record.key, record.value
            )
        report.accepted += 1
        report.samples += batch.values.shape[0]
        report.cars[batch.car] = report.cars.get(batch.car, 0) + 1
        report.races[batch.race] = report.races.get(batch.race, 0) + 1
        return None
