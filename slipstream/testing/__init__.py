"""Helpers for tests and for trying Slipstream by hand.

:mod:`slipstream.testing.broker` runs a throw-away Kafka-compatible broker
(:class:`~slipstream.testing.broker.TansuBroker`); :func:`unique_name` gives
topic and group names that no other test uses, so tests can share a broker.
"""

from __future__ import annotations

import itertools
import os
import uuid

__all__ = ["unique_name"]

_counter = itertools.count()
_RUN = uuid.uuid4().hex[:8]


def unique_name(prefix: str = "test") -> str:
    """A topic or group name used nowhere else: ``PREFIX.RUN.PID.N``.

    Only letters, digits, ``.``, ``_`` and ``-``: valid as a Kafka topic name.
    """
    return f"{prefix}.{_RUN}.{os.getpid()}.{next(_counter)}"
