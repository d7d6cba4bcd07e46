"""Configuration of the downsampling service (``slipstream downsample`` and ``slipstream run``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from ingest.validate import VALIDATOR_OPTIONS, ValidatorConfig
from slipstream.bus.names import topic_name
from slipstream.config import DEFAULT_PARTITIONS, DLQ_TOPIC, FRAMES_TOPIC, RAW_TOPIC
from slipstream.errors import ConfigError
from slipstream.options import Option, Options, integer, text

__all__ = ["DOWNSAMPLE_OPTIONS", "DownsampleConfig", "add_downsample_arguments"]


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
        return DOWNSAMPLE_OPTIONS.build(
            args,
            # The bus's --partitions, where the command has it.
            partitions=getattr(args, "partitions", DEFAULT_PARTITIONS),
            **VALIDATOR_OPTIONS.values(args),
        )


def _ms(minimum: int) -> Callable[[str], int]:
    return integer(minimum=minimum)


#: The downsampler's options; ``--cars-allowed`` comes from ingest's checks
#: (:data:`ingest.validate.VALIDATOR_OPTIONS`), ``--partitions`` from the bus.
DOWNSAMPLE_OPTIONS = Options(
    DownsampleConfig,
    [
        Option(
            "group_id", "--group-id", "consumer group of the downsamplers",
            parse=text, env="GROUP_ID",
        ),
        Option(
            "allowed_lateness_ms", "--allowed-lateness-ms",
            "event time a 500 ms window waits for out-of-order samples after it ends; later "
            "samples are dead-lettered as late",
            parse=_ms(0), env="ALLOWED_LATENESS_MS",
        ),
        Option(
            "max_skew_ms", "--max-skew-ms",
            "refuse a record starting this far ahead of its race's latest sample as bad_timestamp",
            parse=_ms(1),
        ),
        Option(
            "dedup_horizon", "--dedup-horizon",
            "batch sequence numbers per car remembered for de-duplication",
            parse=integer(minimum=1),
        ),
        Option(
            "max_batch", "--max-batch", "most raw records processed per poll",
            parse=integer(minimum=1),
        ),
        Option(
            "commit_interval_ms", "--commit-interval-ms",
            "how often offsets and restart checkpoints are committed",
            parse=_ms(0),
        ),
        Option("raw_topic", "--raw-topic", "topic to read", parse=topic_name),
        Option("frames_topic", "--frames-topic", "topic of the 2 Hz frames", parse=topic_name),
        Option("dlq_topic", "--dlq-topic", "topic of the dead letters", parse=topic_name),
        Option(
            "idle_flush_ms", "--idle-flush-ms",
            "close a race's open windows after this much wall-clock silence, e.g. at the end "
            "of a race",
            parse=_ms(1), env="IDLE_FLUSH_MS",
        ),
    ],
)  # fmt: skip


def add_downsample_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the downsampler's flags (defaults from ``SLIPSTREAM_*`` variables)."""
    DOWNSAMPLE_OPTIONS.add_arguments(parser)
    VALIDATOR_OPTIONS.add_arguments(parser)
