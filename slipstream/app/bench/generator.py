"""A load-generator process, driven by the orchestrator over a pipe.

The parent starts :func:`generator_main` in a fresh process (``spawn``) with a
:class:`GeneratorSpec` and one end of a :func:`multiprocessing.Pipe`.  Messages
are tuples, first item the kind:

* child -> parent: ``("progress", opened, connected, failed, ticks_seen,
  delivered)``
  about every ``report_interval_s``; ``("opened", connected, failed)`` once
  the subscribers are open; ``("result", dict)`` (a
  :class:`~slipstream.app.bench.loadgen.GeneratorResult` as a dict) when asked;
  ``("error", text)`` if the generator could not run.
* parent -> child: ``("window", lo, hi)``, ``("result",)``, ``("stop",)``.

The child stops on ``("stop",)``, when the pipe closes (the parent went
away), on SIGTERM, or at ``max_runtime_s`` at the latest.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import logging
import signal
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from slipstream.app.bench.adapter import Subscription, WireAdapter
from slipstream.app.bench.loadgen import LoadGenerator
from slipstream.app.bench.loops import pipe_send, run_on

__all__ = ["GeneratorSpec", "generator_main", "load_adapter"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GeneratorSpec:
    """What one generator process does.

    Attributes:
        transport: ``ws`` or ``poll``.
        host: Server address.
        port: Server port.
        subscribers: Subscribers to open.
        adapter: ``module:attribute`` of a zero-argument callable returning
            the :class:`~slipstream.app.bench.adapter.WireAdapter`.
        subscription: What every subscriber asks for.
        local_host: Source address to bind (a distinct 127.0.0.x per process
            keeps ephemeral ports and TIME_WAIT entries apart between runs).
        connect_concurrency: Connections being opened at once.
        connect_timeout_s: Longest time for one subscriber to subscribe.
        report_interval_s: Period of progress messages.
        max_runtime_s: The process stops by itself after this long.
        loop: Event loop of the process, ``asyncio`` or ``uvloop``.
    """

    transport: str
    host: str
    port: int
    subscribers: int
    adapter: str
    subscription: Subscription = field(default_factory=Subscription)
    local_host: str | None = None
    connect_concurrency: int = 100
    connect_timeout_s: float = 15.0
    report_interval_s: float = 1.0
    max_runtime_s: float = 600.0
    loop: str = "asyncio"


def load_adapter(path: str) -> WireAdapter:
    """Build the adapter named ``module:attribute``.

    Raises:
        ValueError: The name is not of that form or does not resolve.
    """
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"adapter must be 'module:attribute', got {path!r}")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load adapter {path!r}: {exc}") from exc
    adapter: WireAdapter = factory()
    return adapter


async def _run(spec: GeneratorSpec, conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    gen = LoadGenerator(
        spec.transport,
        spec.host,
        spec.port,
        load_adapter(spec.adapter),
        spec.subscription,
        local_host=spec.local_host,
        connect_concurrency=spec.connect_concurrency,
        connect_timeout_s=spec.connect_timeout_s,
    )
    stop = asyncio.Event()
    opened = 0

    def send(message: tuple[Any, ...]) -> None:
        try:
            pipe_send(conn, message)
        except (BrokenPipeError, ConnectionResetError, EOFError):
            stop.set()

    def on_command() -> None:
        try:
            while conn.poll():
                command = conn.recv()
                kind = command[0]
                if kind == "window":
                    gen.set_window(int(command[1]), int(command[2]))
                elif kind == "result":
                    send(("result", dataclasses.asdict(gen.result())))
                elif kind == "stop":
                    stop.set()
        except (EOFError, OSError):
            stop.set()
            loop.remove_reader(conn.fileno())

    def set_opened(count: int) -> None:
        nonlocal opened
        opened = count

    async def report() -> None:
        while True:
            t = gen.tally
            send(("progress", opened, gen.connected, gen.failed, t.ticks_seen, t.delivered))
            await asyncio.sleep(spec.report_interval_s)

    async def open_all() -> None:
        await gen.open(spec.subscribers, set_opened)
        send(("opened", gen.connected, gen.failed))

    loop.add_reader(conn.fileno(), on_command)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    reporter = asyncio.create_task(report())
    opener = asyncio.create_task(open_all())
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(spec.max_runtime_s):
                await stop.wait()
    finally:
        for task in (reporter, opener):
            task.cancel()
        await asyncio.gather(reporter, opener, return_exceptions=True)
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(conn.fileno())
        await gen.close()


def generator_main(spec: GeneratorSpec, conn: Connection) -> None:
    """Process entry point: run the generator until told to stop (see module doc)."""
    # The parent owns Ctrl-C: it tells the children to stop in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        run_on(spec.loop, lambda: _run(spec, conn))
    except Exception as exc:  # report any failure to the parent before dying
        logger.exception("load generator failed")
        with contextlib.suppress(OSError):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()
