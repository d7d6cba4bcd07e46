"""Downsample: 500 ms event-time windows reducing raw telemetry to 2 Hz frames."""
