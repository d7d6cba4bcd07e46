"""``slipstream doctor``: is this Kafka cluster ready for Slipstream?

Connects with the same flags as every other command (TLS, SASL), lists
Slipstream's topics with their partitions, replicas, retention and cleanup
policy, compares them with the advice of docs/deploy.md ("Kafka: topics,
partitions, retention") and prints what to fix.  Exit code 0 when nothing is
wrong (warnings allowed), 1 when a topic is misconfigured, 2 when the cluster
cannot be reached or the flags are wrong.

:func:`check` is the pure core (topics in, findings out); the rest reads the
cluster through aiokafka's admin client.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from slipstream.bus.kafka import KafkaBus
from slipstream.config import EVENTS_TOPIC, FRAMES_TOPIC, RAW_TOPIC, BusConfig
from slipstream.config import add_bus_arguments as _add_bus_arguments
from slipstream.errors import BusError, ConfigError

__all__ = ["Finding", "TopicInfo", "check", "register"]

_HOUR_MS = 3_600_000
#: Slipstream's topics: the checkpoints topics are found by this prefix.
_PREFIX = "slipstream."
_CHECKPOINTS = "slipstream.checkpoints."


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """What the cluster says about one topic.

    Attributes:
        name: Topic name.
        partitions: Partition count.
        replicas: Replicas of partition 0.
        retention_ms: ``retention.ms``; -1 is unlimited; None when not reported.
        cleanup_policy: ``cleanup.policy`` (``delete``, ``compact`` or both); None when not
            reported.
    """

    name: str
    partitions: int
    replicas: int
    retention_ms: int | None
    cleanup_policy: str | None


@dataclass(frozen=True, slots=True)
class Finding:
    """Something to fix (``error``) or to consider (``warning``) about a topic."""

    level: Literal["error", "warning"]
    topic: str
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.topic}: {self.message}"


def _hours(ms: int | None) -> str:
    if ms is None:
        return "broker default"
    if ms < 0:
        return "unlimited"
    return f"{ms / _HOUR_MS:g} h"


def _retention_fix(topic: str, hours: float) -> str:
    return (
        f"kafka-configs.sh --alter --entity-type topics --entity-name {topic} "
        f"--add-config retention.ms={int(hours * _HOUR_MS)}"
    )


def check(
    topics: Sequence[TopicInfo],
    *,
    brokers: int,
    min_frames_retention_h: float = 4.0,
    min_raw_retention_h: float = 24.0,
) -> list[Finding]:
    """Compare the topics with the deploy guide's advice.

    Args:
        topics: Every topic of the cluster whose name starts with ``slipstream.``.
        brokers: Brokers in the cluster (replication advice needs several).
        min_frames_retention_h: Frames and events must be kept at least this
            long: the longest race plus the resume window (docs/deploy.md).
        min_raw_retention_h: Raw records should be kept this long, to cover
            a downsampler outage.
    """
    found = {topic.name: topic for topic in topics}
    findings: list[Finding] = []
    for name in (RAW_TOPIC, FRAMES_TOPIC, EVENTS_TOPIC):
        if name not in found:
            findings.append(Finding(
                "warning", name, "missing: Slipstream will create it with --partitions "
                "and replication factor 1; create it up front (docs/kafka.md)",
            ))  # fmt: skip
    for topic in topics:
        findings += _check_topic(topic, brokers, min_frames_retention_h, min_raw_retention_h)
    raw, frames = found.get(RAW_TOPIC), found.get(FRAMES_TOPIC)
    if raw is not None and frames is not None and raw.partitions != frames.partitions:
        findings.append(Finding(
            "warning", FRAMES_TOPIC, f"{frames.partitions} partitions but {RAW_TOPIC} has "
            f"{raw.partitions}; keep them equal (docs/deploy.md)",
        ))  # fmt: skip
    return findings


def _check_topic(
    topic: TopicInfo, brokers: int, min_frames_h: float, min_raw_h: float
) -> list[Finding]:
    findings: list[Finding] = []

    def add(level: Literal["error", "warning"], message: str) -> None:
        findings.append(Finding(level, topic.name, message))

    retention = topic.retention_ms
    if topic.name in (FRAMES_TOPIC, EVENTS_TOPIC):
        if retention is not None and 0 <= retention < min_frames_h * _HOUR_MS:
            add("error", f"retention.ms is {_hours(retention)}, below {min_frames_h:g} h: a "
                "node started mid-race cannot rebuild the race and resuming fans miss ticks; "
                f"fix: {_retention_fix(topic.name, max(min_frames_h, 12))}")  # fmt: skip
        if topic.cleanup_policy is not None and "compact" in topic.cleanup_policy:
            add("error", f"cleanup.policy is {topic.cleanup_policy}: compaction keeps one "
                "record per key (car) and loses the race; set cleanup.policy=delete")  # fmt: skip
    if topic.name == EVENTS_TOPIC and topic.partitions != 1:
        add("error", f"{topic.partitions} partitions: race control must stay in order "
            "(race_start ... race_end); recreate it with 1 partition")  # fmt: skip
    if topic.name == RAW_TOPIC:
        if retention is not None and 0 <= retention < min_raw_h * _HOUR_MS:
            add("warning", f"retention.ms is {_hours(retention)}: a downsampler down longer "
                f"loses raw records; {min_raw_h:g} h is comfortable; "
                f"fix: {_retention_fix(topic.name, min_raw_h)}")  # fmt: skip
        if topic.cleanup_policy is not None and "compact" in topic.cleanup_policy:
            add("error", f"cleanup.policy is {topic.cleanup_policy}: set cleanup.policy=delete")
    if topic.name.startswith(_CHECKPOINTS) and (
        topic.cleanup_policy is not None and "compact" not in topic.cleanup_policy
        and retention is not None and 0 <= retention < min_raw_h * _HOUR_MS
    ):  # fmt: skip
        add("warning", "neither compacted nor kept as long as the raw topic: a restart may "
            "find no checkpoint; set cleanup.policy=compact")  # fmt: skip
    if brokers >= 3 and topic.replicas < 3:
        add("warning", f"replication factor {topic.replicas} on a {brokers}-broker cluster; "
            "3 with min.insync.replicas=2 lets acks=all survive a broker")  # fmt: skip
    return findings


async def _topic_infos(admin: Any) -> tuple[list[TopicInfo], int]:
    """Slipstream's topics and the broker count, from the admin client."""
    described = await admin.describe_topics(None)
    partitions: dict[str, tuple[int, int]] = {}
    for entry in described:
        name = entry["topic"]
        if entry["error_code"] == 0 and name.startswith(_PREFIX):
            parts = entry["partitions"]
            replicas = len(parts[0]["replicas"]) if parts else 0
            partitions[name] = (len(parts), replicas)
    configs: dict[str, dict[str, str]] = {name: {} for name in partitions}
    if partitions:
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in partitions]
        for response in await admin.describe_configs(resources):
            for resource in response.resources:
                name, entries = resource[3], resource[4]
                configs.setdefault(name, {}).update({e[0]: e[1] for e in entries})
    cluster = await admin.describe_cluster()
    infos = [
        TopicInfo(
            name, count, replicas,
            _int_or_none(configs[name].get("retention.ms")), configs[name].get("cleanup.policy"),
        )
        for name, (count, replicas) in sorted(partitions.items())
    ]  # fmt: skip
    return infos, len(cluster.get("brokers") or ())


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


