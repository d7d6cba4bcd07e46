"""Ingest: decode, validate, de-duplicate and re-order raw telemetry; dead-letter the rest."""
