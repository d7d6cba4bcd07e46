"""The ``slipstream`` command line.

Each command lives with the stage it runs: a module in :data:`COMMAND_MODULES`
exposes ``register(subparsers)``, which adds its parsers and sets ``func`` to a
callable taking the parsed arguments and returning an exit code.  The modules
are imported here, at the top: the command line is the composition root, the
one place that may import every stage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from types import ModuleType

import broadcast.cli
import downsample.cli
import ingest.cli
import simulator.cli
import slipstream.auth_cli
from slipstream import __version__
from slipstream.app import doctor, export, run
from slipstream.app.bench import cli as bench_cli
from slipstream.app.bench import codecs_cli
from slipstream.catalogue import CATALOGUE
from slipstream.client import cli as client_cli
from slipstream.errors import ConfigError, SlipstreamError
from slipstream.logs import configure_logging

__all__ = ["COMMAND_MODULES", "build_parser", "configure_logging", "main"]

#: Modules that contribute commands, in ``--help`` order.
COMMAND_MODULES: tuple[ModuleType, ...] = (
    run,
    simulator.cli,
    ingest.cli,
    downsample.cli,
    broadcast.cli,
    client_cli,
    export,
    codecs_cli,
    slipstream.auth_cli,
    doctor,
    bench_cli,
)


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
    for module in COMMAND_MODULES:
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
