"""Decode and validate raw records against the channel catalogue (stateless checks).

:class:`Validator` turns the bytes of one ``slipstream.raw`` record into a
:class:`~slipstream.records.RawBatch` or raises :class:`Rejected` with a
machine-readable reason.  Checks, in order (the first failure wins):

* decoding (reasons of :func:`slipstream.records.decode_raw`): ``truncated``,
  ``malformed``, ``trailing_bytes``, ``bad_version``, ``bad_field``, ``bad_length``;
* ``bad_key``: the record's bus key is not its car's key (a damaged car number);
* ``unknown_car``: the car number is not in the entry list (1..99 by default);
* ``bad_channels``: the record does not hold one column per catalogue channel;
* ``bad_rate``: the sampling rate is outside ``[min_rate_hz, max_rate_hz]``;
* ``bad_timestamp``: the first sample is before race start, or the last one
  after ``max_race_ns``;
* ``non_finite``: a value is +-inf (NaN is a legal sensor dropout);
* ``out_of_range``: a value is outside its channel's [min, max] by more than
  half a quantisation step.

Stateful checks (``duplicate``, ``unknown_race``, ``late``, and
``bad_timestamp`` for a record far ahead of its race's watermark or
overlapping its neighbours in time) live in :mod:`downsample.windows`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ingest.errors import Rejected
from slipstream.catalogue import CATALOGUE, Catalogue
from slipstream.options import Option, Options
from slipstream.records import RawBatch, RecordError, car_key, decode_raw

__all__ = [
    "DECODE_REASONS",
    "REASONS",
    "VALIDATOR_OPTIONS",
    "Validator",
    "ValidatorConfig",
    "parse_cars",
]

#: Reasons raised by :func:`slipstream.records.decode_raw`.
DECODE_REASONS = (
    "truncated",
    "malformed",
    "trailing_bytes",
    "bad_version",
    "bad_field",
    "bad_length",
)
#: Every reason a raw record can be dead-lettered for.
REASONS = (
    *DECODE_REASONS,
    "bad_key",
    "unknown_car",
    "bad_channels",
    "bad_rate",
    "bad_timestamp",
    "non_finite",
    "out_of_range",
    "duplicate",
    "bad_seq",
    "unknown_race",
    "late",
)

#: Two days of race time: a bound that catches garbage timestamps.
MAX_RACE_NS = 48 * 3600 * 1_000_000_000


@dataclass(frozen=True, slots=True)
class ValidatorConfig:
    """What a valid record looks like.

    Attributes:
        cars_allowed: Entry list of car numbers; None allows 1..99.
        min_rate_hz: Lowest accepted sampling rate.
        max_rate_hz: Highest accepted sampling rate.
        max_samples: Most samples in one record.
        max_race_ns: Latest accepted sample time (race time).
    """

    cars_allowed: frozenset[int] | None = None
    min_rate_hz: int = 1
    max_rate_hz: int = 1000
    max_samples: int = 10_000
    max_race_ns: int = MAX_RACE_NS

    def __post_init__(self) -> None:
        if not 0 < self.min_rate_hz <= self.max_rate_hz:
            raise ValueError("need 0 < min_rate_hz <= max_rate_hz")
        if self.max_samples <= 0 or self.max_race_ns <= 0:
            raise ValueError("max_samples and max_race_ns must be positive")
        if self.cars_allowed is not None and not self.cars_allowed:
            raise ValueError("cars_allowed must name at least one car")


def parse_cars(text: str | None) -> frozenset[int] | None:
    """Parse an entry list like ``"1,2,5-9"``; None or empty means 1..99.

    Raises:
        ValueError: Not a comma-separated list of numbers and ranges.
    """
    if text is None or not text.strip():
        return None
    cars: set[int] = set()
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"bad car list item {part!r}; expected N or N-M")
        cars.update(range(int(lo), int(hi if sep else lo) + 1))
    return frozenset(cars)


def _car_list(raw: str) -> frozenset[int]:
    try:
        cars = parse_cars(raw)
    except ValueError:
        cars = None
    if not cars:
        raise ValueError("expected car numbers and ranges like '1-40,88'")
    return cars


#: The options of the stateless checks (``slipstream ingest`` and ``slipstream downsample``).
VALIDATOR_OPTIONS = Options(
    ValidatorConfig,
    [
        Option(
            "cars_allowed", "--cars-allowed", "entry list of valid car numbers, e.g. '1-40,88'",
            parse=_car_list, env="CARS_ALLOWED", metavar="LIST", default_text="any car 1..99",
        ),
    ],
)  # fmt: skip


class Validator:
    """Stateless checks of raw records (see the module docstring)."""

    def __init__(
        self, config: ValidatorConfig | None = None, catalogue: Catalogue = CATALOGUE
    ) -> None:
        self.config = config or ValidatorConfig()
        self.catalogue = catalogue
        self._cars: frozenset[int] = self.config.cars_allowed or frozenset(range(1, 100))
        # Tolerate half a quantisation step so that a value at the bound,
        # rounded to float32, is not rejected.
        slack = catalogue.resolution / 2
        self._low = (catalogue.minimum - slack).astype(np.float32)
        self._high = (catalogue.maximum + slack).astype(np.float32)

    @property
    def cars(self) -> frozenset[int]:
        """Car numbers accepted."""
        return self._cars

    def check(self, data: bytes, key: bytes | None = None) -> RawBatch:
        """Decode and check one record; ``key`` (if given) must be its car's bus key.

        Raises:
            Rejected: The record is invalid; ``reason`` says why.
        """
        try:
            batch = decode_raw(data)
        except RecordError as exc:
            raise Rejected(exc.reason, str(exc)) from None
        if key is not None and key != car_key(batch.car):
            # The key is written by the producer beside the value: a value whose
            # car number was damaged no longer matches it.
            raise Rejected(
                "bad_key",
                f"record keyed {key!r} holds car {batch.car}",
                batch.race,
                batch.car,
                batch.seq,
            )
        self.check_batch(batch)
        return batch

    def check_batch(self, batch: RawBatch) -> None:
        """Check a decoded batch (everything but decoding).

        Raises:
            Rejected: The batch is invalid.
        """
        cfg = self.config
        ident = (batch.race, batch.car, batch.seq)
        if not batch.race or not batch.race.isprintable():
            raise Rejected("bad_field", f"race id {batch.race!r} is not printable", *ident)
        if batch.car not in self._cars:
            raise Rejected("unknown_car", f"car {batch.car} is not in the entry list", *ident)
        samples, channels = batch.values.shape
        if channels != len(self.catalogue):
            raise Rejected(
                "bad_channels",
                f"record has {channels} channels, the catalogue {len(self.catalogue)}",
                *ident,
            )
        if not 0 < samples <= cfg.max_samples:
            raise Rejected(
                "bad_length", f"{samples} samples, expected 1..{cfg.max_samples}", *ident
            )
        if not cfg.min_rate_hz <= batch.rate_hz <= cfg.max_rate_hz:
            raise Rejected(
                "bad_rate",
                f"rate {batch.rate_hz} Hz outside {cfg.min_rate_hz}..{cfg.max_rate_hz}",
                *ident,
            )
        end_ns = batch.t0_ns + (samples * 1_000_000_000) // batch.rate_hz
        if batch.t0_ns < 0 or end_ns > cfg.max_race_ns:
            raise Rejected("bad_timestamp", f"t0 {batch.t0_ns} ns outside the race", *ident)
        values = batch.values
        # Column extremes first (fmin/fmax skip NaN dropouts), so the comparisons
        # run on one row per bound instead of on every sample.
        low = np.fmin.reduce(values, axis=0)
        high = np.fmax.reduce(values, axis=0)
        bad = (low < self._low) | (high > self._high)
        if bad.any():
            if np.isinf(values).any():
                raise Rejected("non_finite", "record holds an infinite value", *ident)
            column = int(np.flatnonzero(bad)[0])
            channel = self.catalogue.channels[column]
            raise Rejected(
                "out_of_range",
                f"{channel.name} outside [{channel.min}, {channel.max}] {channel.unit}",
                *ident,
            )

    def reasons(self) -> Iterable[str]:
        """Every reason this validator and the windowing can give."""
        return REASONS
