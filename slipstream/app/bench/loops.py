"""The event loop a benchmark server process runs on: asyncio's or uvloop's.

The loop is a property of the server process, chosen per run
(``--loop``/``--baseline-loop``) and recorded in the figures, because the
fan-out's cost is mostly the loop's transport writes.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Callable, Coroutine
from multiprocessing.connection import Connection
from typing import Any

from slipstream.errors import ConfigError

__all__ = ["LOOPS", "default_loop", "loop_version", "pipe_send", "run_on", "validate_loop"]

#: Loops a server process can run on.
LOOPS = ("asyncio", "uvloop")


def _uvloop_importable() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def default_loop() -> str:
    """The node's default loop, ``asyncio`` (``--loop uvloop`` measures the other)."""
    return "asyncio"


def validate_loop(name: str) -> str:
    """Check that loop ``name`` can run here; returns it.

    Raises:
        ConfigError: Unknown, or uvloop asked for but not installed.
    """
    if name not in LOOPS:
        raise ConfigError(f"unknown event loop {name!r}; known: {', '.join(LOOPS)}")
    if name == "uvloop" and not _uvloop_importable():
        raise ConfigError("uvloop is not installed: pip install uvloop, or pass --loop asyncio")
    return name


def loop_version(name: str) -> str:
    """The version of the loop's implementation, for the record (``uvloop 0.21.0``)."""
    if name == "uvloop":
        from importlib.metadata import version

        return f"uvloop {version('uvloop')}"
    import platform

    return f"asyncio (CPython {platform.python_version()})"


def pipe_send(conn: Connection, message: Any) -> None:
    """Send ``message`` whole over a pipe that an event loop watches.

    uvloop makes the file descriptors it watches non-blocking; a message
    larger than the pipe's buffer (a generator's latencies) would then be
    cut short.  The descriptor is blocking for the send.
    """
    fd = conn.fileno()
    was_blocking = os.get_blocking(fd)
    os.set_blocking(fd, True)
    try:
        conn.send(message)
    finally:
        os.set_blocking(fd, was_blocking)


def run_on(name: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``main()`` to completion on a new event loop of kind ``name``.

    Raises:
        ConfigError: See :func:`validate_loop`.
    """
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if validate_loop(name) == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())
