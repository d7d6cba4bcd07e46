"""Write-path micro-benchmark: server CPU per delivered WebSocket message, per write path.

One binary message (480 bytes by default) is written to N loopback WebSocket
connections per tick, by each variant in ``VARIANTS`` in a fresh server
process, against the same lean raw-socket clients (separate processes, at
most 10,000 sockets each).  Per tick the server runs one synchronous write
loop, then the benchmark waits until every client has that message before the
next tick: ticks are back to back, not paced at 2 Hz.  After ``--warmup``
ticks it measures the server process's CPU (user + system, getrusage) over
``--ticks`` ticks and divides by N x ticks; it also reports the write loop's
wall time per tick (p50/p99) and the server's RSS growth per connection.

Run::

    python -m benchmarks.fanout_write --fans 10000 --ticks 40 \\
        --json benchmarks/results/fanout_write.json

The machine may be shared: /proc/loadavg is recorded before and after each
variant and printed beside its figures.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from benchmarks.fanout_write_clients import run_clients
from benchmarks.fanout_write_servers import VARIANTS, serve

__all__ = ["BenchError", "RunResult", "main", "run_variant"]

MAX_SOCKETS_PER_CLIENT = 10_000
_STEP_TIMEOUT_S = 120.0  # opening all connections, or one tick's delivery


class BenchError(RuntimeError):
    """A variant could not be measured (the text says which process and why)."""


@dataclass(frozen=True, slots=True)
class RunResult:
    """One variant's figures; CPU in microseconds per delivered message."""

    variant: str
    fans: int
    ticks: int
    warmup: int
    payload_bytes: int
    messages_expected: int
    messages_delivered: int
    cpu_user_s: float
    cpu_sys_s: float
    cpu_us_per_message: float
    write_loop_p50_ms: float
    write_loop_p99_ms: float
    write_loop_max_ms: float
    rss_per_connection_bytes: float
    loadavg_before: list[float]
    loadavg_after: list[float]
    client_stats: list[dict[str, Any]] = field(default_factory=list)


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages from /proc/loadavg."""
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def _loads(values: list[float]) -> str:
    return " ".join(f"{x:.2f}" for x in values)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class _Processes:
    """The server and client processes of one run, their pipes, and their teardown."""

    def __init__(self) -> None:
        self._ctx = multiprocessing.get_context("spawn")
        self.named: list[tuple[str, BaseProcess, Connection]] = []
        self._done: set[int] = set()

    def start(self, name: str, target: Any, *args: Any) -> Connection:
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(target=target, args=(*args, child), name=name, daemon=True)
        process.start()
        child.close()
        self.named.append((name, process, parent))
        return parent

    def done(self, pipe: Connection) -> None:
        """``pipe``'s process has sent its last message and may exit from now on."""
        self._done.add(id(pipe))

    def _check(self) -> None:
        for name, process, pipe in self.named:
            if not process.is_alive() and id(pipe) not in self._done:
                detail = ""
                try:
                    while pipe.poll():
                        message = pipe.recv()
                        if message[0] == "error":
                            detail = ": " + message[1]
                except (EOFError, OSError):
                    pass
                raise BenchError(f"{name} exited (code {process.exitcode}){detail}")

    def expect(self, pipe: Connection, kind: str, timeout_s: float = _STEP_TIMEOUT_S) -> Any:
        """The next message on ``pipe``, which must be ``kind``; fails fast if a process died."""
        deadline = time.monotonic() + timeout_s
        while not pipe.poll(0.2):
            self._check()
            if time.monotonic() > deadline:
                raise BenchError(f"no {kind!r} within {timeout_s:.0f} s")
        try:
            message = pipe.recv()
        except (EOFError, OSError):
            # The other end is gone: say which process died, and how, if it can be told.
            self._await_exit(pipe)
            self._check()
            raise BenchError(f"a process closed its pipe while {kind!r} was awaited") from None
        if message[0] == "error":
            raise BenchError(message[1])
        if message[0] != kind:
            raise BenchError(f"expected {kind!r}, got {message[:2]!r}")
        return message

    def _await_exit(self, pipe: Connection) -> None:
        for _name, process, other in self.named:
            if other is pipe:
                process.join(2.0)

    def stop(self) -> None:
        for _name, process, _pipe in self.named:
            process.join(5.0)
            if process.is_alive():
                process.terminate()
                process.join(2.0)
            if process.is_alive():
                process.kill()
                process.join(2.0)
        for _name, _process, pipe in self.named:
            pipe.close()


