"""Race simulator: a vectorised full-field race model producing raw telemetry."""
