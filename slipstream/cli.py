"""The ``slipstream`` command line.

Each command lives with the stage it runs: a module in :data:`COMMAND_MODULES`
exposes ``register(subparsers)``, which adds its parsers and sets ``func`` to a
callable taking the parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

from slipstream import __version__
from slipstream.catalogue import CATALOGUE
from slipstream.errors import ConfigError, SlipstreamError
from slipstream.logfilter import RepeatFilter

__all__ = ["COMMAND_MODULES", "build_parser", "main"]

#: Modules that contribute commands, in ``--help`` order.
COMMAND_MODULES = (
    "slipstream.run",
    "simulator.cli",
    "ingest.cli",
    "downsample.cli",
    "broadcast.cli",
    "slipstream.client.cli",
    "slipstream.export_cli",
    "slipstream.codecs.cli",
    "slipstream.auth_cli",
    "slipstream.doctor",
    "slipstream.bench.cli",
)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str, fmt: str) -> None:
    """Configure the root logger (only the CLI does this)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-5s %(name)s: %(message)s", "%H:%M:%S")
        )
        logging.Formatter.converter = time.localtime
    # During a broker outage aiokafka repeats the same errors tens of times a second.
    handler.addFilter(RepeatFilter("aiokafka"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka is chatty at INFO about group membership; keep it to warnings.
    logging.getLogger("aiokafka").setLevel(max(root.level, logging.WARNING))


def _cmd_channels(args: argparse.Namespace) -> int:
    groups = CATALOGUE.resolve_groups(args.group or None)
    wanted = {g.name for g in groups}
    rows = [row for row in CATALOGUE.to_json() if row["group"] in wanted]
    if args.json:
        json.dump(rows, sys.stdout, indent=None if args.compact else 2)
        sys.stdout.write("\n")
        return 0
    header = ("name", "group", "unit", "min", "max", "resolution", "agg", "description")
    table = [header] + [tuple(str(row[h]) for h in header) for row in rows]
    widths = [max(len(r[i]) for r in table[:]) for i in range(len(header) - 1)]
    for row in table:
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=False)]
        sys.stdout.write("  ".join([*cells, row[-1]]).rstrip() + "\n")
    sys.stdout.write(
        f"\n{len(rows)} channels in {len(groups)} groups; catalogue v{CATALOGUE.version} "
        f"hash {CATALOGUE.hash}\n"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every command."""
    parser = argparse.ArgumentParser(
        prog="slipstream",
        description="Realtime race-telemetry fan-out: simulator -> ingest -> 2 Hz downsample "
        "-> WebSocket binary deltas to fans.",
    )
    parser.add_argument("--version", action="version", version=f"slipstream {__version__}")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"],
        help="log verbosity (default info)",
    )  # fmt: skip
    parser.add_argument(
        "--log-format", default="human", choices=["human", "json"],
        help="log lines for people (default) or one JSON object per line",
    )  # fmt: skip
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    channels = commands.add_parser(
        "channels",
        help="print the channel catalogue",
        description="Print the channel catalogue as a table, or as JSON with --json.",
    )
    channels.add_argument("--json", action="store_true", help="print JSON")
    channels.add_argument("--compact", action="store_true", help="with --json: on one line")
    channels.add_argument("--group", action="append", help="only this group (repeatable)")
    channels.set_defaults(func=_cmd_channels)
    bench = commands.add_parser(
        "bench",
        help="run a benchmark harness (codecs, pipeline, fanout)",
        description="End-to-end benchmark harnesses; each prints figures and can write JSON.",
    )
    bench_commands = bench.add_subparsers(title="benchmarks", dest="bench", metavar="BENCH")
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(commands)
        # A module may add a harness to `slipstream bench` too.
        register_bench = getattr(module, "register_bench", None)
        if register_bench is not None:
            register_bench(bench_commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``slipstream`` command."""
    try:
        parser = build_parser()  # flag defaults read SLIPSTREAM_* variables
    except ConfigError as exc:
        sys.stderr.write(f"slipstream: error: {exc}\n")
        return 2
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    configure_logging(args.log_level, args.log_format)
    try:
        code: int = args.func(args)
    except SlipstreamError as exc:
        sys.stderr.write(f"slipstream {args.command}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); that is not an error of ours.
        sys.stderr.close()
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