def _shares(fans: int) -> list[int]:
    processes = math.ceil(fans / MAX_SOCKETS_PER_CLIENT)
    base, extra = divmod(fans, processes)
    return [base + (1 if i < extra else 0) for i in range(processes)]


def run_variant(variant: str, fans: int, ticks: int, warmup: int, payload: bytes) -> RunResult:
    """Measure ``variant`` writing ``payload`` to ``fans`` connections for ``ticks`` ticks."""
    processes = _Processes()
    try:
        server = processes.start("server " + variant, serve, variant, fans, payload)
        ready = processes.expect(server, "ready")
        port, rss_ready = ready[1], ready[2]
        clients = [
            processes.start(f"clients {i}", run_clients, port, share, len(payload))
            for i, share in enumerate(_shares(fans))
        ]
        for pipe in clients:
            processes.expect(pipe, "open")
        processes.expect(server, "fans")
        before = loadavg()
        durations: list[float] = []
        for k in range(1, warmup + ticks + 1):
            if k == warmup + 1:
                server.send(("mark",))
                processes.expect(server, "marked")
            server.send(("tick",))
            wrote = processes.expect(server, "wrote")
            if k > warmup:
                durations.append(wrote[1])
            for pipe in clients:
                got = processes.expect(pipe, "got")
                if got[1] != k:
                    raise BenchError(f"clients reported message {got[1]}, expected {k}")
        server.send(("report",))
        _kind, user_s, sys_s, rss_end = processes.expect(server, "report")
        after = loadavg()
        stats: list[dict[str, Any]] = []
        for pipe in clients:
            pipe.send(("close",))
            stats.append(processes.expect(pipe, "stats")[1])
            processes.done(pipe)
        server.send(("stop",))
    finally:
        processes.stop()
    delivered = sum(s["frames_total"] for s in stats)
    return RunResult(
        variant=variant,
        fans=fans,
        ticks=ticks,
        warmup=warmup,
        payload_bytes=len(payload),
        messages_expected=fans * (warmup + ticks),
        messages_delivered=delivered,
        cpu_user_s=user_s,
        cpu_sys_s=sys_s,
        cpu_us_per_message=(user_s + sys_s) / (fans * ticks) * 1e6,
        write_loop_p50_ms=statistics.median(durations) * 1e3,
        write_loop_p99_ms=_percentile(durations, 0.99) * 1e3,
        write_loop_max_ms=max(durations) * 1e3,
        rss_per_connection_bytes=(rss_end - rss_ready) / fans,
        loadavg_before=before,
        loadavg_after=after,
        client_stats=stats,
    )


def machine_info() -> dict[str, Any]:
    """CPU model, cores, kernel, Python and the versions of the libraries measured."""
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str | None] = {}
    for name in ("uvloop", "websockets", "picows", "aiofastnet"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
    }