async def _inspect(config: BusConfig) -> tuple[list[TopicInfo], int]:
    async with KafkaBus(config) as bus:
        sys.stdout.write(f"connected to {bus.client.describe()}\n")
        try:
            async with asyncio.timeout(bus.settings.request_timeout_ms / 1000):
                return await _topic_infos(bus.admin)
        except TimeoutError:
            raise BusError(f"{bus.bootstrap} did not describe its topics in time") from None


def _cmd_doctor(args: argparse.Namespace) -> int:
    config = BusConfig.from_args(args)
    if config.kafka is None:
        raise ConfigError("doctor checks a Kafka cluster: give --kafka HOST:PORT[,...]")
    topics, brokers = asyncio.run(_inspect(config))
    sys.stdout.write(f"{brokers} broker(s); Slipstream's topics:\n")
    rows = [("topic", "partitions", "replicas", "retention", "cleanup")] + [
        (t.name, str(t.partitions), str(t.replicas), _hours(t.retention_ms),
         t.cleanup_policy or "broker default")
        for t in topics
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        sys.stdout.write("  " + "  ".join([*cells, row[4]]) + "\n")
    findings = check(
        topics, brokers=brokers, min_frames_retention_h=args.min_retention_hours,
        min_raw_retention_h=args.min_raw_retention_hours,
    )  # fmt: skip
    for finding in findings:
        sys.stdout.write(f"{finding}\n")
    errors = sum(1 for f in findings if f.level == "error")
    warnings = len(findings) - errors
    sys.stdout.write(f"{errors} error(s), {warnings} warning(s)\n")
    return 1 if errors else 0


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add the ``doctor`` command."""
    parser = commands.add_parser(
        "doctor",
        help="check a Kafka cluster: connection, authentication, Slipstream's topics",
        description="Connect to the Kafka cluster with the given client settings (TLS, SASL), "
        "list Slipstream's topics (slipstream.*) with partitions, replicas, retention and "
        "cleanup policy, and compare them with docs/deploy.md. Prints what to fix. Exit 0: "
        "ready (warnings allowed); 1: a topic is misconfigured; 2: cannot connect or bad flags.",
    )
    _add_bus_arguments(parser, required=True)
    parser.add_argument(
        "--min-retention-hours", type=float, default=4.0, metavar="H",
        help="frames and events must be kept this long: the longest race plus the resume "
        "window (default 4: a 3 h race + 1 h of --history-ticks)",
    )  # fmt: skip
    parser.add_argument(
        "--min-raw-retention-hours", type=float, default=24.0, metavar="H",
        help="warn when raw records are kept less (default 24)",
    )  # fmt: skip
    parser.set_defaults(func=_cmd_doctor)
