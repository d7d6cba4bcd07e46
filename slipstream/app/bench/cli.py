"""``slipstream bench fanout``: WebSocket vs long-polling fan-out, one run or a sweep."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from slipstream.app.bench.compare import compared_rows, run_with_baseline
from slipstream.app.bench.fanout import MAX_WORKERS, FanoutConfig, run_fanout
from slipstream.app.bench.loops import LOOPS, default_loop, validate_loop
from slipstream.app.bench.plots import make_plots
from slipstream.app.bench.report import headline, write_report
from slipstream.app.bench.stats import Capacity
from slipstream.app.bench.sweep import evaluate, run_sweep
from slipstream.codecs import CODECS
from slipstream.errors import ConfigError

__all__ = ["register", "register_bench"]

DEFAULT_STEPS = (100, 1000, 2000, 5000, 10000, 19800)


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """The benchmarks add no top-level command."""


def _steps(text: str) -> tuple[int, ...]:
    try:
        steps = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated counts, got {text!r}") from None
    if not steps or any(not 1 <= s <= 100_000 for s in steps):
        raise argparse.ArgumentTypeError("subscriber counts must be between 1 and 100,000")
    return tuple(sorted(set(steps)))


def register_bench(benches: argparse._SubParsersAction[Any]) -> None:
    """Add ``slipstream bench fanout``."""
    p = benches.add_parser(
        "fanout",
        help="WebSocket, SSE and long-poll fan-out: latency, CPU, bytes and memory per "
        "subscriber, optionally beside a bare websockets.broadcast() server",
        description="Start a broadcast node fed a simulated race at 2 Hz, open N subscribers "
        "from separate load-generator processes over WebSocket or long-poll, and measure "
        "delivered updates/s, delivery latency (tick emission -> decoded at the client), "
        "server CPU per update, bytes on the wire per update and server memory per "
        "connection. With --baseline, also run a bare websockets.broadcast() server of the "
        "same bytes in the same sitting and report the node's figures as ratios to it; with "
        "--workers N, run the node as N SO_REUSEPORT processes on one port. With --sweep, "
        "step N up per transport until p99 latency or delivery "
        "fails, and write JSON, PNG plots and REPORT.md. Loopback only; every process "
        "started is stopped at the end.",
    )
    p.add_argument(
        "--transport",
        choices=["ws", "sse", "poll"],
        default="ws",
        help="transport of a single run (default ws)",
    )
    p.add_argument(
        "--subscribers",
        type=int,
        default=1000,
        metavar="N",
        help="subscribers of a single run (default 1000)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=20.0,
        metavar="S",
        help="measurement window in seconds (default 20; the sweep's default is 10)",
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=2.0,
        metavar="S",
        help="seconds between everyone connected and the window (default 2)",
    )
    p.add_argument(
        "--codec",
        default="",
        metavar="NAME",
        help="codec the subscribers ask for (default: the node's default codec)",
    )
    p.add_argument(
        "--node-codec",
        default="",
        metavar="NAME",
        help="the node's default codec (default: the node's own default)",
    )
    p.add_argument(
        "--cars",
        type=int,
        default=2,
        metavar="K",
        help="cars each subscriber follows, of the 40 in the race (0 = all; default 2)",
    )
    p.add_argument(
        "--groups",
        default="",
        metavar="G,G",
        help="channel groups subscribed, comma-separated (default: all)",
    )
    p.add_argument(
        "--generators",
        type=int,
        default=0,
        metavar="P",
        help="load-generator processes (default: one per 10,000 subscribers)",
    )
    p.add_argument(
        "--baseline",
        action="store_true",
        help="WebSocket only: after the node's run, run a bare websockets.broadcast() server "
        "(asyncio API, compression off, its own process) of the same message bytes with the "
        "same load generators, and report both and the node's figures as ratios to it",
    )
    p.add_argument(
        "--baseline-loop",
        choices=LOOPS,
        default="asyncio",
        help="event loop of the baseline server (default asyncio)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="run the node as N processes sharing its port with SO_REUSEPORT, each fed the "
        "same frames on the same wall-clock schedule; server CPU and memory are summed "
        f"over them (default 1, at most {MAX_WORKERS})",
    )
    p.add_argument(
        "--loop",
        choices=LOOPS,
        default=None,
        help="event loop of the node process(es) (default asyncio, the node's default)",
    )
    p.add_argument(
        "--generator-loop",
        choices=LOOPS,
        default="asyncio",
        help="event loop of the load-generator processes (default asyncio)",
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="write the figures of a run as JSON")
    p.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="single run: write cProfile stats of the node over the window",
    )
    p.add_argument(
        "--sweep",
        action="store_true",
        help="step subscribers up per transport, codec runs, a profile at capacity, "
        "plots and REPORT.md",
    )
    p.add_argument(
        "--steps",
        type=_steps,
        default=DEFAULT_STEPS,
        metavar="N,N",
        help="sweep: subscriber counts (default "
        f"{','.join(map(str, DEFAULT_STEPS))}; the fd cap is 20,000 per process)",
    )
    p.add_argument(
        "--transports",
        default="ws,poll",
        metavar="T,T",
        help="sweep: transports to step up: ws, sse, poll (default ws,poll)",
    )
    p.add_argument(
        "--max-p99-ms",
        type=float,
        default=1000.0,
        metavar="MS",
        help="sweep: a step fails above this p99 latency (default 1000)",
    )
    p.add_argument(
        "--min-delivered",
        type=float,
        default=0.99,
        metavar="RATIO",
        help="sweep: a step fails below this share of updates delivered (default 0.99)",
    )
    p.add_argument(
        "--min-realtime",
        type=float,
        default=0.95,
        metavar="RATIO",
        help="sweep: a step fails below this share of N x 2 Hz updates per second, i.e. when "
        "the node cannot keep up with the 2 Hz ticks (default 0.95)",
    )
    p.add_argument(
        "--replot",
        action="store_true",
        help="judge the steps in --out's fanout-sweep.json again (with the pass-mark flags) and "
        "rebuild its plots and REPORT.md; runs nothing",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("benchmarks/results"),
        metavar="DIR",
        help="sweep: where JSON, plots and REPORT.md go (default benchmarks/results)",
    )
    p.set_defaults(func=_cmd_fanout)  # fmt: skip


def _progress(text: str) -> None:
    sys.stderr.write(f"{time.strftime('%H:%M:%S')} {text}\n")
    sys.stderr.flush()


def _print(result: dict[str, Any]) -> None:
    lat = result["latency_ms"]
    rows = [
        ("transport / codec", f"{result['transport']} / {result['codec']}"),
        ("node", f"{result['server']['workers']} process(es), {result['server']['loop']} loop"),
        ("subscribers (connected)", f"{result['subscribers']} ({result['connected']})"),
        ("delivered", f"{result['delivered_updates']} of {result['expected_updates']} "
                      f"({100 * result['delivered_ratio']:.2f} %)"),
        ("updates/s", f"{result['updates_per_s']:,.0f}"),
        ("latency p50 / p99 / max", f"{lat['p50']} / {lat['p99']} / {lat['max']} ms"),
        ("server CPU", f"{result['server_cpu_pct']} % of a core, "
                       f"{result['server_cpu_us_per_update']} us per update"),
        ("bytes per update", f"{result['bytes_per_update']} "
                             f"(down {result['bytes_down_per_update']}, "
                             f"up {result['bytes_up_per_update']})"),
        ("server memory", f"{result['server_rss_per_connection_kb']} KB per connection "
                          f"({result['server_rss_connected_mb']} MB)"),
        ("generator CPU", f"{result['generator_cpu_pct']} % of a core "
                          f"({result['generator_processes']} process(es))"),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        sys.stdout.write(f"{name.ljust(width)}  {value}\n")
    for error in result["errors"]:
        sys.stdout.write(f"error seen: {error}\n")
    if "baseline" in result:
        order = " then ".join(result["order"])
        sys.stdout.write(f"\nside by side (same sitting, run {order}; ratio = node / baseline):\n")
        compared = compared_rows(result)
        widths = [max(len(row[i]) for row in compared) for i in range(4)]
        for row in compared:
            cells = [row[0].ljust(widths[0])]
            cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
            sys.stdout.write("  ".join(cells).rstrip() + "\n")
        for error in result["baseline"]["errors"]:
            sys.stdout.write(f"baseline error seen: {error}\n")


def _replot(out: Path, capacity: Capacity) -> int:

    source = out / "fanout-sweep.json"
    try:
        summary = json.loads(source.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {source} ({exc}); run --sweep first") from None
    evaluate(summary, capacity)
    source.write_text(json.dumps(summary, indent=2) + "\n")
    # The per-run files carry the same verdicts as the summary.
    for run in summary["steps"]:
        step_file = out / f"fanout-{run['transport']}-{run['subscribers']}.json"
        if step_file.exists():
            step_file.write_text(json.dumps(run, indent=2) + "\n")
    write_report(summary, make_plots(summary, out), out / "REPORT.md")
    _progress(f"rebuilt the plots and {out / 'REPORT.md'} from {source}")
    return 0


def _cmd_fanout(args: argparse.Namespace) -> int:

    for name in (args.codec, args.node_codec):
        if name and name not in CODECS:
            raise ConfigError(f"unknown codec {name!r}; known: {', '.join(CODECS)}")
    groups = tuple(g.strip() for g in args.groups.split(",") if g.strip())
    loop = validate_loop(args.loop or default_loop())
    validate_loop(args.baseline_loop)
    validate_loop(args.generator_loop)
    if args.baseline and (args.transport != "ws" and not args.sweep):
        raise ConfigError("--baseline is a WebSocket broadcaster: use it with --transport ws")
    try:
        base = FanoutConfig(
            transport=args.transport, workers=args.workers, loop=loop,
            generator_loop=args.generator_loop,
            subscribers=args.subscribers, duration_s=args.duration,
            warmup_s=args.warmup, codec=args.codec, node_codec=args.node_codec,
            follow_cars=args.cars, groups=groups, generators=args.generators,
            profile_path=str(args.profile) if args.profile else None,
        )  # fmt: skip
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    capacity = Capacity(args.max_p99_ms, args.min_delivered, args.min_realtime)
    if args.replot:
        return _replot(args.out, capacity)
    if args.sweep:
        transports = tuple(t.strip() for t in args.transports.split(",") if t.strip())
        if not transports or any(t not in ("ws", "sse", "poll") for t in transports):
            raise ConfigError("--transports takes ws, sse and/or poll, comma-separated")
        duration = args.duration if "--duration" in sys.argv else 10.0
        with_baseline = args.baseline_loop if args.baseline else None
        summary = run_sweep(base, args.steps, transports, duration, capacity, args.out, _progress,
                            baseline_loop=with_baseline)  # fmt: skip

        for line in headline(summary, summary["steps_codec"]):
            sys.stdout.write(line.replace("**", "") + "\n")
        return 0
    if args.baseline:
        result = run_with_baseline(base, args.baseline_loop, progress=_progress)
    else:
        result = run_fanout(base, progress=_progress)
    _print(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        _progress(f"wrote {args.json}")
    return 0