def _raise_file_limit(fans: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = min(fans, MAX_SOCKETS_PER_CLIENT) + fans + 256
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < fans + 256:
            raise BenchError(
                f"open-file limit {hard} is below {fans} fans plus pipes; lower --fans"
            )
        limit = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def _table(results: list[RunResult]) -> str:
    head = (
        f"{'variant':<21} {'fans':>6} {'delivered':>9} {'cpu µs':>8} {'user':>7} {'sys':>7}"
        f" {'p50 ms':>9} {'p99 ms':>9} {'rss B/c':>9}  loadavg before -> after"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        cpu_s = max(r.cpu_user_s + r.cpu_sys_s, 1e-9)
        delivered = f"{r.messages_delivered // r.fans}/{r.messages_expected // r.fans}"
        lines.append(
            f"{r.variant:<21} {r.fans:>6} {delivered:>9} {r.cpu_us_per_message:>8.2f}"
            f" {100 * r.cpu_user_s / cpu_s:>6.0f}% {100 * r.cpu_sys_s / cpu_s:>6.0f}%"
            f" {r.write_loop_p50_ms:>9.2f} {r.write_loop_p99_ms:>9.2f}"
            f" {r.rss_per_connection_bytes:>9.0f}"
            f"  {r.loadavg_before[0]:.2f} -> {r.loadavg_after[0]:.2f}"
        )
    return "\n".join(lines)


def summarize(results: list[RunResult]) -> list[dict[str, Any]]:
    """Per variant over its repeats: median, min and max µs/message, and ratios of medians."""
    by_variant: dict[str, list[float]] = {}
    for r in results:
        by_variant.setdefault(r.variant, []).append(r.cpu_us_per_message)
    medians = {v: statistics.median(xs) for v, xs in by_variant.items()}
    floor = medians.get("floor")
    bare = medians.get("websockets-broadcast")
    return [
        {
            "variant": v,
            "runs": len(xs),
            "cpu_us_per_message_median": medians[v],
            "cpu_us_per_message_min": min(xs),
            "cpu_us_per_message_max": max(xs),
            "ratio_to_floor": medians[v] / floor if floor else None,
            "ratio_to_websockets_broadcast": medians[v] / bare if bare else None,
        }
        for v, xs in by_variant.items()
    ]


def _summary_table(summary: list[dict[str, Any]]) -> str:
    head = f"{'variant':<21} {'runs':>4} {'median µs':>9} {'min':>6} {'max':>6} {'x floor':>8}"
    head += f" {'x websockets':>12}"
    lines = [head, "-" * len(head)]
    for row in summary:
        to_floor, to_bare = row["ratio_to_floor"], row["ratio_to_websockets_broadcast"]
        lines.append(
            f"{row['variant']:<21} {row['runs']:>4} {row['cpu_us_per_message_median']:>9.2f}"
            f" {row['cpu_us_per_message_min']:>6.2f} {row['cpu_us_per_message_max']:>6.2f}"
            f" {'' if to_floor is None else f'{to_floor:.2f}':>8}"
            f" {'' if to_bare is None else f'{to_bare:.2f}':>12}"
        )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.fanout_write",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="variants: " + "; ".join(f"{name} = {text}" for name, text in VARIANTS.items()),
    )
    parser.add_argument("--fans", type=int, default=10_000, help="connections (default 10000)")
    parser.add_argument("--ticks", type=int, default=40, help="measured ticks (default 40)")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured ticks first (5)")
    parser.add_argument("--payload-bytes", type=int, default=480, help="message size (480)")
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="comma-separated subset, in run order (default: all)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="rounds over the variants (1)")
    parser.add_argument("--json", help="write the figures and machine info to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (CLI entry); returns the exit status."""
    args = _parser().parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        _parser().error(
            "unknown variant(s) {}; choose from {}".format(unknown, ", ".join(VARIANTS))
        )
    if args.fans < 1 or args.ticks < 1 or args.warmup < 0 or args.repeat < 1:
        _parser().error("--fans, --ticks and --repeat must be at least 1, --warmup at least 0")
    _raise_file_limit(args.fans)
    payload = bytes(i * 7 % 251 for i in range(args.payload_bytes))
    start_load = loadavg()
    started_utc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(
        f"fanout_write: {args.fans} fans, {args.warmup}+{args.ticks} ticks,"
        f" {args.payload_bytes}-byte messages; loadavg at start {_loads(start_load)}"
        " (other processes share this machine)",
        flush=True,
    )
    results: list[RunResult] = []
    errors: dict[str, str] = {}
    for _round in range(args.repeat):
        for variant in variants:
            try:
                result = run_variant(variant, args.fans, args.ticks, args.warmup, payload)
            except BenchError as exc:
                errors[variant] = str(exc)
                print(f"{variant}: FAILED: {exc}", file=sys.stderr, flush=True)
                continue
            results.append(result)
            print(
                f"{variant}: {result.cpu_us_per_message:.2f} µs/message,"
                f" write loop p50 {result.write_loop_p50_ms:.2f} ms,"
                f" loadavg {result.loadavg_before[0]:.2f} -> {result.loadavg_after[0]:.2f}",
                flush=True,
            )
    end_load = loadavg()
    print()
    print(_table(results))
    summary = summarize(results)
    print()
    print(_summary_table(summary))
    print(
        f"loadavg start {_loads(start_load)}, end {_loads(end_load)}: the CPU figures are"
        " the server process's own time, but a busy machine still costs it caches and"
        " scheduling"
    )
    if args.json:
        document = {
            "benchmark": "fanout_write",
            "command": "python -m benchmarks.fanout_write "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "unit": "cpu_us_per_message = server user+sys CPU / (fans x measured ticks), µs",
            "started_utc": started_utc,
            "machine": machine_info(),
            "loadavg_start": start_load,
            "loadavg_end": end_load,
            "other_load": "shared machine: other processes ran during the measurement; "
            "see loadavg_before/after per run",
            "settings": {k: v for k, v in vars(args).items() if k != "json"},
            "variants": VARIANTS,
            "summary": summary,
            "runs": [asdict(r) for r in results],
            "errors": errors,
        }
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(document, f, indent=2)
            f.write("\n")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
