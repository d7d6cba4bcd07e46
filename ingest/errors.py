"""Exceptions of the ingest stage.

Hierarchy::

    SlipstreamError (slipstream.errors)
    └── IngestError
        └── Rejected (also ValueError)   a raw record failed validation; has a reason
"""

from __future__ import annotations

from slipstream.errors import SlipstreamError

__all__ = ["IngestError", "Rejected"]


class IngestError(SlipstreamError):
    """Root of the ingest stage's errors."""


class Rejected(IngestError, ValueError):
    """A raw record is invalid and goes to the dead-letter queue.

    Attributes:
        reason: Machine-readable reason (one of :data:`ingest.validate.REASONS`).
        detail: What was wrong, for people.
        race: Race id, when the record could be decoded.
        car: Car number, when known.
        seq: Batch sequence number, when known.
    """

    def __init__(
        self,
        reason: str,
        detail: str,
        race: str | None = None,
        car: int | None = None,
        seq: int | None = None,
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.race = race
        self.car = car
        self.seq = seq
