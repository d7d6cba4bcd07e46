"""The side-by-side baseline: a bare ``websockets.broadcast()`` server of the node's bytes.

``slipstream bench fanout --baseline`` runs, in the same sitting as the node,
the leanest WebSocket fan-out the ``websockets`` library offers: its asyncio
server (compression off, no per-fan state beyond the library's own) keeps
the open connections in a set and, every ``tick_interval_s``, hands each
tick's messages to :func:`websockets.asyncio.server.broadcast`.  The messages
are the bytes the node sends a live fan for that tick: the node's own
:class:`~broadcast.ticks.TickAssembler` and
:class:`~broadcast.fanout.EncodedTick` build them from the same pre-computed
race frames, for the subscription the load generators ask for, with ``ts``
= the tick's emission time here, so the generators measure delivery the same
way.  Client messages (the subscribe) are read and ignored: every fan gets
every tick.

:func:`baseline_main` is a process entry point with the pipe protocol of
:mod:`slipstream.app.bench.server` (``ready``, ``tick``, ``race_over``,
``error``; ``go``, ``stop``); its ``encode_s`` is the time spent building
messages, ``fanout_s`` the time in ``broadcast()`` and ``fans`` the open
connections.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from broadcast.fanout import EncodedTick
from broadcast.protocol import SUBPROTOCOL, build_subscribe
from broadcast.ticks import TickAssembler
from slipstream.app.bench.adapter import Subscription
from slipstream.app.bench.loops import run_on
from slipstream.app.bench.race import RaceFrames
from slipstream.app.bench.server import Control
from slipstream.codecs import CODECS

__all__ = ["BaselineSpec", "TickMessages", "baseline_main"]

logger = logging.getLogger(__name__)


class TickMessages:
    """The messages the node sends a live fan of one subscription, tick by tick.

    Args:
        race: The pre-computed race.
        sub: The subscription (codec "" = ``default_codec``).
        default_codec: The node's default codec.

    Raises:
        ProtocolError: The subscription is not one the node would accept.
    """

    def __init__(self, race: RaceFrames, sub: Subscription, default_codec: str) -> None:
        # The node's own validation turns the subscription into its cache key.
        self.key = build_subscribe(
            list(sub.cars) or None, list(sub.groups) or None, sub.codec or None, None,
            codecs=list(CODECS), default_codec=default_codec,
        ).key  # fmt: skip
        # All cars on one partition: a tick is complete when every car's frame is in.
        assembler = TickAssembler(0.0, lambda car: 0)
        self.ticks = assembler.add_event(race.start, 0.0)
        for tick in range(race.ticks):
            for frame in race.frames(tick):
                self.ticks += assembler.add_frame(frame, 0, 0.0)
            self.ticks += assembler.emit_through(tick)
        if [d.tick for d in self.ticks] != list(range(race.ticks)):
            raise ValueError("the race's frames did not assemble into one tick each")

    def at(self, tick: int, emitted_ns: int) -> list[bytes]:
        """The messages of ``tick`` emitted at ``emitted_ns``: its events, then the tick (a delta).

        Raises:
            IndexError: No such tick.
        """

        encoded = EncodedTick(self.ticks[tick], emitted_ns=emitted_ns)
        return [*encoded.event_messages(), encoded.message(self.key, False)]


@dataclass(frozen=True, slots=True)
class BaselineSpec:
    """What the baseline broadcaster does.

    Attributes:
        race_path: ``.npz`` file written by :meth:`RaceFrames.save`.
        subscription: What the load generators ask for.
        default_codec: The node's default codec (for a subscription without one).
        first_tick: The tick due at the parent's ``go`` (the node's first paced tick).
        tick_interval_s: Wall time between ticks.
        max_runtime_s: The process stops by itself after this long.
        loop: Event loop of the process, ``asyncio`` or ``uvloop``.
    """

    race_path: str
    subscription: Subscription
    default_codec: str
    first_tick: int = 0
    tick_interval_s: float = 0.5
    max_runtime_s: float = 900.0
    loop: str = "asyncio"


async def _serve(spec: BaselineSpec, conn: Connection) -> None:
    import asyncio

    from websockets.asyncio.server import ServerConnection, broadcast, serve
    from websockets.exceptions import ConnectionClosed
    from websockets.typing import Subprotocol

    messages = TickMessages(RaceFrames.load(Path(spec.race_path)), spec.subscription,
                            spec.default_codec)  # fmt: skip
    control = Control(conn)
    clients: set[ServerConnection] = set()
    timers = [0.0, 0.0]  # building messages, broadcast()

    async def handler(ws: ServerConnection) -> None:
        clients.add(ws)
        try:
            async for _ in ws:
                pass
        except ConnectionClosed:
            pass  # the load generator aborts its sockets when a run ends
        finally:
            clients.discard(ws)

    async def publish(tick: int) -> int:
        t0 = time.perf_counter()
        emitted_ns = time.time_ns()
        payloads = messages.at(tick, emitted_ns)
        t1 = time.perf_counter()
        for payload in payloads:
            broadcast(clients, payload)
        timers[0] += t1 - t0
        timers[1] += time.perf_counter() - t1
        return emitted_ns

    async with serve(
        handler, "127.0.0.1", 0, subprotocols=[Subprotocol(SUBPROTOCOL)], compression=None,
        backlog=4096,  # as the node: thousands of fans connect at once
    ) as server:  # fmt: skip
        port = next(iter(server.sockets)).getsockname()[1]
        control.listen()
        control.send(("ready", port, os.getpid()))
        feeder = asyncio.create_task(
            control.pace(spec.first_tick, len(messages.ticks), spec.tick_interval_s, publish,
                         lambda: (timers[0], timers[1], len(clients)))
        )  # fmt: skip
        await control.serve_until_stopped(spec.max_runtime_s, feeder)
        server.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await server.wait_closed()


def baseline_main(spec: BaselineSpec, conn: Connection) -> None:
    """Process entry point: broadcast until told to stop (see module doc)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent owns Ctrl-C
    logging.basicConfig(level=logging.WARNING)
    try:
        run_on(spec.loop, lambda: _serve(spec, conn))
    except Exception as exc:  # report any failure to the parent before dying
        logger.exception("baseline broadcaster failed")
        with contextlib.suppress(OSError):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()
