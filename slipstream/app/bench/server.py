"""A broadcast-node process for benchmarks, fed pre-computed frames at 2 Hz.

The parent starts :func:`server_main` in a fresh process (``spawn``) with a
:class:`ServerSpec` and one end of a pipe.  The process runs the real
:class:`broadcast.server.BroadcastServer` on an in-process bus and publishes
one tick of frames (every car) every ``tick_interval_s``, on an absolute
schedule.  Messages are tuples, first item the kind:

* child -> parent: ``("ready", port, pid)`` once listening;
  ``("tick", tick, published_ns, lag_s, encode_s, fanout_s)`` after each
  tick's frames are on the bus (``lag_s``: how late against the schedule,
  i.e. the node's event-loop lag; ``encode_s`` and ``fanout_s``: the node's
  own counters of time spent encoding ticks and writing them to WebSockets,
  totals so far); the first ``prefill_ticks`` go out at once, so the replay ring is
  full (steady-state memory) before anyone connects;
  ``("race_over",)`` after the last tick; ``("profile", path)`` when a
  profile was written; ``("error", text)`` if the node could not run.
* parent -> child: ``("profile_start",)``, ``("profile_stop",)`` (cProfile of
  the node, written to ``profile_path``), ``("stop",)``.

The process stops on ``("stop",)``, when the pipe closes, on SIGTERM, or at
``max_runtime_s`` at the latest.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import logging
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from broadcast.config import BroadcastConfig
from broadcast.server import BroadcastServer
from slipstream.app.bench.race import RaceFrames
from slipstream.bus.memory import MemoryBus
from slipstream.config import EVENTS_TOPIC, FRAMES_TOPIC
from slipstream.metrics import Registry
from slipstream.records import car_key, encode_event, encode_frame

__all__ = ["ServerSpec", "server_main"]

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
    """

    race_path: str
    default_codec: str = "full"
    poll_hold_s: float = 25.0
    tick_interval_s: float = 0.5
    prefill_ticks: int = 0
    profile_path: str | None = None
    max_runtime_s: float = 900.0


async def _serve(spec: ServerSpec, conn: Connection) -> None:

    loop = asyncio.get_running_loop()
    race = RaceFrames.load(Path(spec.race_path))
    # Encoded before serving, so the feed costs the node next to nothing.
    ticks = [
        [(car_key(f.car), encode_frame(f)) for f in race.frames(tick)] for tick in range(race.ticks)
    ]
    stop = asyncio.Event()
    profiler = cProfile.Profile() if spec.profile_path else None

    def send(message: tuple[Any, ...]) -> None:
        try:
            conn.send(message)
        except (BrokenPipeError, ConnectionResetError, EOFError):
            stop.set()

    def on_command() -> None:
        try:
            while conn.poll():
                kind = conn.recv()[0]
                if kind == "stop":
                    stop.set()
                elif kind == "profile_start" and profiler is not None:
                    profiler.enable()
                elif kind == "profile_stop" and profiler is not None and spec.profile_path:
                    profiler.disable()
                    profiler.dump_stats(spec.profile_path)
                    send(("profile", spec.profile_path))
        except (EOFError, OSError):
            stop.set()
            loop.remove_reader(conn.fileno())

    async def feed() -> None:
        producer = await bus.producer()
        await producer.send(EVENTS_TOPIC, encode_event(race.start), key=race.race.encode())
        for tick in range(min(spec.prefill_ticks, len(ticks))):
            await producer.send_many(FRAMES_TOPIC, ticks[tick])
            send(("tick", tick, time.time_ns(), 0.0, *counters()))
            await asyncio.sleep(0.001)  # let the node take each tick in turn
        start = loop.time() - spec.prefill_ticks * spec.tick_interval_s
        for tick in range(spec.prefill_ticks, len(ticks)):
            due = start + tick * spec.tick_interval_s
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            lag_s = max(0.0, loop.time() - due)
            await producer.send_many(FRAMES_TOPIC, ticks[tick])
            send(("tick", tick, time.time_ns(), lag_s, *counters()))
        send(("race_over",))

    bus = MemoryBus()
    await bus.start()
    config = BroadcastConfig(
        host="127.0.0.1",
        port=0,
        default_codec=spec.default_codec,
        poll_hold_s=spec.poll_hold_s,
        server_id="bench",
    )
    registry = Registry()
    server = BroadcastServer(config, bus, registry)

    def counters() -> tuple[float, float]:
        values = []
        for name in TIMERS:
            metric = registry.get(name)
            values.append(metric.value() if metric is not None else 0.0)
        return values[0], values[1]

    await server.start()
    loop.add_reader(conn.fileno(), on_command)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    send(("ready", server.port, os.getpid()))
    feeder = asyncio.create_task(feed())
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(spec.max_runtime_s):
                await stop.wait()
    finally:
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(conn.fileno())
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
        asyncio.run(_serve(spec, conn))
    except Exception as exc:  # report any failure to the parent before dying
        logger.exception("benchmark node failed")
        with contextlib.suppress(OSError):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()
