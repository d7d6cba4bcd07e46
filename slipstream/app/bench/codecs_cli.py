"""Commands of the codecs: ``slipstream bench codecs``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from slipstream.app.bench.codecs import BenchConfig, run_bench
from slipstream.errors import ConfigError

__all__ = ["register", "register_bench"]


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """The codecs add no top-level command."""


def register_bench(benches: argparse._SubParsersAction[Any]) -> None:
    """Add ``slipstream bench codecs``."""
    parser = benches.add_parser(
        "codecs",
        help="bytes and encode/decode time per car-update of full, sparse, vcdiff and xdelta3",
        description="Encode the frames of a simulated race with every codec (and the xdelta3 "
        "tool on the same parts) and report bytes per car-update and encode/decode "
        "microseconds per car-update.  Prints a table; --json also writes the figures.",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    parser.add_argument(
        "--frames", choices=["simulator", "synthetic"], default="simulator",
        help="frames from the project's simulator reduced to 2 Hz (default), or from a "
        "noisier synthetic generator",
    )  # fmt: skip
    parser.add_argument(
        "--start-s", type=float, default=60.0,
        help="race time of the first measured tick, simulator frames only (default 60)",
    )  # fmt: skip
    parser.add_argument(
        "--ticks", type=int, default=120,
        help="ticks of race at 2 Hz to encode, the first being the keyframe (default 120)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=1, help="seed of the race (default 1)")
    parser.add_argument("--cars", type=int, default=40, help="cars on track (default 40)")
    parser.add_argument(
        "--decode-ticks", type=int, default=10,
        help="delta ticks decoded to time the decoders (default 10)",
    )  # fmt: skip
    parser.add_argument(
        "--xdelta3-ticks", type=int, default=1,
        help="delta ticks run through the xdelta3 tool, one process per part; 0 skips it "
        "(default 1)",
    )  # fmt: skip
    parser.add_argument(
        "--xdelta3", default="xdelta3", help="the xdelta3 executable (default: from PATH)"
    )
    parser.set_defaults(func=_cmd_bench_codecs)


def _cmd_bench_codecs(args: argparse.Namespace) -> int:

    try:
        config = BenchConfig(
            frames=args.frames,
            start_s=args.start_s,
            ticks=args.ticks,
            cars=args.cars,
            seed=args.seed,
            decode_ticks=args.decode_ticks,
            xdelta3_ticks=args.xdelta3_ticks,
            xdelta3=args.xdelta3,
        )
        result = run_bench(config)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    _print_table(result)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)
            handle.write("\n")
    return 0


def _print_table(result: dict[str, Any]) -> None:
    frames = result["frames"]
    out = sys.stdout
    out.write(
        f"{frames['source']} race: {frames['cars']} cars x {frames['ticks']} ticks, "
        f"{frames['channels']} channels in {frames['groups']} groups, "
        f"{100 * frames['changed_channel_fraction']:.1f}% of channels change per tick\n\n"
    )
    out.write(f"{'codec':<8} {'B/car-update':>13} {'encode us':>10} {'decode us':>10}\n")
    for name in ("full", "sparse", "vcdiff", "xdelta3"):
        if name in result:
            row = result[name]
            size, enc = row["bytes_per_car_update"], row["encode_us_per_car_update"]
            out.write(
                f"{name:<8} {size:>13.1f} {enc:>10.2f} {row['decode_us_per_car_update']:>10.2f}\n"
            )
    if "xdelta3" in result:
        x = result["xdelta3"]
        out.write(
            f"\nsame {x['ticks_measured']} ticks: vcdiff "
            f"{x['vcdiff_bytes_per_car_update_same_ticks']:.1f} B vs xdelta3 "
            f"{x['bytes_per_car_update']:.1f} B per car-update\n"
        )
    tick = result["tick"]
    out.write(
        f"encode of one tick, all three codecs: p50 {tick['encode_all_codecs_us_p50']:.0f} us, "
        f"max {tick['encode_all_codecs_us_max']:.0f} us\n"
        f"goals: {json.dumps(result['goals'])}\n"
    )
