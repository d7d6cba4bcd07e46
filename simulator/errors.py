"""Exceptions of the simulator.

Hierarchy::

    SlipstreamError                      (slipstream.errors)
    ├── ConfigError                      a bad simulator flag (raised by SimulatorConfig)
    └── SimulatorError                   root of this package's errors
        └── RecordingError (also ValueError)   a recording cannot be read
"""

from __future__ import annotations

from slipstream.errors import SlipstreamError

__all__ = ["RecordingError", "SimulatorError"]


class SimulatorError(SlipstreamError):
    """Root of the simulator's errors."""


class RecordingError(SimulatorError, ValueError):
    """A recording file is missing, of another format, or damaged."""
