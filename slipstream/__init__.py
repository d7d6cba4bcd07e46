"""Slipstream: realtime race-telemetry fan-out (shared core)."""

__version__ = "0.1.0"
