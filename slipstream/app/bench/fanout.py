"""The fan-out benchmark: a broadcast node (or the baseline), N subscribers, one transport.

:func:`run_fanout` starts the server processes -- one broadcast node
(:mod:`slipstream.app.bench.server`), ``workers`` node processes sharing one
port with SO_REUSEPORT, or the bare ``websockets.broadcast()`` baseline
(:mod:`slipstream.app.bench.baseline`) -- each fed the same pre-computed race at
2 Hz on one wall-clock schedule, spreads N subscribers over one or more
load-generator processes (:mod:`slipstream.app.bench.generator`), measures a
window of ticks once everyone is connected, and returns the figures of
:func:`slipstream.app.bench.stats.summarise`.  Every process it starts is
stopped before it returns, also on failure and Ctrl-C.

The window is a range of tick numbers announced to the generators before
it starts; server and generator CPU are read from ``/proc`` when the first
and the one-past-last tick of the window are published.  With several
workers, server CPU is the sum over them and memory per connection the sum
of their RSS growth over N.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, cast

from broadcast.config import BroadcastConfig
from slipstream.app.bench import BenchError
from slipstream.app.bench.adapter import Subscription
from slipstream.app.bench.baseline import BaselineSpec, baseline_main
from slipstream.app.bench.generator import GeneratorSpec, generator_main
from slipstream.app.bench.loops import LOOPS, default_loop, loop_version
from slipstream.app.bench.procs import GenState, Procs, ServerState, drain, reserve_port
from slipstream.app.bench.race import RaceFrames, simulate_race
from slipstream.app.bench.server import ServerSpec, server_main
from slipstream.app.bench.stats import ProcSample, machine_busy_s, proc_sample, summarise

__all__ = ["FanoutConfig", "default_codec", "prepare_race", "run_fanout"]

logger = logging.getLogger(__name__)

#: Ticks fed at once before the run, so the node's replay ring (240 ticks by
#: default) is full and its memory at steady state when the baseline RSS is read.
PREFILL_TICKS = 240
#: Subscribers per generator process (the per-process cap is 20,000 open files).
MAX_PER_GENERATOR = 10_000
#: More node worker processes than this is a typo, not a benchmark.
MAX_WORKERS = 32
#: Server kinds: the broadcast node, the bare ``websockets.broadcast()`` baseline.
SERVERS = ("slipstream", "baseline")
_ADAPTER = "slipstream.app.bench.slipstream_adapter:make_adapter"
Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class FanoutConfig:
    """One run of the fan-out benchmark.

    Attributes:
        transport: ``ws``, ``sse`` or ``poll``.
        server: ``slipstream`` (the broadcast node) or ``baseline`` (a bare
            ``websockets.broadcast()`` server of the same bytes; WebSocket only).
        workers: Node processes sharing the port with SO_REUSEPORT.
        loop: Event loop of the server processes, ``asyncio`` or ``uvloop``
            ("" = uvloop when importable).
        generator_loop: Event loop of the load-generator processes.
        subscribers: Subscribers to open.
        duration_s: Length of the measurement window.
        warmup_s: Ticks skipped between "everyone connected" and the window.
        codec: Codec every subscriber asks for ("" = the node's default).
        node_codec: The node's default codec ("" = the node's own default,
            :attr:`broadcast.config.BroadcastConfig.default_codec`).
        follow_cars: How many cars each subscriber follows (0 = every car).
        groups: Channel groups subscribed (empty = every group).
        race_cars: Cars in the simulated race.
        generators: Generator processes (0 = one per 10,000 subscribers).
        connect_concurrency: Connections opened at once, over all generators
            (a node short of CPU otherwise queues handshakes past the clients'
            timeout, and their retries keep it there).
        grace_s: Longest wait after the window for late deliveries.
        poll_hold_s: The node's long-poll hold.
        profile_path: cProfile stats of the node over the window go here.
        seed: Race seed.
    """

    transport: str = "ws"
    server: str = "slipstream"
    workers: int = 1
    loop: str = ""
    generator_loop: str = "asyncio"
    subscribers: int = 1000
    duration_s: float = 20.0
    warmup_s: float = 2.0
    codec: str = ""
    node_codec: str = ""
    follow_cars: int = 2
    groups: tuple[str, ...] = ()
    race_cars: int = 40
    generators: int = 0
    connect_concurrency: int = 200
    grace_s: float = 3.0
    poll_hold_s: float = 25.0
    profile_path: str | None = None
    seed: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.transport not in ("ws", "sse", "poll"):
            raise ValueError(f"transport must be ws, sse or poll, got {self.transport!r}")
        if not 1 <= self.subscribers <= 100_000:
            raise ValueError("subscribers must be between 1 and 100,000")
        if not 1 <= self.duration_s <= 600 or not 0 <= self.warmup_s <= 60:
            raise ValueError("duration must be 1..600 s and warm-up 0..60 s")
        if not 0 <= self.follow_cars <= self.race_cars or not 1 <= self.race_cars <= 99:
            raise ValueError("race cars must be 1..99 and followed cars 0..race cars")
        if self.generators < 0 or self.connect_concurrency < 1:
            raise ValueError("generators must be >= 0 and connect concurrency >= 1")
        if self.server not in SERVERS:
            raise ValueError(f"server must be slipstream or baseline, got {self.server!r}")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ValueError(f"workers must be between 1 and {MAX_WORKERS}")
        if (self.loop and self.loop not in LOOPS) or self.generator_loop not in LOOPS:
            raise ValueError("event loops are asyncio or uvloop")
        if self.server == "baseline" and (self.transport != "ws" or self.workers != 1):
            raise ValueError("the baseline is one WebSocket broadcaster: transport ws, 1 worker")
        if self.generator_count > self.subscribers:
            raise ValueError("more generator processes than subscribers")
        if math.ceil(self.subscribers / self.generator_count) > MAX_PER_GENERATOR:
            raise ValueError(
                f"at most {MAX_PER_GENERATOR:,} subscribers per generator process (the "
                "open-file cap is 20,000): pass more --generators, or 0 for the default"
            )

    @property
    def loop_name(self) -> str:
        """The event loop the server processes run on."""
        return self.loop or default_loop()

    @property
    def generator_count(self) -> int:
        """Generator processes to use."""
        return self.generators or max(1, math.ceil(self.subscribers / MAX_PER_GENERATOR))

    def race_seconds(self) -> float:
        """Race length that covers connecting, warm-up, the window and a margin."""
        return (
            PREFILL_TICKS / 2 + 60.0 + self.warmup_s + self.duration_s + self.grace_s
            + self.subscribers / 100
        )  # fmt: skip


def default_codec() -> str:
    """The broadcast node's default codec."""

    return BroadcastConfig().default_codec


