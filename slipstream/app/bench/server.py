"""A broadcast-node process for benchmarks, fed pre-computed frames at 2 Hz.

The parent starts :func:`server_main` in a fresh process (``spawn``) with a
:class:`ServerSpec` and one end of a pipe.  The process runs the real
:class:`broadcast.server.BroadcastServer` on an in-process bus, on the event
loop the spec names, and publishes one tick of frames (every car) every
``tick_interval_s`` on an absolute wall-clock schedule that the parent sets,
so several node processes (``--workers``) get each tick at the same moment.
Messages are tuples, first item the kind:

* child -> parent: ``("ready", port, pid)`` once listening with the first
  ``prefill_ticks`` published (at once, so the replay ring is full and memory
  at steady state before anyone connects);
  ``("tick", tick, published_ns, lag_s, encode_s, fanout_s, fans)`` after
  each tick's frames are on the bus (``lag_s``: how late against the
  schedule, i.e. the node's event-loop lag; ``encode_s`` and ``fanout_s``:
  the node's own counters of time spent encoding ticks and writing them to
  WebSockets, totals so far; ``fans``: fans connected to this process, as its
  ``slipstream_subscribers`` gauge counts them); ``("race_over",)`` after the last tick;
  ``("profile", path)`` when a profile was written; ``("error", text)`` if
  the node could not run.
* parent -> child: ``("go", t0_ns)``: tick ``prefill_ticks`` is due at
  ``t0_ns`` (ns since the epoch), the next ones every ``tick_interval_s``
  after it; ``("profile_start",)``, ``("profile_stop",)`` (cProfile of the
  node, written to ``profile_path``), ``("stop",)``.

The process stops on ``("stop",)``, when the pipe closes, on SIGTERM, or at
``max_runtime_s`` at the latest.  :class:`Control` (the pipe and the
schedule) is shared with the baseline broadcaster of
:mod:`slipstream.app.bench.baseline`.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from broadcast.config import BroadcastConfig
from broadcast.server import BroadcastServer
from slipstream.app.bench.loops import pipe_send, run_on
from slipstream.app.bench.race import RaceFrames
from slipstream.bus.memory import MemoryBus
from slipstream.config import EVENTS_TOPIC, FRAMES_TOPIC
from slipstream.metrics import Registry
from slipstream.records import car_key, encode_event, encode_frame

__all__ = ["Control", "ServerSpec", "server_main"]

logger = logging.getLogger(__name__)


#: The node's own timers reported with every tick (see the module doc).
TIMERS = ("slipstream_tick_encode_seconds_total", "slipstream_tick_fanout_seconds_total")


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """What the benchmark's broadcast node does.

    Attributes:
        race_path: ``.npz`` file written by :meth:`RaceFrames.save`.
        default_codec: The node's default codec.
        poll_hold_s: Longest hold of a long-poll with nothing new.
        tick_interval_s: Wall time between ticks (0.5 s = 2 Hz).
        prefill_ticks: Ticks published at once before pacing starts.
        profile_path: Where ``profile_stop`` writes cProfile stats (None: no profiling).
        max_runtime_s: The process stops by itself after this long.
        loop: Event loop of the process, ``asyncio`` or ``uvloop``.
        port: Port to listen on (0: any free port).
        reuse_port: Listen with SO_REUSEPORT (one of several worker processes).
        server_id: The node's id (in hello messages).
    """

    race_path: str
    default_codec: str = "full"
    poll_hold_s: float = 25.0
    tick_interval_s: float = 0.5
    prefill_ticks: int = 0
    profile_path: str | None = None
    max_runtime_s: float = 900.0
    loop: str = "asyncio"
    port: int = 0
    reuse_port: bool = False
    server_id: str = "bench"


class Control:
    """A benchmark server process's end of the pipe, and its tick schedule.

    Args:
        conn: The pipe to the parent.
        profile_path: Where ``profile_stop`` writes cProfile stats (None: no profiling).
    """

    def __init__(self, conn: Connection, profile_path: str | None = None) -> None:
        self.conn = conn
        self.loop = asyncio.get_running_loop()
        self.stop = asyncio.Event()
        self.go: asyncio.Future[int] = self.loop.create_future()
        self.profile_path = profile_path
        self.profiler = cProfile.Profile() if profile_path else None

    def send(self, message: tuple[Any, ...]) -> None:
        """Send to the parent; a parent gone away stops the process."""
        try:
            pipe_send(self.conn, message)
        except (BrokenPipeError, ConnectionResetError, EOFError):
            self.stop.set()

    def _on_command(self) -> None:
        try:
            while self.conn.poll():
                command = self.conn.recv()
                kind = command[0]
                if kind == "stop":
                    self.stop.set()
                elif kind == "go" and not self.go.done():
                    self.go.set_result(int(command[1]))
                elif kind == "profile_start" and self.profiler is not None:
                    self.profiler.enable()
                elif kind == "profile_stop" and self.profiler is not None and self.profile_path:
                    self.profiler.disable()
                    self.profiler.dump_stats(self.profile_path)
                    self.send(("profile", self.profile_path))
        except (EOFError, OSError):
            self.stop.set()
            self.loop.remove_reader(self.conn.fileno())

    def listen(self) -> None:
        """Start taking commands (and SIGTERM)."""
        self.loop.add_reader(self.conn.fileno(), self._on_command)
        self.loop.add_signal_handler(signal.SIGTERM, self.stop.set)

    def close(self) -> None:
        """Stop taking commands."""
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_reader(self.conn.fileno())

    async def pace(
        self,
        first: int,
        end: int,
        interval_s: float,
        publish: Callable[[int], Awaitable[int]],
        counters: Callable[[], tuple[float, float, int]],
    ) -> None:
        """Publish ticks ``first..end-1`` on the schedule set by ``go``, reporting each.

        Args:
            first: The tick due at ``go``'s time.
            end: One past the last tick.
            interval_s: Wall time between ticks.
            publish: Publishes a tick; returns its publication time (ns since the epoch).
            counters: The server's own ``(encode_s, fanout_s)`` totals so far and its fans.
        """
        t0_ns = await self.go
        # Due times are wall-clock instants shared by every process, slept on the loop's clock.
        start = self.loop.time() + (t0_ns - time.time_ns()) / 1e9
        for tick in range(first, end):
            due = start + (tick - first) * interval_s
            if due > self.loop.time():
                await asyncio.sleep(due - self.loop.time())
            lag_s = max(0.0, self.loop.time() - due)
            published_ns = await publish(tick)
            self.send(("tick", tick, published_ns, lag_s, *counters()))
        self.send(("race_over",))

    async def serve_until_stopped(self, max_runtime_s: float, feeder: asyncio.Task[None]) -> None:
        """Wait for ``stop`` (or ``max_runtime_s``), then cancel ``feeder``."""
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max_runtime_s):
                    await self.stop.wait()
        finally:
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)
            self.close()


async def _serve(spec: ServerSpec, conn: Connection) -> None:

    race = RaceFrames.load(Path(spec.race_path))
    # Encoded before serving, so the feed costs the node next to nothing.
    ticks = [
        [(car_key(f.car), encode_frame(f)) for f in race.frames(tick)] for tick in range(race.ticks)
    ]
    control = Control(conn, spec.profile_path)
    bus = MemoryBus()
    await bus.start()
    config = BroadcastConfig(
        host="127.0.0.1",
        port=spec.port,
        default_codec=spec.default_codec,
        poll_hold_s=spec.poll_hold_s,
        server_id=spec.server_id,
        reuse_port=spec.reuse_port,
    )
    registry = Registry()
    server = BroadcastServer(config, bus, registry)

    def counters() -> tuple[float, float, int]:
        values = []
        for name in TIMERS:
            metric = registry.get(name)
            values.append(metric.value() if metric is not None else 0.0)
        hub = server.hub
        count = hub.fans.count("ws") + hub.fans.count("sse") + hub.poll_waiting
        return values[0], values[1], count

    async def publish(tick: int) -> int:
        await producer.send_many(FRAMES_TOPIC, ticks[tick])
        return time.time_ns()

    await server.start()
    control.listen()
    producer = await bus.producer()
    await producer.send(EVENTS_TOPIC, encode_event(race.start), key=race.race.encode())
    prefill = min(spec.prefill_ticks, len(ticks))
    for tick in range(prefill):
        await publish(tick)
        control.send(("tick", tick, time.time_ns(), 0.0, *counters()))
        await asyncio.sleep(0.001)  # let the node take each tick in turn
    control.send(("ready", server.port, os.getpid()))
    feeder = asyncio.create_task(
        control.pace(prefill, len(ticks), spec.tick_interval_s, publish, counters)
    )
    try:
        await control.serve_until_stopped(spec.max_runtime_s, feeder)
    finally:
        # Held long-polls can keep a graceful stop waiting; the process ends anyway.
        try:
            async with asyncio.timeout(5):
                await server.stop()
                await bus.stop()
        except TimeoutError:
            logger.warning("the node did not stop gracefully within 5 s")


def server_main(spec: ServerSpec, conn: Connection) -> None:
    """Process entry point: serve until told to stop (see module doc)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent owns Ctrl-C
    logging.basicConfig(level=logging.WARNING)
    try:
        run_on(spec.loop, lambda: _serve(spec, conn))
    except Exception as exc:  # report any failure to the parent before dying
        logger.exception("benchmark node failed")
        with contextlib.suppress(OSError):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()
