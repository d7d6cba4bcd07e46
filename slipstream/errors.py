"""Exceptions of the shared core.

Hierarchy::

    SlipstreamError
    ├── ConfigError (also ValueError)   bad flag, variable or argument value
    ├── RecordError (also ValueError)   a bus record could not be decoded (slipstream.records)
    └── BusError                        the bus failed
        └── BusUnreachableError         the Kafka bootstrap address did not answer
"""

from __future__ import annotations


class SlipstreamError(Exception):
    """Root of every error Slipstream raises on purpose."""


class ConfigError(SlipstreamError, ValueError):
    """A configuration value is invalid; the message says which and what is expected."""


class BusError(SlipstreamError):
    """The bus failed to carry out a request."""

    retriable: bool = False


class BusUnreachableError(BusError):
    """The bus could not be reached at the given address."""

    retriable = True