def prepare_race(cars: int, seconds: float, seed: int, progress: Progress | None = None) -> Path:
    """Simulate the race once and keep it in the temp dir; returns the ``.npz`` path."""
    seconds = math.ceil(seconds / 30) * 30
    path = Path(tempfile.gettempdir()) / f"slipstream-bench-race-{cars}c-{seconds}s-{seed}.npz"
    if not path.exists():
        if progress:
            progress(f"simulating a {seconds} s race of {cars} cars (once; cached in {path})")
        partial = path.with_suffix(f".{os.getpid()}.npz")
        simulate_race(cars, seconds, seed).save(partial)
        partial.replace(path)
    return path


def _start_servers(
    cfg: FanoutConfig,
    procs: Procs,
    race_path: Path,
    node_codec: str,
    sub: Subscription,
    reserved: list[socket.socket],
) -> dict[Connection, ServerState]:
    """Start the server processes of ``cfg``; they report ``ready`` once listening.

    With several workers, the socket that reserves their port is added to
    ``reserved``: close it once they all listen.
    """
    servers: dict[Connection, ServerState] = {}
    if cfg.server == "baseline":
        base_spec = BaselineSpec(str(race_path), sub, node_codec, first_tick=PREFILL_TICKS,
                            loop=cfg.loop_name, max_runtime_s=cfg.race_seconds() + 120)  # fmt: skip
        servers[procs.start(baseline_main, base_spec, "bench-baseline")] = ServerState()
        return servers
    port = 0
    if cfg.workers > 1:
        reserved.append(sock := reserve_port())
        port = sock.getsockname()[1]
    for k in range(cfg.workers):
        spec = ServerSpec(
            str(race_path), node_codec, cfg.poll_hold_s, prefill_ticks=PREFILL_TICKS,
            profile_path=cfg.profile_path if k == 0 else None, loop=cfg.loop_name,
            max_runtime_s=cfg.race_seconds() + 120, port=port, reuse_port=cfg.workers > 1,
            server_id=f"bench-{k}" if cfg.workers > 1 else "bench",
        )  # fmt: skip
        name = f"bench-node-{k}" if cfg.workers > 1 else "bench-node"
        servers[procs.start(server_main, spec, name)] = ServerState()
    return servers


def _proc_sum(samples: list[ProcSample]) -> ProcSample:
    return ProcSample(sum(s.cpu_s for s in samples), sum(s.rss_bytes for s in samples))


