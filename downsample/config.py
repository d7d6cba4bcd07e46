"""Configuration of the downsampling service (``slipstream downsample`` and ``slipstream run``)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from ingest.validate import ValidatorConfig, parse_cars
from slipstream.config import (
    DEFAULT_PARTITIONS,
    DLQ_TOPIC,
    FRAMES_TOPIC,
    RAW_TOPIC,
    env,
    env_int,
)
from slipstream.errors import ConfigError

__all__ = ["DownsampleConfig", "add_downsample_arguments"]


@dataclass(frozen=True, slots=True)
class DownsampleConfig:
    """How raw telemetry becomes 2 Hz frames.

    Attributes:
        group_id: Kafka consumer group of the downsamplers.
        allowed_lateness_ms: Event time a window stays open after its end: the
            reorder tolerance.  A race's watermark is the latest sample time
            seen in a partition minus this; samples of windows that ended
            before the watermark are ``late``.
        max_skew_ms: A record starting further than this ahead of its race's
            latest sample is refused as ``bad_timestamp`` (a corrupt clock
            must not close every window).
        dedup_horizon: Sequence numbers per car remembered for duplicates.
        cars_allowed: Entry list of car numbers; None allows 1..99.
        max_batch: Most records taken from the bus per poll.
        poll_ms: Longest wait for records in one poll.
        commit_interval_ms: How often offsets (and checkpoints) are committed.
        idle_flush_ms: Wall-clock silence after which a race's open windows
            are closed anyway (end of race, or a stalled feed).
        raw_topic: Topic read.
        frames_topic: Topic of the frames.
        dlq_topic: Topic of the dead letters.
        checkpoint_topic: Topic of the per-partition restart checkpoints;
            None derives ``slipstream.checkpoints.<group_id>``.
        partitions: Partitions of the raw topic if this service creates it
            (frames, dead letters and checkpoints get as many as raw has).
    """

    group_id: str = "slipstream-downsample"
    allowed_lateness_ms: int = 1000
    max_skew_ms: int = 60_000
    dedup_horizon: int = 256
    cars_allowed: frozenset[int] | None = None
    max_batch: int = 2000
    poll_ms: int = 200
    commit_interval_ms: int = 1000
    idle_flush_ms: int = 3000
    raw_topic: str = RAW_TOPIC
    frames_topic: str = FRAMES_TOPIC
    dlq_topic: str = DLQ_TOPIC
    checkpoint_topic: str | None = None
    partitions: int = DEFAULT_PARTITIONS

    def __post_init__(self) -> None:
        if not self.group_id:
            raise ConfigError("the consumer group id must not be empty")
        if self.allowed_lateness_ms < 0:
            raise ConfigError("--allowed-lateness-ms must be >= 0")
        for name in ("max_skew_ms", "dedup_horizon", "max_batch", "poll_ms", "partitions"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive")
        if self.commit_interval_ms < 0 or self.idle_flush_ms <= 0:
            raise ConfigError("--commit-interval-ms must be >= 0, --idle-flush-ms positive")

    @property
    def checkpoints(self) -> str:
        """The checkpoint topic actually used."""
        return self.checkpoint_topic or f"slipstream.checkpoints.{self.group_id}"

    @property
    def validator(self) -> ValidatorConfig:
        """The stateless checks' configuration."""
        return ValidatorConfig(cars_allowed=self.cars_allowed)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DownsampleConfig:
        """Build from the flags added by :func:`add_downsample_arguments`."""
        try:
            cars = parse_cars(args.cars_allowed)
        except ValueError as exc:
            raise ConfigError(f"--cars-allowed: {exc}") from exc
        return cls(
            group_id=args.group_id,
            allowed_lateness_ms=args.allowed_lateness_ms,
            max_skew_ms=args.max_skew_ms,
            dedup_horizon=args.dedup_horizon,
            cars_allowed=cars,
            max_batch=args.max_batch,
            commit_interval_ms=args.commit_interval_ms,
            idle_flush_ms=args.idle_flush_ms,
            partitions=getattr(args, "partitions", DEFAULT_PARTITIONS),
            raw_topic=args.raw_topic,
            frames_topic=args.frames_topic,
            dlq_topic=args.dlq_topic,
        )


def add_downsample_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the downsampler's flags (defaults from ``SLIPSTREAM_*`` variables)."""
    d = DownsampleConfig()
    parser.add_argument(
        "--group-id", default=env("GROUP_ID", d.group_id),
        help=f"consumer group of the downsamplers (env SLIPSTREAM_GROUP_ID; default {d.group_id})",
    )  # fmt: skip
    parser.add_argument(
        "--allowed-lateness-ms", type=int,
        default=env_int("ALLOWED_LATENESS_MS", d.allowed_lateness_ms),
        help="event time a 500 ms window waits for out-of-order samples after it ends; later "
        f"samples are dead-lettered as late (default {d.allowed_lateness_ms})",
    )  # fmt: skip
    parser.add_argument(
        "--max-skew-ms", type=int, default=d.max_skew_ms,
        help="refuse a record starting this far ahead of its race's latest sample as "
        f"bad_timestamp (default {d.max_skew_ms})",
    )  # fmt: skip
    parser.add_argument(
        "--dedup-horizon", type=int, default=d.dedup_horizon,
        help=f"batch sequence numbers per car remembered for de-duplication "
        f"(default {d.dedup_horizon})",
    )  # fmt: skip
    parser.add_argument(
        "--cars-allowed", default=env("CARS_ALLOWED"), metavar="LIST",
        help="entry list of valid car numbers, e.g. '1-40,88' (env SLIPSTREAM_CARS_ALLOWED; "
        "default: any car 1..99)",
    )  # fmt: skip
    parser.add_argument(
        "--max-batch", type=int, default=d.max_batch,
        help=f"most raw records processed per poll (default {d.max_batch})",
    )  # fmt: skip
    parser.add_argument(
        "--commit-interval-ms", type=int, default=d.commit_interval_ms,
        help=f"how often offsets and restart checkpoints are committed "
        f"(default {d.commit_interval_ms})",
    )  # fmt: skip
    parser.add_argument(
        "--raw-topic", default=d.raw_topic, help=f"topic to read (default {d.raw_topic})"
    )
    parser.add_argument(
        "--frames-topic", default=d.frames_topic,
        help=f"topic of the 2 Hz frames (default {d.frames_topic})",
    )  # fmt: skip
    parser.add_argument(
        "--dlq-topic", default=d.dlq_topic,
        help=f"topic of the dead letters (default {d.dlq_topic})",
    )  # fmt: skip
    parser.add_argument(
        "--idle-flush-ms", type=int, default=env_int("IDLE_FLUSH_MS", d.idle_flush_ms),
        help="close a race's open windows after this much wall-clock silence, e.g. at the end "
        f"of a race (env SLIPSTREAM_IDLE_FLUSH_MS; default {d.idle_flush_ms})",
    )  # fmt: skip
