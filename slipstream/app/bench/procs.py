"""The child processes of a fan-out run, as the orchestrator sees them.

:class:`Procs` starts processes (``spawn``) with a pipe each and stops them
all, whatever happened; :class:`ServerState` and :class:`GenState` keep what
the server processes (node workers or the baseline broadcaster) and the load
generators last reported (see :mod:`slipstream.app.bench.server` and
:mod:`slipstream.app.bench.generator` for the messages).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import socket
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from slipstream.app.bench import BenchError

__all__ = ["GenState", "Procs", "ServerState", "drain", "reserve_port"]

logger = logging.getLogger(__name__)


class Procs:
    """The processes of one run; :meth:`close` stops them all, whatever happened."""

    def __init__(self) -> None:
        self.ctx = multiprocessing.get_context("spawn")
        self.items: list[tuple[BaseProcess, Connection]] = []

    def start(self, target: Callable[..., None], spec: Any, name: str) -> Connection:
        """Start ``target(spec, pipe)`` in a new process; returns the parent's end of the pipe."""
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=target, args=(spec, child), name=name, daemon=True)
        proc.start()
        child.close()
        self.items.append((proc, parent))
        return parent

    def close(self, timeout_s: float = 20.0) -> None:
        """Stop every process, last started first."""
        # Generators first (clients close their connections), the servers last.
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


def drain(conn: Connection, handle: Callable[[tuple[Any, ...]], None]) -> None:
    """Hand every message waiting on ``conn`` to ``handle``.

    Raises:
        BenchError: The process reported an error, or died.
    """
    try:
        while conn.poll():
            message = conn.recv()
            if message[0] == "error":
                raise BenchError(f"a benchmark process failed: {message[1]}")
            handle(message)
    except EOFError:
        raise BenchError("a benchmark process died unexpectedly") from None


def reserve_port(host: str = "127.0.0.1") -> socket.socket:
    """A socket bound (not listening) with SO_REUSEPORT on a free port.

    Held while worker processes start listening on the same port with
    SO_REUSEPORT: it tells them all one port and keeps it from anyone else; a
    bound socket that does not listen is given no connections.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, 0))
    return sock


class ServerState:
    """What one server process (a node worker or the baseline) reported."""

    def __init__(self) -> None:
        self.port = 0
        self.pid = 0
        self.tick = -1
        self.race_over = False
        self.profile: str | None = None
        self.tick_ns: dict[int, int] = {}
        self.lag_s: dict[int, float] = {}
        self.timers: dict[int, tuple[float, float]] = {}
        self.fans = 0

    def update_from(self, message: tuple[Any, ...]) -> None:
        """Take one message of the process."""
        kind = message[0]
        if kind == "ready":
            self.port, self.pid = message[1], message[2]
        elif kind == "tick":
            tick = message[1]
            self.tick = tick
            self.tick_ns[tick] = message[2]
            self.lag_s[tick] = message[3]
            self.timers[tick] = (message[4], message[5])
            self.fans = message[6]
        elif kind == "race_over":
            self.race_over = True
        elif kind == "profile":
            self.profile = message[1]


class GenState:
    """What the parent knows about one generator process."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.opened = self.connected = self.failed = self.ticks_seen = self.delivered = 0
        self.opened_done = False
        self.result: dict[str, Any] | None = None

    def update_from(self, message: tuple[Any, ...]) -> None:
        """Take one message of the process."""
        kind = message[0]
        if kind == "progress":
            _, self.opened, self.connected, self.failed, self.ticks_seen, self.delivered = message
        elif kind == "opened":
            self.opened_done = True
            self.connected, self.failed = message[1], message[2]
        elif kind == "result":
            self.result = message[1]