def run_fanout(
    cfg: FanoutConfig, race_path: Path | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Run one (server, transport, subscribers) measurement; returns its figures (JSON-ready).

    Raises:
        BenchError: A process failed, or connecting/the window did not finish in time.
    """
    say = progress or (lambda text: None)
    node_codec = cfg.node_codec or default_codec()
    if race_path is None:
        race_path = prepare_race(cfg.race_cars, cfg.race_seconds(), cfg.seed, say)
    race = RaceFrames.load(race_path)
    followed = tuple(int(c) for c in race.cars[: cfg.follow_cars]) if cfg.follow_cars else ()
    sub = Subscription(race.race, followed, cfg.groups, cfg.codec)
    who = "baseline" if cfg.server == "baseline" else "node"
    workers = f" x{cfg.workers}" if cfg.workers > 1 else ""
    label = f"[{who}{workers} {cfg.transport} N={cfg.subscribers}]"
    procs = Procs()
    reserved: list[socket.socket] = []
    try:
        servers = _start_servers(cfg, procs, race_path, node_codec, sub, reserved)
        gen_state: dict[Connection, GenState] = {}
        last_say = [0.0]

        def tick() -> int:
            # A tick counts as published once every server published it.
            return min(s.tick for s in servers.values())

        def tick_progress() -> None:
            if time.monotonic() - last_say[0] < 1.0 or not gen_state:
                return
            last_say[0] = time.monotonic()
            g = list(gen_state.values())
            say(
                f"{label} tick {tick()}: opened {sum(x.opened for x in g)}, "
                f"connected {sum(x.connected for x in g)}, failed {sum(x.failed for x in g)}, "
                f"ticks received {sum(x.ticks_seen for x in g)}"
            )

        def pump(timeout_s: float, until: Callable[[], bool], what: str) -> None:
            deadline = time.monotonic() + timeout_s
            while not until():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchError(f"{label} timed out after {timeout_s:.0f} s {what}")
                if any(s.race_over for s in servers.values()):
                    raise BenchError(f"{label} the simulated race ran out {what}")
                for ready in wait([c for _, c in procs.items], timeout=min(left, 1.0)):
                    conn = cast(Connection, ready)
                    state = servers.get(conn) or gen_state[conn]
                    drain(conn, state.update_from)
                tick_progress()

        pump(90 + 30 * cfg.workers, lambda: all(s.pid for s in servers.values()),
             "waiting for the server process(es)")  # fmt: skip
        for sock in reserved:
            sock.close()
        # One wall-clock schedule for every server: tick PREFILL_TICKS is due in 0.2 s.
        go_ns = time.time_ns() + 200_000_000
        for conn in servers:
            conn.send(("go", go_ns))
        pump(30, lambda: tick() >= PREFILL_TICKS, "waiting for the first paced tick")
        pids = [s.pid for s in servers.values()]
        port = next(iter(servers.values())).port
        baseline_each = [proc_sample(p) for p in pids]
        baseline = _proc_sum(baseline_each)
        count = cfg.generator_count
        base = (os.getpid() % 200) + 1
        for k in range(count):
            share = cfg.subscribers // count + (1 if k < cfg.subscribers % count else 0)
            spec = GeneratorSpec(
                cfg.transport, "127.0.0.1", port, share, _ADAPTER, sub,
                local_host=f"127.{base}.{int(time.time()) % 250}.{k + 1}",
                connect_concurrency=max(1, cfg.connect_concurrency // count),
                max_runtime_s=cfg.race_seconds() + 120, loop=cfg.generator_loop,
            )  # fmt: skip
            conn = procs.start(generator_main, spec, f"bench-generator-{k}")
            gen_state[conn] = GenState(procs.items[-1][0].pid or 0)
        say(f"{label} {who} pid {' '.join(map(str, pids))} on port {port} "
            f"({cfg.loop_name} loop); {count} generator process(es)")  # fmt: skip
        pump(
            60 + cfg.subscribers / 100,
            lambda: all(g.opened_done for g in gen_state.values()),
            "while connecting",
        )
        lo = tick() + 1 + round(cfg.warmup_s * 2)
        hi = lo + round(cfg.duration_s * 2)
        for conn in gen_state:
            conn.send(("window", lo, hi))
        pump(cfg.warmup_s + 30, lambda: tick() >= lo, "before the window")
        profiled = next(iter(servers))
        if cfg.profile_path:
            profiled.send(("profile_start",))
        start_each = [proc_sample(p) for p in pids]
        fans_each = [s.fans for s in servers.values()]
        start_server = _proc_sum(start_each)
        start_gens = [proc_sample(g.pid).cpu_s for g in gen_state.values()]
        start_machine = machine_busy_s()
        say(f"{label} measuring ticks {lo}..{hi - 1} ({cfg.duration_s:g} s)")
        pump(cfg.duration_s + 30, lambda: tick() >= hi, "during the window")
        end_each = [proc_sample(p) for p in pids]
        end_server = _proc_sum(end_each)
        end_gens = [proc_sample(g.pid).cpu_s for g in gen_state.values()]
        end_machine = machine_busy_s()
        if cfg.profile_path:
            profiled.send(("profile_stop",))
        states = list(servers.values())
        # Per tick: when the first server published it, and the worst lag of any.
        first_ns = {t: min(s.tick_ns[t] for s in states) for t in range(lo, hi + 1)}
        window_s = (first_ns[hi] - first_ns[lo]) / 1e9
        expected = cfg.subscribers * (hi - lo)
        # Late or lost updates are what the delivery ratio reports: no error here.
        with contextlib.suppress(BenchError):
            pump(
                cfg.grace_s,
                lambda: sum(g.delivered for g in gen_state.values()) >= expected,
                "(grace)",
            )
        for conn in gen_state:
            conn.send(("result",))
        pump(60, lambda: all(g.result is not None for g in gen_state.values()), "for results")
        if cfg.profile_path:
            pump(30, lambda: servers[profiled].profile is not None, "for the profile")
        results = [g.result for g in gen_state.values() if g.result is not None]
        emitted: dict[int, int] = {}
        for r in results:
            emitted.update(r["emitted_ns"])
        emit_delays_ms = [(ns - first_ns[t]) / 1e6 for t, ns in emitted.items() if t in first_ns]
        result = summarise(
            transport=cfg.transport,
            subscribers=cfg.subscribers,
            window_ticks=hi - lo,
            window_s=window_s,
            generators=results,
            server_cpu_s=end_server.cpu_s - start_server.cpu_s,
            generator_cpu_s=sum(e - s for s, e in zip(start_gens, end_gens, strict=True)),
            rss_baseline_bytes=baseline.rss_bytes,
            rss_connected_bytes=start_server.rss_bytes,
            emit_delays_ms=emit_delays_ms,
            loop_lags_ms=[1000 * max(s.lag_s[t] for s in states) for t in range(lo, hi)],
            machine_busy_s=end_machine - start_machine,
        )
        result["load_avg_1m"] = round(os.getloadavg()[0], 2)
        result["nice"] = os.nice(0)  # of every process of the run (inherited)
        result["generator_cpu_pct_each"] = [
            round(100 * (e - s) / window_s, 1) for s, e in zip(start_gens, end_gens, strict=True)
        ]
        # The servers' own timers (no profiler): encoding per tick, WebSocket writes per update.
        enc = sum(s.timers[hi][0] - s.timers[lo][0] for s in states)
        fan = sum(s.timers[hi][1] - s.timers[lo][1] for s in states)
        # (Long-poll handlers assemble their messages outside these timers.)
        result["node_encode_ms_per_tick"] = (
            round(1000 * enc / (hi - lo), 3) if cfg.transport == "ws" else None
        )
        result["node_ws_write_us_per_update"] = (
            round(1e6 * fan / result["delivered_updates"], 2)
            if cfg.transport == "ws" and result["delivered_updates"]
            else None
        )
        result["server"] = {
            "kind": "websockets.broadcast" if cfg.server == "baseline" else "slipstream",
            "workers": len(states),
            "loop": cfg.loop_name,
            "loop_version": loop_version(cfg.loop_name),
            "fans_each": fans_each,
            "server_cpu_pct_each": [
                round(100 * (e.cpu_s - s.cpu_s) / window_s, 1)
                for s, e in zip(start_each, end_each, strict=True)
            ],
            "server_rss_growth_mb_each": [
                round((s.rss_bytes - b.rss_bytes) / 2**20, 1)
                for b, s in zip(baseline_each, start_each, strict=True)
            ],
        }
    finally:
        for sock in reserved:
            sock.close()
        procs.close()
    result["codec"] = cfg.codec or node_codec
    result["subscription"] = {"cars": list(followed) or "all", "groups": list(cfg.groups) or "all"}
    result["race"] = {"id": race.race, "cars": len(race.cars), "tick_hz": 2}
    result["config"] = {k: v for k, v in asdict(cfg).items() if k != "extra"}
    result["command"] = " ".join(["slipstream", *sys.argv[1:]]) if sys.argv else ""
    result["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result.update(cfg.extra)
    return result
