"""The fan-out benchmark: one broadcast node, N subscribers, one transport.

:func:`run_fanout` starts a broadcast-node process fed a simulated race at
2 Hz (:mod:`slipstream.app.bench.server`), spreads N subscribers over one or more
load-generator processes (:mod:`slipstream.app.bench.generator`), measures a
window of ticks once everyone is connected, and returns the figures of
:func:`slipstream.app.bench.stats.summarise`.  Every process it starts is stopped
before it returns, also on failure and Ctrl-C.

The window is a range of tick numbers announced to the generators before
it starts; server and generator CPU are read from ``/proc`` when the first
and the one-past-last tick of the window are published.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, cast

from broadcast.config import BroadcastConfig
from slipstream.app.bench import BenchError
from slipstream.app.bench.adapter import Subscription
from slipstream.app.bench.generator import GeneratorSpec, generator_main
from slipstream.app.bench.race import RaceFrames, simulate_race
from slipstream.app.bench.server import ServerSpec, server_main
from slipstream.app.bench.stats import machine_busy_s, proc_sample, summarise

__all__ = ["FanoutConfig", "default_codec", "prepare_race", "run_fanout"]

logger = logging.getLogger(__name__)

#: Ticks fed at once before the run, so the node's replay ring (240 ticks by
#: default) is full and its memory at steady state when the baseline RSS is read.
PREFILL_TICKS = 240
#: Subscribers per generator process (the per-process cap is 20,000 open files).
MAX_PER_GENERATOR = 10_000
_ADAPTER = "slipstream.app.bench.slipstream_adapter:make_adapter"
Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class FanoutConfig:
    """One run of the fan-out benchmark.

    Attributes:
        transport: ``ws`` or ``poll``.
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
        connect_concurrency: Connections each generator opens at once.
        grace_s: Longest wait after the window for late deliveries.
        poll_hold_s: The node's long-poll hold.
        profile_path: cProfile stats of the node over the window go here.
        seed: Race seed.
    """

    transport: str = "ws"
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


class _Procs:
    """The processes of one run; :meth:`close` stops them all, whatever happened."""

    def __init__(self) -> None:
        self.ctx = multiprocessing.get_context("spawn")
        self.items: list[tuple[BaseProcess, Connection]] = []

    def start(self, target: Callable[..., None], spec: Any, name: str) -> Connection:
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=target, args=(spec, child), name=name, daemon=True)
        proc.start()
        child.close()
        self.items.append((proc, parent))
        return parent

    def close(self, timeout_s: float = 20.0) -> None:
        # Generators first (clients close their connections), the node last.
        for proc, conn in reversed(self.items):
            with contextlib.suppress(OSError):
                conn.send(("stop",))
            proc.join(timeout_s)
            if proc.is_alive():
                logger.warning("%s did not stop in %.0f s; killing it", proc.name, timeout_s)
                proc.kill()
                proc.join(5)
            conn.close()
        self.items.clear()


def _drain(conn: Connection, handle: Callable[[tuple[Any, ...]], None]) -> None:
    try:
        while conn.poll():
            message = conn.recv()
            if message[0] == "error":
                raise BenchError(f"a benchmark process failed: {message[1]}")
            handle(message)
    except EOFError:
        raise BenchError("a benchmark process died unexpectedly") from None


def run_fanout(
    cfg: FanoutConfig, race_path: Path | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Run one (transport, subscribers) measurement; returns its figures (JSON-ready).

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
    label = f"[{cfg.transport} N={cfg.subscribers}]"
    procs = _Procs()
    state: dict[str, Any] = {
        "tick": -1, "tick_ns": {}, "lag_s": {}, "node_s": {}, "race_over": False,
        "profile": None,
    }  # fmt: skip
    try:
        server_conn = procs.start(
            server_main,
            ServerSpec(str(race_path), node_codec, cfg.poll_hold_s,
                       prefill_ticks=PREFILL_TICKS, profile_path=cfg.profile_path),
            "bench-node",
        )  # fmt: skip

        def on_server(message: tuple[Any, ...]) -> None:
            kind = message[0]
            if kind == "ready":
                state["port"], state["pid"] = message[1], message[2]
            elif kind == "tick":
                state["tick"] = message[1]
                state["tick_ns"][message[1]] = message[2]
                state["lag_s"][message[1]] = message[3]
                state["node_s"][message[1]] = (message[4], message[5])
            elif kind == "race_over":
                state["race_over"] = True
            elif kind == "profile":
                state["profile"] = message[1]

        def pump(timeout_s: float, until: Callable[[], bool], what: str) -> None:
            deadline = time.monotonic() + timeout_s
            while not until():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchError(f"{label} timed out after {timeout_s:.0f} s {what}")
                if state["race_over"]:
                    raise BenchError(f"{label} the simulated race ran out {what}")
                for ready in wait([c for _, c in procs.items], timeout=min(left, 1.0)):
                    conn = cast(Connection, ready)
                    if conn is server_conn:
                        _drain(conn, on_server)
                    else:
                        _drain(conn, gen_state[conn].update_from)
                tick_progress()

        gen_state: dict[Connection, _GenState] = {}
        last_say = [0.0]

        def tick_progress() -> None:
            if time.monotonic() - last_say[0] < 1.0 or not gen_state:
                return
            last_say[0] = time.monotonic()
            g = list(gen_state.values())
            say(
                f"{label} tick {state['tick']}: opened {sum(x.opened for x in g)}, "
                f"connected {sum(x.connected for x in g)}, failed {sum(x.failed for x in g)}, "
                f"ticks received {sum(x.ticks_seen for x in g)}"
            )

        pump(60, lambda: "pid" in state and state["tick"] > PREFILL_TICKS, "waiting for the node")
        pid = state["pid"]
        baseline = proc_sample(pid)
        count = cfg.generator_count
        base = (os.getpid() % 200) + 1
        for k in range(count):
            share = cfg.subscribers // count + (1 if k < cfg.subscribers % count else 0)
            spec = GeneratorSpec(
                cfg.transport, "127.0.0.1", state["port"], share, _ADAPTER, sub,
                local_host=f"127.{base}.{int(time.time()) % 250}.{k + 1}",
                connect_concurrency=cfg.connect_concurrency,
                max_runtime_s=cfg.race_seconds() + 120,
            )  # fmt: skip
            conn = procs.start(generator_main, spec, f"bench-generator-{k}")
            gen_state[conn] = _GenState(procs.items[-1][0].pid or 0)
        say(f"{label} node pid {pid} on port {state['port']}; {count} generator process(es)")
        pump(
            60 + cfg.subscribers / 100,
            lambda: all(g.opened_done for g in gen_state.values()),
            "while connecting",
        )
        lo = state["tick"] + 1 + round(cfg.warmup_s * 2)
        hi = lo + round(cfg.duration_s * 2)
        for conn in gen_state:
            conn.send(("window", lo, hi))
        pump(cfg.warmup_s + 30, lambda: state["tick"] >= lo, "before the window")
        if cfg.profile_path:
            server_conn.send(("profile_start",))
        start_server = proc_sample(pid)
        start_gens = [proc_sample(g.pid).cpu_s for g in gen_state.values()]
        start_machine = machine_busy_s()
        say(f"{label} measuring ticks {lo}..{hi - 1} ({cfg.duration_s:g} s)")
        pump(cfg.duration_s + 30, lambda: state["tick"] >= hi, "during the window")
        end_server = proc_sample(pid)
        end_gens = [proc_sample(g.pid).cpu_s for g in gen_state.values()]
        end_machine = machine_busy_s()
        if cfg.profile_path:
            server_conn.send(("profile_stop",))
        window_s = (state["tick_ns"][hi] - state["tick_ns"][lo]) / 1e9
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
            pump(30, lambda: state["profile"] is not None, "for the profile")
        results = [g.result for g in gen_state.values() if g.result is not None]
        emitted: dict[int, int] = {}
        for r in results:
            emitted.update(r["emitted_ns"])
        emit_delays_ms = [(ns - state["tick_ns"][t]) / 1e6 for t, ns in emitted.items()]
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
            loop_lags_ms=[1000 * state["lag_s"][t] for t in range(lo, hi)],
            machine_busy_s=end_machine - start_machine,
        )
        result["load_avg_1m"] = round(os.getloadavg()[0], 2)
        result["generator_cpu_pct_each"] = [
            round(100 * (e - s) / window_s, 1) for s, e in zip(start_gens, end_gens, strict=True)
        ]
        # The node's own timers (no profiler): encoding per tick, WebSocket writes per update.
        (enc0, fan0), (enc1, fan1) = state["node_s"][lo], state["node_s"][hi]
        # (Long-poll handlers assemble their messages outside these timers.)
        result["node_encode_ms_per_tick"] = (
            round(1000 * (enc1 - enc0) / (hi - lo), 3) if cfg.transport == "ws" else None
        )
        result["node_ws_write_us_per_update"] = (
            round(1e6 * (fan1 - fan0) / result["delivered_updates"], 2)
            if cfg.transport == "ws" and result["delivered_updates"]
            else None
        )
    finally:
        procs.close()
    result["codec"] = cfg.codec or node_codec
    result["subscription"] = {"cars": list(followed) or "all", "groups": list(cfg.groups) or "all"}
    result["race"] = {"id": race.race, "cars": len(race.cars), "tick_hz": 2}
    result["config"] = {k: v for k, v in asdict(cfg).items() if k != "extra"}
    result["command"] = " ".join(["slipstream", *sys.argv[1:]]) if sys.argv else ""
    result["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result.update(cfg.extra)
    return result


class _GenState:
    """What the parent knows about one generator process."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.opened = self.connected = self.failed = self.ticks_seen = self.delivered = 0
        self.opened_done = False
        self.result: dict[str, Any] | None = None

    def update_from(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "progress":
            _, self.opened, self.connected, self.failed, self.ticks_seen, self.delivered = message
        elif kind == "opened":
            self.opened_done = True
            self.connected, self.failed = message[1], message[2]
        elif kind == "result":
            self.result = message[1]
