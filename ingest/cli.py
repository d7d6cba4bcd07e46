"""``slipstream ingest``: audit a raw topic and (optionally) dead-letter what ingest refuses.

The live ingest path runs inside ``slipstream downsample`` (one consumer
group does ingest and downsampling back to back; see docs/pipeline.md).
This command reads a raw topic from its first record to the end it had when
the command started, validates every record with the same checks and prints
the counts per reason: a tool to audit a feed, or to re-dead-letter a range.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from ingest.audit import Audit, AuditReport
from ingest.dlq import encode_dead_letter
from ingest.validate import VALIDATOR_OPTIONS, Validator
from slipstream.bus import make_bus
from slipstream.config import DLQ_TOPIC, RAW_TOPIC, BusConfig, add_bus_arguments
from slipstream.errors import ConfigError

__all__ = ["audit_topic", "register"]


async def audit_topic(
    bus_config: BusConfig,
    topic: str,
    validator: Validator,
    *,
    partitions: set[int] | None = None,
    max_records: int | None = None,
    dead_letter_topic: str | None = None,
) -> AuditReport:
    """Validate ``topic`` from its start to its current end; returns the counts."""

    bus = make_bus(bus_config)
    await bus.start()
    try:
        consumer = await bus.consumer([topic])
        producer = await bus.producer() if dead_letter_topic else None
        wanted = {
            tp for tp in consumer.assignment() if partitions is None or tp.partition in partitions
        }
        ends = {tp: end for tp, end in (await consumer.end_offsets(wanted)).items() if end > 0}
        await consumer.seek_to_beginning(ends)
        audit = Audit(validator)
        done: set[Any] = set()
        while len(done) < len(ends):
            if max_records is not None and audit.report.records >= max_records:
                break
            letters = []
            for record in await consumer.getmany(timeout_ms=1000, max_records=1000):
                tp = next((tp for tp in ends if tp.partition == record.partition), None)
                if tp is None or record.offset >= ends[tp]:
                    continue
                if record.offset == ends[tp] - 1:
                    done.add(tp)
                letter = audit.feed(record)
                if letter is not None:
                    letters.append((letter.key, encode_dead_letter(letter)))
            if producer is not None and dead_letter_topic and letters:
                await producer.send_many(dead_letter_topic, letters)
        return audit.report
    finally:
        await bus.stop()


def _cmd_ingest(args: argparse.Namespace) -> int:
    try:
        validator = Validator(VALIDATOR_OPTIONS.build(args))
        partitions = {int(p) for p in args.partition} if args.partition else None
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if args.max_records is not None and args.max_records <= 0:
        raise ConfigError("--max-records must be positive")
    report = asyncio.run(
        audit_topic(
            BusConfig.from_args(args),
            args.topic,
            validator,
            partitions=partitions,
            max_records=args.max_records,
            dead_letter_topic=args.dlq_topic if args.dead_letter else None,
        )
    )
    if args.json:
        json.dump(report.to_json(), sys.stdout)
        sys.stdout.write("\n")
    else:
        out = sys.stdout
        out.write(f"{report.records} records read from {args.topic}\n")
        out.write(f"{report.accepted} accepted ({report.samples} samples) ")
        out.write(f"from {len(report.cars)} cars in {len(report.races)} race(s)\n")
        for reason, n in sorted(report.rejected.items(), key=lambda kv: -kv[1]):
            out.write(f"  {n:>8}  {reason}\n")
        if args.dead_letter and report.rejected:
            out.write(f"refused records dead-lettered to {args.dlq_topic}\n")
    return 1 if args.strict and report.rejected else 0


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add ``slipstream ingest``."""
    parser = commands.add_parser(
        "ingest",
        help="audit a raw topic: count valid records and refused ones per reason",
        description="Read a raw telemetry topic from its first record to its current end, "
        "validate every record as the downsampler does (decode, version, car, channel count, "
        "rate, timestamps, infinities, ranges, duplicates) and print the counts per reason.  "
        "With --dead-letter, also send each refused record to the dead-letter topic.  The live "
        "ingest path runs inside `slipstream downsample`.",
    )
    add_bus_arguments(parser, required=True)
    parser.add_argument("--topic", default=RAW_TOPIC, help=f"topic to audit (default {RAW_TOPIC})")
    parser.add_argument(
        "--partition", action="append", metavar="N", help="only this partition (repeatable)"
    )
    parser.add_argument("--max-records", type=int, help="stop after this many records")
    VALIDATOR_OPTIONS.add_arguments(parser)
    parser.add_argument(
        "--dead-letter", action="store_true", help="send refused records to the dead-letter topic"
    )
    parser.add_argument(
        "--dlq-topic", default=DLQ_TOPIC, help=f"dead-letter topic (default {DLQ_TOPIC})"
    )
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    parser.add_argument("--strict", action="store_true", help="exit 1 when any record is refused")
    parser.set_defaults(func=_cmd_ingest)
